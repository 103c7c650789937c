package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The SSH door and the local socket run the same registry: same output,
// same exit codes.
func TestSSHAndSocketAgree(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("door")
	s.apps.Store(app, true)
	if out, code := s.ssh("", "apps:create", app); code != 0 {
		t.Fatalf("apps:create over ssh: %d %s", code, out)
	}
	cases := [][]string{
		{"apps:list"},
		{"apps:exists", app},
		{"apps:exists", "missing-app"},
		{"config:get", app, "NOPE"},
		{"config:set", app, "BROKEN"},
		{"config:set", app, "1BAD=x"},
		{"apps:create", "Bad_Name"},
		{"no:such-command"},
		{"ps:report", app, "--format", "xml"},
		{"help", "apps"},
		{"version"},
	}
	for _, args := range cases {
		local, lcode := s.berth(args...)
		remote, rcode := s.ssh("", args...)
		if lcode != rcode || local != remote {
			t.Errorf("%v: socket (exit %d) %q != ssh (exit %d) %q", args, lcode, local, rcode, remote)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"apps:exists", "missing-app"}, 1, "app missing-app does not exist"},
		{[]string{"config:set", app, "BROKEN"}, 1, `invalid config pair "BROKEN"`},
		{[]string{"config:set", app, "1BAD=x"}, 1, `invalid config key "1BAD"`},
		{[]string{"apps:create", "Bad_Name"}, 1, `invalid app name "Bad_Name"`},
		{[]string{"no:such-command"}, 1, "is not a berth command"},
		{[]string{"config:get", app, "NOPE"}, 1, "NOPE is not set"},
		{[]string{"ps:report", app, "--format", "xml"}, 1, "unknown format"},
		{[]string{"apps:create", app}, 1, "is already taken"},
		{[]string{"config:show", "missing-app"}, 1, "does not exist"},
		{[]string{"ssh-keys:add", "x", "/etc/passwd"}, 1, "pipe the key on stdin"},
	} {
		out, code := s.ssh("", c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, output %q; want exit %d and %q", c.args, code, out, c.code, c.want)
		}
	}
	// Bad input changed nothing.
	var cfg map[string]string
	s.jsonOut(&cfg, "config:show", app, "--format", "json")
	if len(cfg) != 0 {
		t.Errorf("config changed by bad input: %v", cfg)
	}
	var apps []string
	s.jsonOut(&apps, "apps:list", "--format", "json")
	if len(apps) != 1 || apps[0] != app {
		t.Errorf("apps:list = %v", apps)
	}
	// Destroy over SSH reads its confirmation from stdin.
	if out, code := s.ssh(app+"\n", "apps:destroy", app); code != 0 {
		t.Errorf("apps:destroy with confirmation over ssh: %d %s", code, out)
	}
}

// Only registered keys may log in.
func TestSSHRejectsUnknownKeys(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	run := func() (string, int) {
		cmd := exec.Command("ssh", "-i", other, "-p", s.SSHPort, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "git@127.0.0.1", "apps:list")
		out, err := cmd.CombinedOutput()
		return string(out), exitCode(err)
	}
	if out, code := run(); code == 0 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("unknown key: exit %d %s", code, out)
	}
	pub, _ := os.ReadFile(other + ".pub")
	s.mustBerthIn(string(pub), "ssh-keys:add", "other")
	if out, code := run(); code != 0 {
		t.Fatalf("added key: exit %d %s", code, out)
	}
	out, code := s.berthIn(string(pub), "ssh-keys:add", "again")
	if code == 0 || !strings.Contains(out, "already added as other") {
		t.Errorf("duplicate key: exit %d %s", code, out)
	}
	third := filepath.Join(t.TempDir(), "third")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", third).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	thirdPub, _ := os.ReadFile(third + ".pub")
	out, code = s.berthIn(string(thirdPub), "ssh-keys:add", "other")
	if code == 0 || !strings.Contains(out, "a key named other already exists") {
		t.Errorf("duplicate name: exit %d %s", code, out)
	}
	out, code = s.berthIn("ssh-ed25519 AAAAnotakey\n", "ssh-keys:add", "junk")
	if code == 0 || !strings.Contains(out, "not a valid SSH public key") {
		t.Errorf("junk key: exit %d %s", code, out)
	}
	list := s.mustBerth("ssh-keys:list")
	if !strings.Contains(list, `NAME="other"`) || !strings.Contains(list, `NAME="e2e"`) {
		t.Errorf("ssh-keys:list:\n%s", list)
	}
	s.mustBerth("ssh-keys:remove", "other")
	if out, code := run(); code == 0 {
		t.Fatalf("removed key still logs in: %s", out)
	}
}

