package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-paas/berth/internal/testkit"
)

var bootstrapOnce sync.Once

// useStack makes the buildpack stack and runtime images (once per engine:
// images:bootstrap is idempotent) and makes them s's defaults.
func useStack(t *testing.T, s *Server) {
	t.Helper()
	var out string
	var code int
	bootstrapOnce.Do(func() {
		out, code = s.berth("images:bootstrap")
	})
	if code != 0 {
		t.Fatalf("images:bootstrap: exit %d\n%s", code, out)
	}
	s.mustBerth("images:bootstrap", "--set-default")
}

func buildpackDir(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "buildpacks", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Buildpack builds: two buildpacks in order, the cache kept between
// builds, .profile.d applied at run time, bin/release defaults used, a
// failing detect listing what was tried, build logs kept.
func TestBuildpacks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	useStack(t, s)
	app := appName("bp")
	hello, nope := buildpackDir(t, "hello"), buildpackDir(t, "nope")
	// The app names its buildpacks itself (.buildpacks): tarball URLs,
	// served on loopback. (Server paths are for buildpacks:add only.)
	packs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(dirTarball(t, buildpackDir(t, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), ".tgz"))))
	}))
	defer packs.Close()
	r := newRepo(t, map[string]string{"Dockerfile": "", "hello.txt": "hi\n", ".buildpacks": packs.URL + "/hello.tgz\n" + packs.URL + "/second.tgz\n", "Procfile": "web: ./fixture\n"})
	s.mustBerth("apps:create", app)
	s.apps.Store(app, true)
	s.mustBerth("config:set", "--no-restart", app, "MSG=at-build")
	out := s.mustPush(r, app)
	h, sec := strings.Index(out, "Hello app detected"), strings.Index(out, "Second app detected")
	if h < 0 || sec < 0 || h > sec {
		t.Errorf("buildpacks did not run in order:\n%s", out)
	}
	for _, want := range []string{"cache count: 1", "MSG at build time: at-build", "Building " + app + " with buildpacks (from .buildpacks)"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	if got := s.mustGet(host(app), "/env?k=FROM_PROFILE"); got != "set by .profile.d" {
		t.Errorf(".profile.d not applied at run time: %q", got)
	}
	if got := s.mustGet(host(app), "/env?k=FROM_RELEASE"); got != "release-default" {
		t.Errorf("bin/release config_vars: %q", got)
	}
	if got := strings.TrimSpace(s.mustBerth("run", app, "cat", "second.txt")); got != "after hello" {
		t.Errorf("second buildpack saw %q", got)
	}
	var ps struct {
		Formation map[string]int `json:"formation"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if _, ok := ps.Formation["worker"]; !ok {
		t.Errorf("default_process_types worker missing from the formation: %v", ps.Formation)
	}
	s.mustBerth("ps:scale", app, "worker=1")
	eventually(t, 10*time.Second, func() error {
		if out := s.mustBerth("logs", app, "-p", "worker", "-n", "3"); !strings.Contains(out, "worker tick") {
			return fmt.Errorf("the default worker process does not run:\n%s", out)
		}
		return nil
	})

	// The cache dir survives to the next build, until purged.
	r.commit("again")
	if out := s.mustPush(r, app); !strings.Contains(out, "cache count: 2") {
		t.Errorf("cache not reused:\n%s", out)
	}
	s.mustBerth("repo:purge-cache", app)
	r.commit("after purge")
	if out := s.mustPush(r, app); !strings.Contains(out, "cache count: 1") {
		t.Errorf("cache not purged:\n%s", out)
	}

	// Buildpacks set on the app win over .buildpacks; none detecting fails.
	s.mustBerth("buildpacks:add", app, nope)
	if list := s.mustBerth("buildpacks:list", app); !strings.Contains(list, nope) {
		t.Errorf("buildpacks:list:\n%s", list)
	}
	before := s.mustGet(host(app), "/")
	r.commit("nope")
	out, code := s.push(r, app)
	if code == 0 || !strings.Contains(out, "no buildpack detected this app (tried: "+nope+")") {
		t.Errorf("failing detect: exit %d\n%s", code, out)
	}
	if got := s.mustGet(host(app), "/"); got != before {
		t.Errorf("a failed build changed the app: %q", got)
	}
	var builds []struct {
		ID      int    `json:"id"`
		Status  string `json:"status"`
		Builder string `json:"builder"`
	}
	s.jsonOut(&builds, "builds:list", app, "--format", "json")
	if len(builds) != 4 || builds[0].Status != "failed" || builds[1].Status != "succeeded" || builds[1].Builder != "herokuish" {
		t.Errorf("builds:list = %+v", builds)
	}
	if out := s.mustBerth("builds:output", app); !strings.Contains(out, "no buildpack detected") {
		t.Errorf("builds:output of the failed build:\n%s", out)
	}
	if out := s.mustBerth("builds:output", app, "1"); !strings.Contains(out, "cache count: 1") {
		t.Errorf("builds:output 1:\n%s", out)
	}
	// A buildpack from a git repository, at a ref.
	bpRepo := t.TempDir()
	cp := exec.Command("cp", "-a", hello+"/.", bpRepo)
	if o, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy buildpack: %v %s", err, o)
	}
	gr := &Repo{Repo: &testkit.Repo{Dir: bpRepo}, t: t}
	gr.git("init", "-q", "-b", "main")
	gr.commit("buildpack")
	gr.git("tag", "v1")
	s.mustBerth("buildpacks:set", app, "file://"+bpRepo+"#v1")
	r.commit("git buildpack")
	if out := s.mustPush(r, app); !strings.Contains(out, "Hello app detected (file://"+bpRepo+"#v1)") {
		t.Errorf("git buildpack not used:\n%s", out)
	}
	s.mustBerth("buildpacks:clear", app)
	out, code = s.berth("buildpacks:add", app, "not a buildpack")
	if code == 0 || !strings.Contains(out, "invalid buildpack") {
		t.Errorf("bad buildpack accepted: %s", out)
	}
	out, code = s.berth("buildpacks:add", app, "https://127.0.0.1:1/missing.git")
	if code != 0 {
		t.Fatalf("buildpacks:add: %s", out)
	}
	r.commit("unfetchable")
	out, code = s.push(r, app)
	if code == 0 || !strings.Contains(out, "fetch buildpack https://127.0.0.1:1/missing.git") {
		t.Errorf("unfetchable buildpack: exit %d\n%s", code, out)
	}
}

// A builder can be forced, and a monorepo built from a subdirectory with
// app.json and Procfile at other paths.
func TestBuilderSettings(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("mono")
	r := newRepo(t, map[string]string{
		"Dockerfile":          "",
		"fixture":             "",
		"svc/Dockerfile":      "FROM scratch\nCOPY fixture /fixture\nCMD [\"/fixture\"]\n",
		"svc/config/Procfile": "web: /fixture\nworker: /fixture worker\n",
		"svc/config/app.json": `{"formation": {"worker": {"quantity": 1}}}`,
	})
	data, _ := os.ReadFile(fixtureBin)
	os.WriteFile(filepath.Join(r.Dir, "svc", "fixture"), data, 0o755)
	r.commit("monorepo")
	s.mustBerth("apps:create", app)
	s.apps.Store(app, true)
	s.mustBerth("builder:set", app, "build-dir", "svc")
	s.mustBerth("ps:set", app, "procfile-path", "config/Procfile")
	s.mustBerth("app-json:set", app, "appjson-path", "config/app.json")
	s.mustPush(r, app)
	s.mustGet(host(app), "/")
	if got := containers(t, app); len(got) != 2 {
		t.Errorf("web and the app.json worker should run: %v", got)
	}
	var rep struct {
		BuildDir    string `json:"build-dir"`
		LastBuilder string `json:"last-builder"`
	}
	s.jsonOut(&rep, "builder:report", app, "--format", "json")
	if rep.BuildDir != "svc" || rep.LastBuilder != "dockerfile" {
		t.Errorf("builder:report = %+v", rep)
	}
	for _, bad := range [][]string{{"builder:set", app, "build-dir", "../etc"}, {"builder:set", app, "selected", "magic"}, {"app-json:set", app, "appjson-path", "/etc/passwd"}} {
		if out, code := s.berth(bad...); code == 0 {
			t.Errorf("%v accepted: %s", bad, out)
		}
	}
	// Forcing herokuish on a tree without buildpacks fails clearly.
	s.mustBerth("builder:set", app, "selected", "herokuish")
	r.commit("forced")
	out, code := s.push(r, app)
	if code == 0 || !strings.Contains(out, "no Dockerfile and no buildpack") && !strings.Contains(out, "images:bootstrap") {
		t.Errorf("forced herokuish without buildpacks: exit %d\n%s", code, out)
	}
}

func tarball(t *testing.T, files map[string]string, links map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		mode := int64(0o644)
		if name == "fixture" {
			mode = 0o755
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	for name, target := range links {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target})
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// git:from-archive deploys tarballs from a URL or stdin and refuses
// archives that would write outside the build dir.
func TestFromArchive(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("tgz")
	s.apps.Store(app, true)
	fixture, _ := os.ReadFile(fixtureBin)
	good := tarball(t, map[string]string{"fixture": string(fixture), "Dockerfile": "FROM scratch\nCOPY fixture /fixture\nCMD [\"/fixture\"]\n"}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(good) }))
	defer srv.Close()
	out := s.mustBerth("git:from-archive", app, srv.URL+"/app.tar.gz")
	if !strings.Contains(out, "Application deployed") {
		t.Errorf("from URL:\n%s", out)
	}
	s.mustGet(host(app), "/")
	out, code := s.berthIn(string(good), "git:from-archive", app, "-")
	if code != 0 {
		t.Fatalf("from stdin: %s", out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
		t.Errorf("from stdin: %q", body)
	}

	outside := t.TempDir()
	evil := filepath.Join(outside, "evil")
	for name, data := range map[string][]byte{
		"dotdot":        tarball(t, map[string]string{"Dockerfile": "FROM scratch\n", "../../../../../../../.." + evil: "x"}, nil),
		"absolute":      tarball(t, map[string]string{"Dockerfile": "FROM scratch\n", evil: "x"}, nil),
		"symlink":       tarball(t, map[string]string{"Dockerfile": "FROM scratch\n"}, map[string]string{"escape": outside}),
		"relative link": tarball(t, map[string]string{"Dockerfile": "FROM scratch\n"}, map[string]string{"a/escape": "../../../../../../../" + outside}),
	} {
		out, code := s.berthIn(string(data), "git:from-archive", app, "-")
		if code == 0 || !strings.Contains(out, "refused") {
			t.Errorf("%s archive: exit %d\n%s", name, code, out)
		}
		if _, err := os.Stat(evil); err == nil {
			t.Fatalf("%s archive wrote outside the build dir", name)
		}
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
		t.Errorf("a refused archive changed the app: %q", body)
	}
	out, code = s.berth("git:from-archive", app, "ftp://example.invalid/x.tgz")
	if code == 0 || !strings.Contains(out, "invalid archive URL") {
		t.Errorf("bad URL: %s", out)
	}
}

// git:sync fetches a remote repository and deploys it with --build.
func TestGitSync(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("sync")
	s.apps.Store(app, true)
	r := newRepo(t, nil)
	s.mustBerth("git:sync", app, r.Dir)
	if code, _ := s.get(host(app), "/"); code != 502 {
		t.Errorf("git:sync without --build should not deploy (got %d)", code)
	}
	out := s.mustBerth("git:sync", "--build", app, "file://"+r.Dir, "main")
	if !strings.Contains(out, "Application deployed") {
		t.Errorf("git:sync --build:\n%s", out)
	}
	if got := s.mustGet(host(app), "/env?k=GIT_REV"); got != strings.TrimSpace(r.git("rev-parse", "HEAD")) {
		t.Errorf("GIT_REV = %q", got)
	}
	for _, bad := range [][]string{{"git:sync", app, "--upload-pack=evil"}, {"git:sync", app, r.Dir, "-x"}} {
		if out, code := s.berth(bad...); code == 0 {
			t.Errorf("%v accepted: %s", bad, out)
		}
	}
}

// Docker options and resource limits reach the containers; bad options
// are refused when set.
func TestDockerOptionsAndLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("opts")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("docker-options:add", app, "deploy,run", "--label", "team=blue")
	s.mustBerth("docker-options:add", app, "deploy", "-e", "FROM_OPTION=yes")
	s.mustBerth("resource:limit", app, "--memory", "256m", "--cpu", "0.5")
	s.mustBerth("ps:restart", app)
	if got := docker(t, "inspect", "-f", `{{index .Config.Labels "team"}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}`, app+".web.1"); got != "blue 268435456 500000000" {
		t.Errorf("label/memory/cpus = %q", got)
	}
	if got := s.mustGet(host(app), "/env?k=FROM_OPTION"); got != "yes" {
		t.Errorf("-e option: %q", got)
	}
	var rep struct {
		Deploy []string `json:"deploy"`
	}
	s.jsonOut(&rep, "docker-options:report", app, "--format", "json")
	if len(rep.Deploy) != 2 {
		t.Errorf("docker-options:report = %+v", rep)
	}
	for _, bad := range [][]string{
		{"docker-options:add", app, "deploy", "--privileged"},
		{"docker-options:add", app, "deploy", "--label", "berth.app=other"},
		{"docker-options:add", app, "launch", "--label", "x=y"},
		{"docker-options:add", app, "build", "--memory", "1g"},
		{"resource:limit", app, "--memory", "lots"},
	} {
		if out, code := s.berth(bad...); code == 0 {
			t.Errorf("%v accepted: %s", bad, out)
		}
	}
	// Build limits apply to the build (a Dockerfile build here).
	s.mustBerth("resource:limit", "--process-type", "build", app, "--memory", "300m")
	var res struct {
		Limits map[string]struct {
			Memory int64 `json:"memory"`
		} `json:"limits"`
	}
	s.jsonOut(&res, "resource:report", app, "--format", "json")
	if res.Limits["build"].Memory != 300<<20 || res.Limits["default"].Memory != 256<<20 {
		t.Errorf("resource:report = %+v", res)
	}
	r.commit("limited build")
	s.mustPush(r, app)
	s.mustBerth("docker-options:remove", app, "deploy", "--label", "team=blue")
	s.mustBerth("resource:limit-clear", app)
	s.mustBerth("ps:restart", app)
	if got := docker(t, "inspect", "-f", `{{index .Config.Labels "team"}}|{{.HostConfig.Memory}}`, app+".web.1"); got != "|0" {
		t.Errorf("after removal = %q", got)
	}
}

// git:from-image deploys a local image, and an image from a registry with
// registry:login credentials (Debian's docker-registry, on loopback).
func TestFromImage(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("img")
	s.apps.Store(app, true)
	ctxDir := t.TempDir()
	data, _ := os.ReadFile(fixtureBin)
	os.WriteFile(filepath.Join(ctxDir, "fixture"), data, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Procfile"), []byte("web: /fixture\nworker: /fixture worker\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY fixture /fixture\nCOPY Procfile /Procfile\nCMD [\"/fixture\"]\n"), 0o644)
	local := "berth-e2e-local-" + app + ":1"
	docker(t, "build", "-q", "-t", local, ctxDir)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", local).Run() })
	out := s.mustBerth("git:from-image", app, local)
	if !strings.Contains(out, "Using image "+"docker.io/library/"+local) && !strings.Contains(out, "from the local engine") {
		t.Errorf("git:from-image output:\n%s", out)
	}
	s.mustGet(host(app), "/")
	var ps struct {
		Formation map[string]int `json:"formation"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if _, ok := ps.Formation["worker"]; !ok {
		t.Errorf("the image's Procfile was not read: %v", ps.Formation)
	}
	out, code := s.berth("git:from-image", app, "not a ref")
	if code == 0 || !strings.Contains(out, "invalid image reference") {
		t.Errorf("bad reference: %s", out)
	}

	reg := startRegistry(t)
	remote := reg.addr + "/e2e/" + app + ":2"
	docker(t, "tag", local, remote)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", remote).Run() })
	loginCmd := exec.Command("docker", "login", "--username", "e2e", "--password-stdin", reg.addr)
	loginCmd.Stdin = strings.NewReader(reg.password)
	if o, err := loginCmd.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v %s", err, o)
	}
	docker(t, "push", remote)
	docker(t, "rmi", remote)
	exec.Command("docker", "logout", reg.addr).Run()

	out, code = s.berth("git:from-image", app, remote)
	if code == 0 || !strings.Contains(strings.ToLower(out), "unauthorized") && !strings.Contains(out, "no basic auth") && !strings.Contains(out, "authentication required") {
		t.Errorf("pull without login: exit %d\n%s", code, out)
	}
	out, code = s.berthIn("wrong", "registry:login", reg.addr, "e2e", "--password-stdin")
	if code == 0 {
		t.Errorf("registry:login with a wrong password succeeded: %s", out)
	}
	s.mustBerthIn(reg.password+"\n", "registry:login", reg.addr, "e2e", "--password-stdin")
	out = s.mustBerth("git:from-image", app, remote)
	if !strings.Contains(out, "Pulling "+remote) {
		t.Errorf("pull with login:\n%s", out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
		t.Errorf("after the registry deploy: %q", body)
	}
	out, code = s.berth("git:from-image", app, reg.addr+"/e2e/missing:1")
	if code == 0 {
		t.Errorf("missing image deployed: %s", out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
		t.Errorf("a failed pull changed the app: %q", body)
	}
}

type registry struct {
	addr, password string
}

// startRegistry runs Debian's docker-registry on a loopback port with
// htpasswd authentication (user e2e); it stops with the test.
func startRegistry(t *testing.T) registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry is required (run scripts/install-deps.sh): %v", err)
	}
	dir := t.TempDir()
	password := "pw-" + appName("x")
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("e2e:"+string(hash)+"\n"), 0o600)
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + port
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
auth:
  htpasswd:
    realm: berth-e2e
    path: %s
`, filepath.Join(dir, "data"), addr, filepath.Join(dir, "htpasswd"))
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600)
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	var log testkit.LockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return fmt.Errorf("registry not up: %v\n%s", err, log.String())
		}
		resp.Body.Close()
		return nil
	})
	return registry{addr: addr, password: password}
}

// dirTarball packs a directory (modes kept) as a gzipped tarball.
func dirTarball(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tw.WriteHeader(&tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), Typeflag: tar.TypeReg})
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}
