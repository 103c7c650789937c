package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
)

// testStore opens a fresh store in a temporary directory and returns it with
// the paths of its database and key files.
func testStore(t *testing.T) (st *Store, dbPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "data", "berth.db")
	keyPath = filepath.Join(dir, "config.key")
	st = mustOpen(t, dbPath, keyPath)
	return st, dbPath, keyPath
}

func mustOpen(t *testing.T, dbPath, keyPath string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dbPath, keyPath)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// rawDB opens the database file directly, bypassing the store.
func rawDB(t *testing.T, dbPath string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rawCount(t *testing.T, db *sql.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM `+table+` WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesSchemaAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	st, dbPath, keyPath := testStore(t)
	v, err := st.SchemaVersion(ctx)
	must(t, err)
	if v != len(migrations) || v < 1 {
		t.Fatalf("SchemaVersion = %d, want %d", v, len(migrations))
	}
	must(t, st.CreateApp(ctx, "shop"))
	must(t, st.Close())

	info, err := os.Stat(keyPath)
	must(t, err)
	if info.Mode().Perm() != 0o600 || info.Size() != 32 {
		t.Fatalf("key file: mode %v size %d, want 0600 and 32 bytes", info.Mode().Perm(), info.Size())
	}

	st2 := mustOpen(t, dbPath, keyPath)
	v2, err := st2.SchemaVersion(ctx)
	must(t, err)
	if v2 != v {
		t.Fatalf("SchemaVersion after reopen = %d, want %d", v2, v)
	}
	if _, err := st2.App(ctx, "shop"); err != nil {
		t.Fatalf("app lost across reopen: %v", err)
	}
	db := rawDB(t, dbPath)
	if n := rawCount(t, db, "schema_migrations", "1=1"); n != len(migrations) {
		t.Fatalf("schema_migrations has %d rows after reopen, want %d", n, len(migrations))
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	st, dbPath, keyPath := testStore(t)
	must(t, st.Close())
	db := rawDB(t, dbPath)
	if _, err := db.Exec(`INSERT INTO schema_migrations(version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st2, err := Open(context.Background(), dbPath, keyPath)
	if err == nil {
		st2.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("error %q does not say the schema is newer", err)
	}
}

func TestOpenRefusesBadKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "config.key")
	must(t, os.WriteFile(keyPath, []byte("short"), 0o600))
	st, err := Open(context.Background(), filepath.Join(dir, "berth.db"), keyPath)
	if err == nil {
		st.Close()
		t.Fatal("Open accepted a 5-byte config key")
	}
	if !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("error %q does not mention the expected key size", err)
	}
}

func TestApps(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	if apps, err := st.Apps(ctx); err != nil || len(apps) != 0 {
		t.Fatalf("Apps on empty store = %v, %v", apps, err)
	}
	for _, n := range []string{"web", "api", "shop"} {
		must(t, st.CreateApp(ctx, n))
	}
	if err := st.CreateApp(ctx, "api"); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateApp duplicate = %v, want ErrExists", err)
	}
	if _, err := st.App(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("App(missing) = %v, want ErrNotFound", err)
	}
	a, err := st.App(ctx, "shop")
	must(t, err)
	if a.Name != "shop" || a.CreatedAt.IsZero() || a.CurrentRelease != 0 || a.Stopped {
		t.Fatalf("new app = %+v", a)
	}
	apps, err := st.Apps(ctx)
	must(t, err)
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if want := []string{"api", "shop", "web"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Apps = %v, want %v", names, want)
	}

	must(t, st.SetCurrentRelease(ctx, "shop", 3, "git", "abc123"))
	must(t, st.SetStopped(ctx, "shop", true))
	a, err = st.App(ctx, "shop")
	must(t, err)
	if a.CurrentRelease != 3 || a.DeploySource != "git" || a.SourceMeta != "abc123" || !a.Stopped {
		t.Fatalf("after SetCurrentRelease/SetStopped: %+v", a)
	}
	must(t, st.SetStopped(ctx, "shop", false))
	if a, _ := st.App(ctx, "shop"); a.Stopped {
		t.Fatal("SetStopped(false) did not clear stopped")
	}
}

// populate gives app a row in every table that belongs to an app.
func populate(t *testing.T, st *Store, app, domain string) {
	t.Helper()
	ctx := context.Background()
	must(t, st.CreateApp(ctx, app))
	must(t, st.UpdateConfig(ctx, app, map[string]string{"SECRET": "s-" + app, "OTHER": "o"}, nil, false))
	must(t, st.UpdateDomains(ctx, app, []string{domain}, nil, false))
	must(t, st.SetFormation(ctx, app, map[string]int{"web": 2, "worker": 1}))
	for i := 0; i < 2; i++ {
		_, err := st.CreateRelease(ctx, Release{App: app, ImageID: "sha256:x", Env: map[string]string{"A": "1"}, Processes: map[string]string{"web": ""}, Formation: map[string]int{"web": 1}})
		must(t, err)
	}
	must(t, st.SetCurrentRelease(ctx, app, 2, "git", "rev"))
	must(t, st.SetSetting(ctx, app, "builder", "dockerfile"))
	must(t, st.AddEvent(ctx, app, "create", "created "+app))
	must(t, st.AddEvent(ctx, app, "release", "v1"))
}

var appTables = []struct{ table, col string }{
	{"apps", "name"},
	{"app_config", "app"},
	{"domains", "app"},
	{"formation", "app"},
	{"releases", "app"},
	{"app_settings", "app"},
	{"events", "app"},
}

func TestDeleteAppCascades(t *testing.T) {
	ctx := context.Background()
	st, dbPath, _ := testStore(t)
	populate(t, st, "doomed", "doomed.example.com")
	populate(t, st, "keeper", "keeper.example.com")
	must(t, st.UpdateConfig(ctx, "", map[string]string{"GLOBAL": "g"}, nil, false))

	must(t, st.DeleteApp(ctx, "doomed"))
	if err := st.DeleteApp(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteApp = %v, want ErrNotFound", err)
	}

	db := rawDB(t, dbPath)
	for _, tc := range appTables {
		if n := rawCount(t, db, tc.table, tc.col+" = ?", "doomed"); n != 0 {
			t.Errorf("%s still has %d rows of the deleted app", tc.table, n)
		}
		if n := rawCount(t, db, tc.table, tc.col+" = ?", "keeper"); n == 0 {
			t.Errorf("%s lost the rows of another app", tc.table)
		}
	}
	if _, err := st.DomainOwner(ctx, "doomed.example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DomainOwner of deleted app's domain = %v, want ErrNotFound", err)
	}
	if g, err := st.Config(ctx, ""); err != nil || g["GLOBAL"] != "g" {
		t.Fatalf("global config after delete = %v, %v", g, err)
	}
}

func TestRenameAppMovesEverything(t *testing.T) {
	ctx := context.Background()
	st, dbPath, _ := testStore(t)
	populate(t, st, "old", "old.example.com")
	populate(t, st, "other", "other.example.com")

	db := rawDB(t, dbPath)
	before := map[string]int{}
	for _, tc := range appTables {
		before[tc.table] = rawCount(t, db, tc.table, tc.col+" = ?", "old")
	}

	must(t, st.RenameApp(ctx, "old", "new"))

	for _, tc := range appTables {
		if n := rawCount(t, db, tc.table, tc.col+" = ?", "old"); n != 0 {
			t.Errorf("%s: %d rows still under the old name", tc.table, n)
		}
		if n := rawCount(t, db, tc.table, tc.col+" = ?", "new"); n != before[tc.table] {
			t.Errorf("%s: %d rows under the new name, want %d", tc.table, n, before[tc.table])
		}
	}
	if _, err := st.App(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("App(old) after rename = %v, want ErrNotFound", err)
	}
	a, err := st.App(ctx, "new")
	must(t, err)
	if a.CurrentRelease != 2 {
		t.Fatalf("renamed app lost its current release: %+v", a)
	}
	// The typed queries see the moved rows (config must still decrypt).
	cfg, err := st.Config(ctx, "new")
	must(t, err)
	if cfg["SECRET"] != "s-old" {
		t.Fatalf("config after rename = %v", cfg)
	}
	if owner, err := st.DomainOwner(ctx, "old.example.com"); err != nil || owner != "new" {
		t.Fatalf("DomainOwner after rename = %q, %v", owner, err)
	}
	if f, _ := st.Formation(ctx, "new"); f["web"] != 2 || f["worker"] != 1 {
		t.Fatalf("formation after rename = %v", f)
	}
	rels, err := st.Releases(ctx, "new")
	must(t, err)
	if len(rels) != 2 || rels[0].App != "new" || rels[0].Env["A"] != "1" {
		t.Fatalf("releases after rename = %+v", rels)
	}
	if v, ok, _ := st.Setting(ctx, "new", "builder"); !ok || v != "dockerfile" {
		t.Fatalf("setting after rename = %q, %v", v, ok)
	}
	if ev, _ := st.Events(ctx, "new", 10); len(ev) != 2 {
		t.Fatalf("events after rename = %+v", ev)
	}
	// Releases keep numbering from where they were.
	r, err := st.CreateRelease(ctx, Release{App: "new", Env: map[string]string{}})
	must(t, err)
	if r.Version != 3 {
		t.Fatalf("next release after rename = v%d, want v3", r.Version)
	}

	// An existing target is refused and nothing moves.
	if err := st.RenameApp(ctx, "new", "other"); !errors.Is(err, ErrExists) {
		t.Fatalf("RenameApp onto an existing app = %v, want ErrExists", err)
	}
	if n := rawCount(t, db, "events", "app = ?", "new"); n != 2 {
		t.Fatalf("refused rename moved events: %d left under new", n)
	}
	if n := rawCount(t, db, "events", "app = ?", "other"); n != 2 {
		t.Fatalf("refused rename changed the target's events: %d", n)
	}
	if owner, _ := st.DomainOwner(ctx, "old.example.com"); owner != "new" {
		t.Fatalf("refused rename moved a domain to %q", owner)
	}
	if err := st.RenameApp(ctx, "missing", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RenameApp(missing) = %v, want ErrNotFound", err)
	}
}

func TestConfigEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	st, dbPath, keyPath := testStore(t)
	const secret = "hunter2-very-secret-value"
	must(t, st.CreateApp(ctx, "shop"))
	must(t, st.UpdateConfig(ctx, "shop", map[string]string{"DATABASE_URL": secret}, nil, false))
	must(t, st.UpdateConfig(ctx, "", map[string]string{"GLOBAL_TOKEN": secret + "-global"}, nil, false))
	_, err := st.CreateRelease(ctx, Release{App: "shop", Env: map[string]string{"DATABASE_URL": secret}})
	must(t, err)
	must(t, st.Close())

	db := rawDB(t, dbPath)
	var blob []byte
	if err := db.QueryRow(`SELECT value FROM app_config WHERE app = 'shop' AND key = 'DATABASE_URL'`).Scan(&blob); err != nil {
		t.Fatal(err)
	}
	if len(blob) == 0 || bytes.Contains(blob, []byte(secret)) {
		t.Fatalf("app_config.value holds the plaintext: %q", blob)
	}
	if err := db.QueryRow(`SELECT value FROM global_config WHERE key = 'GLOBAL_TOKEN'`).Scan(&blob); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte(secret)) {
		t.Fatalf("global_config.value holds the plaintext: %q", blob)
	}
	if err := db.QueryRow(`SELECT env FROM releases WHERE app = 'shop'`).Scan(&blob); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte(secret)) || bytes.Contains(blob, []byte("DATABASE_URL")) {
		t.Fatalf("releases.env holds the plaintext: %q", blob)
	}
	db.Close()

	// Same key: everything decrypts after reopen.
	st2 := mustOpen(t, dbPath, keyPath)
	cfg, err := st2.Config(ctx, "shop")
	must(t, err)
	if cfg["DATABASE_URL"] != secret {
		t.Fatalf("config after reopen = %v", cfg)
	}
	rel, err := st2.Release(ctx, "shop", 1)
	must(t, err)
	if rel.Env["DATABASE_URL"] != secret {
		t.Fatalf("release env after reopen = %v", rel.Env)
	}
	must(t, st2.Close())

	// Another key: a clear error, never garbage.
	st3 := mustOpen(t, dbPath, filepath.Join(t.TempDir(), "other.key"))
	if cfg, err := st3.Config(ctx, "shop"); err == nil || !strings.Contains(err.Error(), "wrong config key") {
		t.Fatalf("Config with another key = %v, %v; want a 'wrong config key' error", cfg, err)
	}
	if _, err := st3.MergedConfig(ctx, "shop"); err == nil {
		t.Fatal("MergedConfig with another key succeeded")
	}
	if _, err := st3.Release(ctx, "shop", 1); err == nil || !strings.Contains(err.Error(), "wrong config key") {
		t.Fatalf("Release with another key = %v; want a 'wrong config key' error", err)
	}
}

func TestUpdateConfigAndMergedConfig(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "shop"))
	must(t, st.CreateApp(ctx, "blog"))

	check := func(app string, want map[string]string) {
		t.Helper()
		got, err := st.Config(ctx, app)
		must(t, err)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Config(%q) = %v, want %v", app, got, want)
		}
	}
	check("shop", map[string]string{})

	must(t, st.UpdateConfig(ctx, "shop", map[string]string{"A": "1", "B": "2", "C": "3"}, nil, false))
	check("shop", map[string]string{"A": "1", "B": "2", "C": "3"})
	check("blog", map[string]string{})
	check("", map[string]string{})

	// Set and unset in one call; overwriting an existing key.
	must(t, st.UpdateConfig(ctx, "shop", map[string]string{"A": "one", "D": ""}, []string{"B", "NOT_SET"}, false))
	check("shop", map[string]string{"A": "one", "C": "3", "D": ""})

	// Clear removes everything before setting.
	must(t, st.UpdateConfig(ctx, "shop", map[string]string{"E": "5"}, nil, true))
	check("shop", map[string]string{"E": "5"})
	must(t, st.UpdateConfig(ctx, "shop", nil, nil, true))
	check("shop", map[string]string{})

	// Global config, and the merge.
	must(t, st.UpdateConfig(ctx, "", map[string]string{"X": "global", "Y": "global"}, nil, false))
	must(t, st.UpdateConfig(ctx, "shop", map[string]string{"Y": "app", "Z": "app"}, nil, false))
	check("", map[string]string{"X": "global", "Y": "global"})
	merged, err := st.MergedConfig(ctx, "shop")
	must(t, err)
	if want := map[string]string{"X": "global", "Y": "app", "Z": "app"}; !reflect.DeepEqual(merged, want) {
		t.Fatalf("MergedConfig = %v, want %v", merged, want)
	}
	merged, err = st.MergedConfig(ctx, "blog")
	must(t, err)
	if want := map[string]string{"X": "global", "Y": "global"}; !reflect.DeepEqual(merged, want) {
		t.Fatalf("MergedConfig without own config = %v, want %v", merged, want)
	}
	must(t, st.UpdateConfig(ctx, "", nil, []string{"X"}, false))
	check("", map[string]string{"Y": "global"})
	must(t, st.UpdateConfig(ctx, "", nil, nil, true))
	check("", map[string]string{})
	check("shop", map[string]string{"Y": "app", "Z": "app"})
}

func TestUpdateDomains(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	must(t, st.CreateApp(ctx, "b"))

	domains := func(app string) []string {
		t.Helper()
		ds, err := st.Domains(ctx, app)
		must(t, err)
		sort.Strings(ds)
		return ds
	}

	must(t, st.UpdateDomains(ctx, "a", []string{"a1.test", "shared.test"}, nil, false))
	must(t, st.UpdateDomains(ctx, "b", []string{"b1.test", "b2.test"}, nil, false))
	// Re-adding one's own domain is a no-op.
	must(t, st.UpdateDomains(ctx, "a", []string{"a1.test"}, nil, false))
	if got, want := domains("a"), []string{"a1.test", "shared.test"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("domains of a = %v, want %v", got, want)
	}
	// One call adds in order.
	must(t, st.UpdateDomains(ctx, "b", nil, nil, true))
	must(t, st.UpdateDomains(ctx, "b", []string{"z.test", "y.test", "x.test"}, nil, false))
	if got, _ := st.Domains(ctx, "b"); !reflect.DeepEqual(got, []string{"z.test", "y.test", "x.test"}) {
		t.Fatalf("Domains did not keep the order of one UpdateDomains call: %v", got)
	}

	// A conflict changes nothing, whatever else the call does.
	for _, clear := range []bool{false, true} {
		err := st.UpdateDomains(ctx, "b", []string{"new-b.test", "shared.test"}, []string{"x.test"}, clear)
		var dc *DomainConflictError
		if !errors.As(err, &dc) {
			t.Fatalf("clear=%v: conflict = %v, want *DomainConflictError", clear, err)
		}
		if dc.Domain != "shared.test" || dc.App != "a" {
			t.Fatalf("conflict = %+v", dc)
		}
		if !strings.Contains(err.Error(), "shared.test") || !strings.Contains(err.Error(), "app a") {
			t.Fatalf("conflict message %q", err)
		}
		if got, want := domains("b"), []string{"x.test", "y.test", "z.test"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("clear=%v: failed update changed b's domains to %v", clear, got)
		}
		if owner, _ := st.DomainOwner(ctx, "shared.test"); owner != "a" {
			t.Fatalf("failed update moved shared.test to %q", owner)
		}
	}

	// Remove and clear.
	must(t, st.UpdateDomains(ctx, "b", nil, []string{"y.test", "a1.test"}, false))
	if got, want := domains("b"), []string{"x.test", "z.test"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}
	if owner, _ := st.DomainOwner(ctx, "a1.test"); owner != "a" {
		t.Fatal("removing another app's domain through b took it from a")
	}
	must(t, st.UpdateDomains(ctx, "b", []string{"c.test"}, nil, true))
	if got := domains("b"); !reflect.DeepEqual(got, []string{"c.test"}) {
		t.Fatalf("after clear+add: %v", got)
	}
	// A domain freed by one app can be taken by another.
	must(t, st.UpdateDomains(ctx, "a", nil, []string{"shared.test"}, false))
	must(t, st.UpdateDomains(ctx, "b", []string{"shared.test"}, nil, false))
	if owner, _ := st.DomainOwner(ctx, "shared.test"); owner != "b" {
		t.Fatalf("DomainOwner = %q, want b", owner)
	}
	if _, err := st.DomainOwner(ctx, "nobody.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DomainOwner(unknown) = %v, want ErrNotFound", err)
	}
}

func TestReleases(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	must(t, st.CreateApp(ctx, "b"))

	in := Release{
		App: "a", ImageID: "sha256:abc", GitRev: "deadbeef",
		Env:       map[string]string{"PORT": "8080", "SECRET": "s"},
		Processes: map[string]string{"web": "./server", "worker": ""},
		Formation: map[string]int{"web": 2, "worker": 0},
		Reason:    "git push", CreatedBy: "alice",
	}
	r1, err := st.CreateRelease(ctx, in)
	must(t, err)
	if r1.Version != 1 || r1.Status != ReleaseDeploying || r1.CreatedAt.IsZero() {
		t.Fatalf("first release = %+v", r1)
	}
	r2, err := st.CreateRelease(ctx, in)
	must(t, err)
	if r2.Version != 2 {
		t.Fatalf("second release = v%d, want v2", r2.Version)
	}
	rb, err := st.CreateRelease(ctx, Release{App: "b", Env: map[string]string{}})
	must(t, err)
	if rb.Version != 1 {
		t.Fatalf("first release of another app = v%d, want v1", rb.Version)
	}

	got, err := st.Release(ctx, "a", 1)
	must(t, err)
	if got.ImageID != in.ImageID || got.GitRev != in.GitRev || got.Reason != in.Reason || got.CreatedBy != in.CreatedBy ||
		!reflect.DeepEqual(got.Env, in.Env) || !reflect.DeepEqual(got.Processes, in.Processes) || !reflect.DeepEqual(got.Formation, in.Formation) {
		t.Fatalf("stored release = %+v, want the fields of %+v", got, in)
	}
	if !got.FinishedAt.IsZero() || got.Status != ReleaseDeploying {
		t.Fatalf("unfinished release = %+v", got)
	}
	if _, err := st.Release(ctx, "a", 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Release(missing) = %v, want ErrNotFound", err)
	}

	must(t, st.FinishRelease(ctx, "a", 1, ReleaseSucceeded, ""))
	must(t, st.FinishRelease(ctx, "a", 2, ReleaseFailed, "container exited"))
	got, err = st.Release(ctx, "a", 2)
	must(t, err)
	if got.Status != ReleaseFailed || got.Error != "container exited" || got.FinishedAt.IsZero() {
		t.Fatalf("failed release = %+v", got)
	}

	list, err := st.Releases(ctx, "a")
	must(t, err)
	if len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 {
		t.Fatalf("Releases not newest first: %+v", list)
	}
	_, err = st.CreateRelease(ctx, Release{App: "a", Env: map[string]string{}})
	must(t, err)
	deploying, err := st.ReleasesWithStatus(ctx, ReleaseDeploying)
	must(t, err)
	var ids []string
	for _, r := range deploying {
		ids = append(ids, fmt.Sprintf("%s/v%d", r.App, r.Version))
	}
	if want := []string{"a/v3", "b/v1"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ReleasesWithStatus(deploying) = %v, want %v", ids, want)
	}
	succeeded, err := st.ReleasesWithStatus(ctx, ReleaseSucceeded)
	must(t, err)
	if len(succeeded) != 1 || succeeded[0].App != "a" || succeeded[0].Version != 1 {
		t.Fatalf("ReleasesWithStatus(succeeded) = %+v", succeeded)
	}
}

func TestConcurrentCreateReleaseNumbersSequentially(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	must(t, st.CreateApp(ctx, "b"))
	const workers, each = 8, 5
	var mu sync.Mutex
	versions := map[string][]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*each)
	for w := 0; w < workers; w++ {
		for _, app := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					r, err := st.CreateRelease(ctx, Release{App: app, Env: map[string]string{"W": fmt.Sprint(w)}})
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					versions[app] = append(versions[app], r.Version)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent CreateRelease: %v", err)
	}
	for _, app := range []string{"a", "b"} {
		v := versions[app]
		sort.Ints(v)
		for i := range v {
			if v[i] != i+1 {
				t.Fatalf("versions of %s = %v, want 1..%d each once", app, v, workers*each)
			}
		}
		stored, err := st.Releases(ctx, app)
		must(t, err)
		if len(stored) != workers*each || stored[0].Version != workers*each {
			t.Fatalf("%s: %d stored releases, newest v%d", app, len(stored), stored[0].Version)
		}
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	alice := SSHKey{Name: "alice", Fingerprint: "SHA256:aaa", PublicKey: "ssh-ed25519 AAAA alice"}
	bob := SSHKey{Name: "bob", Fingerprint: "SHA256:bbb", PublicKey: "ssh-ed25519 BBBB bob"}
	carol := SSHKey{Name: "carol", Fingerprint: "SHA256:ccc", PublicKey: "ssh-ed25519 CCCC carol"}
	must(t, st.AddKey(ctx, bob))
	must(t, st.AddKey(ctx, alice))
	must(t, st.AddKey(ctx, carol))

	var kc *KeyConflictError
	err := st.AddKey(ctx, SSHKey{Name: "alice", Fingerprint: "SHA256:new", PublicKey: "x"})
	if !errors.As(err, &kc) || kc.Name != "alice" || kc.Existing != "" || !strings.Contains(err.Error(), "named alice") {
		t.Fatalf("duplicate name = %v (%+v), want a name KeyConflictError", err, kc)
	}
	err = st.AddKey(ctx, SSHKey{Name: "mallory", Fingerprint: "SHA256:aaa", PublicKey: "x"})
	if !errors.As(err, &kc) || kc.Existing != "alice" || !strings.Contains(err.Error(), "already added as alice") {
		t.Fatalf("duplicate fingerprint = %v (%+v), want a KeyConflictError naming alice", err, kc)
	}

	keys, err := st.Keys(ctx)
	must(t, err)
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
		if k.CreatedAt.IsZero() {
			t.Errorf("key %s has no creation time", k.Name)
		}
	}
	if want := []string{"alice", "bob", "carol"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Keys = %v, want %v (failed adds must store nothing)", names, want)
	}
	k, err := st.KeyByFingerprint(ctx, "SHA256:bbb")
	must(t, err)
	if k.Name != "bob" || k.PublicKey != bob.PublicKey {
		t.Fatalf("KeyByFingerprint = %+v", k)
	}
	if _, err := st.KeyByFingerprint(ctx, "SHA256:zzz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KeyByFingerprint(unknown) = %v, want ErrNotFound", err)
	}

	must(t, st.RemoveKey(ctx, "bob"))
	must(t, st.RemoveKey(ctx, "SHA256:ccc"))
	if err := st.RemoveKey(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveKey(removed) = %v, want ErrNotFound", err)
	}
	keys, err = st.Keys(ctx)
	must(t, err)
	if len(keys) != 1 || keys[0].Name != "alice" {
		t.Fatalf("after removals: %+v", keys)
	}
	// A removed key's name and fingerprint are free again.
	must(t, st.AddKey(ctx, bob))
}

func TestInstanceIDStable(t *testing.T) {
	ctx := context.Background()
	st, dbPath, keyPath := testStore(t)
	id, err := st.InstanceID(ctx)
	must(t, err)
	if len(id) != 12 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("InstanceID = %q, want 12 hex digits", id)
	}
	again, err := st.InstanceID(ctx)
	must(t, err)
	if again != id {
		t.Fatalf("InstanceID changed: %q then %q", id, again)
	}
	must(t, st.Close())
	st2 := mustOpen(t, dbPath, keyPath)
	reopened, err := st2.InstanceID(ctx)
	must(t, err)
	if reopened != id {
		t.Fatalf("InstanceID after reopen = %q, want %q", reopened, id)
	}
	other, _, _ := testStore(t)
	otherID, err := other.InstanceID(ctx)
	must(t, err)
	if otherID == id {
		t.Fatalf("two data dirs share the instance id %q", id)
	}
}

func TestInstanceIDConcurrentFirstUse(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		st, _, _ := testStore(t)
		const n = 8
		ids := make([]string, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ids[i], errs[i] = st.InstanceID(ctx)
			}()
		}
		close(start)
		wg.Wait()
		for i := range ids {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("concurrent first calls of InstanceID disagree: %q", ids)
			}
		}
		if final, _ := st.InstanceID(ctx); final != ids[0] {
			t.Fatalf("InstanceID = %q after concurrent calls returned %q", final, ids[0])
		}
	}
}

func TestSettings(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	must(t, st.CreateApp(ctx, "b"))

	get := func(app, key string) (string, bool) {
		t.Helper()
		v, ok, err := st.Setting(ctx, app, key)
		must(t, err)
		return v, ok
	}
	if _, ok := get("", "vhost"); ok {
		t.Fatal("unset global setting reported as set")
	}
	must(t, st.SetSetting(ctx, "", "vhost", "example.com"))
	must(t, st.SetSetting(ctx, "a", "vhost", "app.example.com"))
	if v, ok := get("", "vhost"); !ok || v != "example.com" {
		t.Fatalf("global = %q, %v", v, ok)
	}
	if v, ok := get("a", "vhost"); !ok || v != "app.example.com" {
		t.Fatalf("app a = %q, %v", v, ok)
	}
	if _, ok := get("b", "vhost"); ok {
		t.Fatal("app setting leaked to another app")
	}
	must(t, st.SetSetting(ctx, "a", "vhost", "changed"))
	if v, _ := get("a", "vhost"); v != "changed" {
		t.Fatalf("overwritten app setting = %q", v)
	}
	// An empty value unsets.
	must(t, st.SetSetting(ctx, "a", "vhost", ""))
	if _, ok := get("a", "vhost"); ok {
		t.Fatal("empty value did not unset the app setting")
	}
	if v, ok := get("", "vhost"); !ok || v != "example.com" {
		t.Fatal("unsetting an app setting touched the global one")
	}
	must(t, st.SetSetting(ctx, "", "vhost", ""))
	if _, ok := get("", "vhost"); ok {
		t.Fatal("empty value did not unset the global setting")
	}
}

func TestEffectiveSetting(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	must(t, st.CreateApp(ctx, "b"))
	eff := func(app string) (string, bool) {
		t.Helper()
		v, ok, err := st.EffectiveSetting(ctx, app, "stop-timeout")
		must(t, err)
		return v, ok
	}
	if _, ok := eff("a"); ok {
		t.Fatal("nothing set, but a value applies")
	}
	must(t, st.SetSetting(ctx, "", "stop-timeout", "30"))
	must(t, st.SetSetting(ctx, "a", "stop-timeout", "5"))
	for app, want := range map[string]string{"a": "5", "b": "30", "": "30"} {
		if v, ok := eff(app); !ok || v != want {
			t.Errorf("effective value for %q = %q, %v; want %q", app, v, ok, want)
		}
	}
	must(t, st.SetSetting(ctx, "a", "stop-timeout", ""))
	if v, _ := eff("a"); v != "30" {
		t.Errorf("after unsetting the app value, a gets %q; want the global 30", v)
	}
}

func TestFormation(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "a"))
	if f, err := st.Formation(ctx, "a"); err != nil || len(f) != 0 {
		t.Fatalf("empty formation = %v, %v", f, err)
	}
	must(t, st.SetFormation(ctx, "a", map[string]int{"web": 1, "worker": 0}))
	must(t, st.SetFormation(ctx, "a", map[string]int{"worker": 3}))
	f, err := st.Formation(ctx, "a")
	must(t, err)
	if want := map[string]int{"web": 1, "worker": 3}; !reflect.DeepEqual(f, want) {
		t.Fatalf("Formation = %v, want %v", f, want)
	}
}

func TestEventsOrderAndLimit(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	for i := 1; i <= 5; i++ {
		must(t, st.AddEvent(ctx, "a", "kind", fmt.Sprintf("a%d", i)))
		must(t, st.AddEvent(ctx, "b", "kind", fmt.Sprintf("b%d", i)))
	}
	msgs := func(ev []Event) []string {
		var out []string
		for i, e := range ev {
			out = append(out, e.Message)
			if i > 0 && e.ID <= ev[i-1].ID {
				t.Errorf("events not in id order: %+v", ev)
			}
			if e.App != "a" || e.At.IsZero() || e.Kind != "kind" {
				t.Errorf("event %+v", e)
			}
		}
		return out
	}
	ev, err := st.Events(ctx, "a", 3)
	must(t, err)
	if got, want := msgs(ev), []string{"a3", "a4", "a5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Events(a, 3) = %v, want %v (the last 3, oldest first)", got, want)
	}
	ev, err = st.Events(ctx, "a", 100)
	must(t, err)
	if got, want := msgs(ev), []string{"a1", "a2", "a3", "a4", "a5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Events(a, 100) = %v, want %v", got, want)
	}
	if ev, _ := st.Events(ctx, "nobody", 10); len(ev) != 0 {
		t.Fatalf("events of an app without any = %+v", ev)
	}
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	ctx := context.Background()
	st, dbPath, _ := testStore(t)
	must(t, st.CreateApp(ctx, "shop")) // makes SQLite write its -wal file
	for _, p := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && p != dbPath {
			continue
		}
		must(t, err)
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

func TestReleaseAppEnvAndAppJSON(t *testing.T) {
	ctx := context.Background()
	st, dbPath, keyPath := testStore(t)
	must(t, st.CreateApp(ctx, "shop"))
	const secret = "app-own-secret-value-42"
	in := Release{
		App:     "shop",
		Env:     map[string]string{"OWN": secret, "GLOBAL": "g"},
		AppEnv:  map[string]string{"OWN": secret},
		AppJSON: `{"healthchecks":{}}`,
	}
	r, err := st.CreateRelease(ctx, in)
	must(t, err)
	got, err := st.Release(ctx, "shop", r.Version)
	must(t, err)
	if !reflect.DeepEqual(got.AppEnv, in.AppEnv) || got.AppJSON != in.AppJSON || !reflect.DeepEqual(got.Env, in.Env) {
		t.Fatalf("stored release: AppEnv %v AppJSON %q Env %v", got.AppEnv, got.AppJSON, got.Env)
	}
	// A release made without an app env reads back without one.
	r2, err := st.CreateRelease(ctx, Release{App: "shop", Env: map[string]string{}})
	must(t, err)
	if got, err := st.Release(ctx, "shop", r2.Version); err != nil || len(got.AppEnv) != 0 || got.AppJSON != "" {
		t.Fatalf("release without app env: %+v, %v", got, err)
	}

	db := rawDB(t, dbPath)
	var blob []byte
	must(t, db.QueryRow(`SELECT app_env FROM releases WHERE app = 'shop' AND version = ?`, r.Version).Scan(&blob))
	if len(blob) == 0 || bytes.Contains(blob, []byte(secret)) {
		t.Fatalf("releases.app_env holds the plaintext: %q", blob)
	}
	must(t, st.Close())
	other := mustOpen(t, dbPath, filepath.Join(t.TempDir(), "other.key"))
	if _, err := other.Release(ctx, "shop", r.Version); err == nil {
		t.Fatal("a release's app env decrypted with another key")
	}
	reopened := mustOpen(t, dbPath, keyPath)
	if got, err := reopened.Release(ctx, "shop", r.Version); err != nil || got.AppEnv["OWN"] != secret {
		t.Fatalf("after reopen: %+v, %v", got.AppEnv, err)
	}
}

func TestPromoteRelease(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "shop"))
	for i := 0; i < 2; i++ {
		_, err := st.CreateRelease(ctx, Release{App: "shop", Env: map[string]string{}})
		must(t, err)
	}
	must(t, st.FinishRelease(ctx, "shop", 2, ReleaseFailed, "checks failed"))
	must(t, st.PromoteRelease(ctx, "shop", 2, "git", "abc"))
	r, err := st.Release(ctx, "shop", 2)
	must(t, err)
	if r.Status != ReleaseSucceeded || r.Error != "" || r.FinishedAt.IsZero() {
		t.Fatalf("promoted release = %+v", r)
	}
	a, err := st.App(ctx, "shop")
	must(t, err)
	if a.CurrentRelease != 2 || a.DeploySource != "git" || a.SourceMeta != "abc" {
		t.Fatalf("app after promotion = %+v", a)
	}
	if r1, _ := st.Release(ctx, "shop", 1); r1.Status != ReleaseDeploying {
		t.Fatalf("promotion changed another release: %+v", r1)
	}
}

func TestSecretSetting(t *testing.T) {
	ctx := context.Background()
	st, dbPath, keyPath := testStore(t)
	if _, ok, err := st.SecretSetting(ctx, "host-key"); err != nil || ok {
		t.Fatalf("unset secret setting = %v, %v", ok, err)
	}
	const secret = "-----BEGIN OPENSSH PRIVATE KEY----- very secret"
	must(t, st.SetSecretSetting(ctx, "host-key", secret))
	must(t, st.SetSecretSetting(ctx, "other", "x"))
	v, ok, err := st.SecretSetting(ctx, "host-key")
	if err != nil || !ok || v != secret {
		t.Fatalf("SecretSetting = %q, %v, %v", v, ok, err)
	}
	// Secret and plain settings do not collide.
	if _, ok, _ := st.Setting(ctx, "", "host-key"); ok {
		t.Fatal("a secret setting shows up as a plain setting of the same name")
	}
	must(t, st.SetSecretSetting(ctx, "host-key", "rotated"))
	if v, _, _ := st.SecretSetting(ctx, "host-key"); v != "rotated" {
		t.Fatalf("overwritten secret setting = %q", v)
	}
	must(t, st.SetSecretSetting(ctx, "host-key", secret))

	db := rawDB(t, dbPath)
	rows, err := db.Query(`SELECT key, value FROM global_settings`)
	must(t, err)
	for rows.Next() {
		var k string
		var v []byte
		must(t, rows.Scan(&k, &v))
		if bytes.Contains(v, []byte("very secret")) {
			t.Fatalf("global_settings %s holds the plaintext", k)
		}
	}
	must(t, rows.Err())
	rows.Close()

	// A sealed value cannot be moved to another name.
	_, err = db.Exec(`UPDATE global_settings SET value = (SELECT value FROM global_settings WHERE key = 'sealed:host-key') WHERE key = 'sealed:other'`)
	must(t, err)
	if v, _, err := st.SecretSetting(ctx, "other"); err == nil {
		t.Fatalf("a sealed value copied to another setting decrypted as %q", v)
	}

	must(t, st.Close())
	if v, _, err := mustOpen(t, dbPath, keyPath).SecretSetting(ctx, "host-key"); err != nil || v != secret {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	if _, _, err := mustOpen(t, dbPath, filepath.Join(t.TempDir(), "k")).SecretSetting(ctx, "host-key"); err == nil {
		t.Fatal("secret setting decrypted with another key")
	}
}

func TestUpgradeFromSchemaV1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath, keyPath := filepath.Join(dir, "berth.db"), filepath.Join(dir, "config.key")
	seal, err := newSealer(keyPath)
	must(t, err)
	db := rawDB(t, dbPath)
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_migrations(version, applied_at) VALUES (1, 0)`,
		`INSERT INTO apps(name, created_at, current_release) VALUES ('shop', 1, 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("build v1 database: %v", err)
		}
	}
	env := seal.seal([]byte(`{"A":"1"}`), "release-env")
	if _, err := db.Exec(`INSERT INTO releases(app, version, image_id, env, processes, formation, status, created_at) VALUES ('shop', 1, 'img', ?, '{"web":""}', '{"web":1}', 'succeeded', 1)`, env); err != nil {
		t.Fatal(err)
	}
	db.Close()

	st := mustOpen(t, dbPath, keyPath)
	v, err := st.SchemaVersion(ctx)
	must(t, err)
	if v != len(migrations) {
		t.Fatalf("SchemaVersion after upgrade = %d, want %d", v, len(migrations))
	}
	r, err := st.Release(ctx, "shop", 1)
	must(t, err)
	if r.Env["A"] != "1" || r.Processes["web"] != "" || r.Formation["web"] != 1 || len(r.AppEnv) != 0 || r.AppJSON != "" {
		t.Fatalf("v1 release after upgrade = %+v", r)
	}
	r2, err := st.CreateRelease(ctx, Release{App: "shop", Env: map[string]string{}, AppEnv: map[string]string{"B": "2"}})
	must(t, err)
	if r2.Version != 2 {
		t.Fatalf("next release after upgrade = v%d", r2.Version)
	}
}
