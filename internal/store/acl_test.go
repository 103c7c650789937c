package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestACL(t *testing.T) {
	st, _, _ := testStore(t)
	ctx := context.Background()
	for _, a := range []string{"shop", "blog"} {
		if err := st.CreateApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range []string{"alice", "bob"} {
		if err := st.AddKey(ctx, SSHKey{Name: k, Fingerprint: "SHA256:" + k, PublicKey: "ssh-ed25519 AAAA" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddACL(ctx, "shop", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddACL(ctx, "shop", "alice"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := st.AddACL(ctx, "nope", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing app: %v", err)
	}
	if err := st.AddACL(ctx, "shop", "carol"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	st.AddACL(ctx, "blog", "alice")
	st.AddACL(ctx, "blog", "bob")
	if apps, _ := st.KeyApps(ctx, "alice"); !reflect.DeepEqual(apps, []string{"blog", "shop"}) {
		t.Fatalf("alice reaches %v", apps)
	}
	// Renames follow, deletes cascade.
	if err := st.RenameApp(ctx, "blog", "journal"); err != nil {
		t.Fatal(err)
	}
	acls, _ := st.ACLs(ctx, "")
	if !reflect.DeepEqual(acls, map[string][]string{"journal": {"alice", "bob"}, "shop": {"alice"}}) {
		t.Fatalf("ACLs %v", acls)
	}
	if err := st.DeleteApp(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if apps, _ := st.KeyApps(ctx, "alice"); !reflect.DeepEqual(apps, []string{"journal"}) {
		t.Fatalf("alice reaches %v after delete", apps)
	}
	if err := st.RemoveACL(ctx, "journal", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveACL(ctx, "journal", "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}

	// Roles: admin by default.
	if r, _ := st.KeyRole(ctx, "bob"); r != RoleAdmin {
		t.Fatalf("bob is %s", r)
	}
	if err := st.SetKeyRole(ctx, "bob", RoleUser); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.KeyRole(ctx, "bob"); r != RoleUser {
		t.Fatalf("bob is %s", r)
	}
	if err := st.SetKeyRole(ctx, "carol", RoleUser); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if err := st.SetKeyRole(ctx, "bob", "root"); err == nil {
		t.Fatal("bad role accepted")
	}
	// Removing the key removes its role and entries.
	st.AddACL(ctx, "journal", "bob")
	if err := st.RemoveKey(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.KeyRole(ctx, "bob"); r != RoleAdmin {
		t.Fatalf("removed bob is %s", r)
	}
	if acls, _ := st.ACLs(ctx, "journal"); !reflect.DeepEqual(acls["journal"], []string{"alice"}) {
		t.Fatalf("ACL of journal %v", acls)
	}
}
