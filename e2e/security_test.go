package e2e

import (
	"strings"
	"testing"

	"github.com/berth-paas/berth/internal/testkit"
)

// A pushed tree cannot make the server read its own files through
// symlinks, nor name server-side buildpacks.
func TestPushedTreeStaysInside(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("sym")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	for name, setup := range map[string]func(){
		"Procfile": func() { r.git("rm", "-q", "--ignore-unmatch", "Procfile"); r.symlink("/etc/passwd", "Procfile") },
		"app.json": func() { r.symlink("/etc/passwd", "app.json") },
		"CHECKS":   func() { r.symlink("/etc/passwd", "CHECKS") },
	} {
		setup()
		r.commit("symlink " + name)
		out, code := s.push(r, app)
		if code == 0 {
			t.Errorf("%s symlinked to /etc/passwd: the push succeeded:\n%s", name, out)
		}
		if strings.Contains(out, "root:x:0:0") || strings.Contains(out, "/bin/bash") {
			t.Errorf("%s: the push output shows the server's /etc/passwd:\n%s", name, out)
		}
		r.git("reset", "-q", "--hard", "HEAD~1")
	}
	// A build dir that is a symlink out of the tree is refused.
	r.symlink("/etc", "outside")
	r.commit("outside")
	s.mustBerth("builder:set", app, "build-dir", "outside")
	out, code := s.push(r, app)
	if code == 0 || !strings.Contains(out, "leaves the source tree") {
		t.Errorf("build-dir through a symlink: exit %d\n%s", code, out)
	}
	s.mustBerth("builder:set", app, "build-dir")
	r.git("reset", "-q", "--hard", "HEAD~1")

	r.write(map[string]string{"Dockerfile": "", ".buildpacks": "/var/lib\n", "hello.txt": "x"})
	r.commit("server buildpack")
	out, code = s.push(r, app)
	if code == 0 || !strings.Contains(out, "only buildpacks:add") {
		t.Errorf(".buildpacks naming a server path: exit %d\n%s", code, out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v1") {
		t.Errorf("a refused push changed the app: %q", body)
	}
}

// A user key reaches only its apps, and not through commands that reach
// the host or names shared by every app.
func TestUserKeyCannotReachTheHost(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	key, pub, err := testkit.NewKey(t.TempDir(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddKey("carol", pub); err != nil {
		t.Fatal(err)
	}
	mine := appName("own")
	s.mustBerth("apps:create", mine)
	s.apps.Store(mine, true)
	s.mustBerth("acl:add", mine, "carol")
	s.mustBerth("acl:set-role", "carol", "user")
	carol := func(args ...string) (string, int) { return s.SSH(key, "", args...) }
	if out, code := carol("config:set", "--no-restart", mine, "A=1"); code != 0 {
		t.Fatalf("carol on her own app: %d %s", code, out)
	}
	for _, args := range [][]string{
		{"docker-options:add", mine, "deploy", "-v", "/:/host"},
		{"resource:limit", mine, "--memory", "1g"},
		{"buildpacks:add", mine, "/var/lib/berth"},
		{"git:sync", mine, "/var/lib/berth/repos/" + mine + ".git"},
		{"git:from-image", mine, "berth/other:v1"},
		{"git:from-archive", mine, "http://127.0.0.1:1/x.tgz"},
		{"domains:add", mine, "example.test"},
		{"certs:generate", mine},
		{"ports:add", mine, "tcp:15000:5000"},
		{"images:bootstrap"},
		{"registry:login", "127.0.0.1:5000", "x"},
	} {
		out, code := carol(args...)
		if code == 0 || !strings.Contains(out, "access denied") {
			t.Errorf("user key ran %v: exit %d %s", args, code, out)
		}
	}
}