func (s *Server) mustBerthIn(stdin string, args ...string) string {
	s.t.Helper()
	out, code := s.berthIn(stdin, args...)
	if code != 0 {
		s.t.Fatalf("berth %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// Custom and global domains route to the app; another app cannot take them.
func TestDomains(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("dom")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("domains:add", app, "WWW.Example.TEST", "api.example.test")
	for _, h := range []string{"www.example.test", "api.example.test", "www.example.test:80", host(app)} {
		if code, body := s.get(h, "/"); code != 200 {
			t.Errorf("host %s: %d %s", h, code, body)
		}
	}
	var rep struct {
		AppVhosts []string `json:"app-vhosts"`
		Hosts     []string `json:"hosts"`
	}
	s.jsonOut(&rep, "domains:report", app, "--format", "json")
	if strings.Join(rep.AppVhosts, " ") != "www.example.test api.example.test" {
		t.Errorf("domains:report app-vhosts = %v", rep.AppVhosts)
	}

	other := appName("dom2")
	s.apps.Store(other, true)
	s.mustBerth("apps:create", other)
	out, code := s.berth("domains:add", other, "www.example.test")
	if code == 0 || !strings.Contains(out, "already used by app "+app) {
		t.Errorf("taking another app's domain: exit %d %s", code, out)
	}
	out, code = s.berth("domains:add", other, host(app))
	if code == 0 || !strings.Contains(out, "default host of app "+app) {
		t.Errorf("taking another app's default host: exit %d %s", code, out)
	}
	out, code = s.berth("domains:add", other, "bad_domain..test")
	if code == 0 || !strings.Contains(out, "invalid domain") {
		t.Errorf("invalid domain: exit %d %s", code, out)
	}
	if code, _ := s.get("www.example.test", "/"); code != 200 {
		t.Errorf("the owner lost its domain: %d", code)
	}
	// An app that is not deployed answers 502 at its hosts.
	if code, _ := s.get(host(other), "/"); code != 502 {
		t.Errorf("undeployed app: %d, want 502", code)
	}

	s.mustBerth("domains:remove", app, "api.example.test")
	if code, _ := s.get("api.example.test", "/"); code != 404 {
		t.Errorf("removed domain: %d, want 404", code)
	}
	s.mustBerth("domains:set-global", "apps.test", "alt.test")
	for _, h := range []string{app + ".apps.test", app + ".alt.test"} {
		if code, _ := s.get(h, "/"); code != 200 {
			t.Errorf("global host %s: %d", h, code)
		}
	}
	if code, _ := s.get(host(app), "/"); code != 404 {
		t.Errorf("old global host: %d, want 404", code)
	}
	s.mustBerth("domains:clear", app)
	if code, _ := s.get("www.example.test", "/"); code != 404 {
		t.Errorf("cleared domain: %d", code)
	}
	if code, _ := s.get("unknown.test", "/"); code != 404 {
		t.Errorf("unknown host: %d", code)
	}
}

// ps:stop takes the app out of service (502); ps:start brings it back.
func TestStopStartAndLogs(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("stop")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	out := s.mustBerth("logs", app)
	if !strings.Contains(out, "app[web.1]: listening on :5000") {
		t.Errorf("logs:\n%s", out)
	}
	if out := s.mustBerth("logs", app, "--quiet", "-n", "1"); strings.TrimSpace(out) != "listening on :5000" {
		t.Errorf("logs --quiet -n 1: %q", out)
	}

	// Follow the logs while a restart logs a new line.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, berthBin, "--data-dir", s.DataDir, "logs", app, "-t", "-n", "0")
	pipe, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond)
	docker(t, "restart", app+".web.1")
	select {
	case l := <-lines:
		if !strings.Contains(l, "app[web.1]: listening on :5000") {
			t.Errorf("followed line %q", l)
		}
	case <-ctx.Done():
		t.Error("logs -t printed nothing after a restart")
	}
	follow.Process.Kill()
	follow.Wait()

	// The proxy follows a restart made behind berth's back.
	eventually(t, 10*time.Second, func() error {
		if code, body := s.get(host(app), "/"); code != 200 {
			return fmt.Errorf("after docker restart: %d %s", code, body)
		}
		return nil
	})

	s.mustBerth("ps:stop", app)
	if code, _ := s.get(host(app), "/"); code != 502 {
		t.Errorf("stopped app answers %d, want 502", code)
	}
	if got := docker(t, "inspect", "-f", "{{.State.Running}}", app+".web.1"); got != "false" {
		t.Errorf("container running after ps:stop: %s", got)
	}
	var ps struct {
		Stopped bool   `json:"stopped"`
		Running string `json:"running"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if !ps.Stopped || ps.Running != "false" {
		t.Errorf("ps:report after stop: %+v", ps)
	}
	// A stopped app stays stopped across a server restart.
	s.stop(15)
	s.start(t)
	if code, _ := s.get(host(app), "/"); code != 502 {
		t.Errorf("stopped app after server restart answers %d", code)
	}
	s.mustBerth("ps:start", app)
	s.mustGet(host(app), "/")
	s.mustBerth("ps:rebuild", app)
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
		t.Errorf("after ps:rebuild: %q", body)
	}
}

// Help lists namespaces and commands, locally and over SSH.
func TestHelp(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	out := s.mustBerth("help")
	for _, ns := range []string{"apps", "config", "domains", "logs", "ps", "ssh-keys"} {
		if !strings.Contains(out, "    "+ns) {
			t.Errorf("help lacks namespace %s:\n%s", ns, out)
		}
	}
	out = s.mustBerth("help", "config")
	for _, c := range []string{"config:set", "config:unset", "config:get", "config:show", "config:export", "config:keys"} {
		if !strings.Contains(out, c) {
			t.Errorf("help config lacks %s", c)
		}
	}
	if out, _ := s.berth("help", "git"); strings.Contains(out, "git:hook") {
		t.Error("hidden command listed")
	}
	if out := s.mustBerth("help", "run"); !strings.Contains(out, "run:detached") {
		t.Errorf("help run should list the run namespace:\n%s", out)
	}
	out, code := s.ssh("", "git:hook", "x")
	if code == 0 || !strings.Contains(out, "can only be run on the server") {
		t.Errorf("git:hook over ssh: exit %d %s", code, out)
	}
}
