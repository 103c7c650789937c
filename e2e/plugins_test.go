package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-paas/berth/internal/testkit"
)

// pluginFixture is the absolute path of a fixture plugin in testdata/plugins.
func pluginFixture(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "plugins", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gitPluginRepo copies a fixture plugin into a new git repository and
// returns its file:// URL.
func gitPluginRepo(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", pluginFixture(t, name)+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy plugin: %v %s", err, out)
	}
	r := &testkit.Repo{Dir: dir}
	if _, err := r.Git("init", "-q", "-b", "main"); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit("plugin"); err != nil {
		t.Fatal(err)
	}
	return "file://" + dir
}

// installPlugin runs plugin:install and fails the test when it fails.
func (s *Server) installPlugin(args ...string) string {
	s.t.Helper()
	return s.mustBerth(append([]string{"plugin:install"}, args...)...)
}

// mustFail runs a CLI command that must fail and returns its output.
func (s *Server) mustFail(args ...string) string {
	s.t.Helper()
	out, code := s.berth(args...)
	if code == 0 {
		s.t.Fatalf("berth %s succeeded, want a failure:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func contains(t testing.TB, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestPluginTriggersAndCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	out := s.installPlugin(pluginFixture(t, "recorder"))
	contains(t, out, "Plugin recorder 1.0.0 installed", "Running install triggers")
	s.installPlugin(gitPluginRepo(t, "recorder"), "--name", "recorder-git")
	s.installPlugin(pluginFixture(t, "labeler"))
	s.installPlugin(pluginFixture(t, "broken"))

	var list []struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		Enabled    bool   `json:"enabled"`
		SourceKind string `json:"source-kind"`
		Commit     string `json:"commit"`
	}
	s.jsonOut(&list, "plugin:list", "--format", "json")
	if len(list) != 4 || list[2].Name != "recorder" || list[2].Version != "1.0.0" || !list[2].Enabled ||
		list[3].Name != "recorder-git" || list[3].SourceKind != "git" || list[3].Commit == "" {
		t.Fatalf("plugin:list = %+v", list)
	}

	app := appName("plug")
	out = s.mustPush(newRepo(t, nil), app)
	contains(t, out, "recorder saw the deploy of "+app, "plugin broken: post-deploy is not executable, skipping it")
	if strings.Contains(out, "must never run") {
		t.Fatalf("the non-executable trigger ran:\n%s", out)
	}
	// post-deploy APP PORT IP IMAGE_TAG, from the plugin installed from a
	// directory and the one installed from git.
	for _, p := range []string{"recorder", "recorder-git"} {
		data, err := os.ReadFile(filepath.Join(s.DataDir, "plugins", "data", p, "post-deploy."+app))
		if err != nil {
			t.Fatalf("%s did not record post-deploy: %v", p, err)
		}
		args := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(args) != 4 || args[0] != app || args[1] != "5000" || net.ParseIP(args[2]) == nil || args[3] != "berth/"+app+":v1" {
			t.Fatalf("%s got post-deploy %q", p, args)
		}
		if by, _ := os.ReadFile(filepath.Join(s.DataDir, "plugins", "data", p, "post-deploy-by."+app)); strings.TrimSpace(string(by)) != "e2e" {
			t.Fatalf("%s saw SSH_NAME=%q during the push", p, by)
		}
	}
	// docker-args-deploy output is applied to the container.
	if got := docker(t, "inspect", "-f", `{{index .Config.Labels "test.labeler"}}`, app+".web.1"); got != app+"-web-1" {
		t.Fatalf("label test.labeler = %q", got)
	}

	// Plugin commands, in help and run, through both doors.
	contains(t, s.mustBerth("help"), "recorder", "Records triggers (e2e fixture)")
	help, code := s.ssh("", "help", "recorder")
	if code != 0 {
		t.Fatalf("ssh help recorder: %d %s", code, help)
	}
	contains(t, help, "recorder:hello <app> [words...]", "Say hello and echo stdin", "recorder:shout <app> <word>", "Shout a word")
	contains(t, s.mustBerth("help", "recorder:hello"), "Usage: berth recorder:hello <app> [words...]")

	out, code = s.berthIn("line one\n", "recorder:hello", app, "--x", "y")
	if code != 0 || !strings.Contains(out, "hello "+app+" --x y (from local)") || !strings.Contains(out, "stdin: line one") {
		t.Fatalf("recorder:hello: %d %s", code, out)
	}
	out, code = s.ssh("line two\n", "recorder:hello", app, "z")
	if code != 0 || !strings.Contains(out, "hello "+app+" z (from e2e)") || !strings.Contains(out, "stdin: line two") {
		t.Fatalf("ssh recorder:hello: %d %s", code, out)
	}
	if out, code = s.berth("recorder:hello", app, "--exit", "3"); code != 3 || !strings.Contains(out, "exiting with 3") {
		t.Fatalf("exit code: %d %s", code, out)
	}
	if out, code = s.ssh("", "recorder:hello", app, "--exit", "4"); code != 4 {
		t.Fatalf("ssh exit code: %d %s", code, out)
	}
	if out := s.mustBerth("recorder:shout", app, "hi"); strings.TrimSpace(out) != "HI" {
		t.Fatalf("recorder:shout: %q", out)
	}
	// A `commands` script may handle commands it does not list.
	contains(t, s.mustBerth("recorder:hidden"), "hidden command ran")
	contains(t, s.mustFail("recorder:nope"), `"recorder:nope" is not a berth command`)

	// plugin:trigger fires by hand.
	contains(t, s.mustBerth("plugin:trigger", "post-deploy", "by-hand", "1", "2", "3"), "recorder saw the deploy of by-hand")

	// Disabled: no triggers, no commands.
	s.mustBerth("plugin:disable", "recorder")
	if out := s.mustBerth("help", "recorder"); strings.Contains(out, "recorder:hello") {
		t.Fatalf("a disabled plugin's command is still in help:\n%s", out)
	}
	contains(t, s.mustFail("recorder:hello", app), "is not a berth command")
	if out := s.mustBerth("plugin:trigger", "post-deploy", "x", "1", "2", "3"); strings.Count(out, "recorder saw") != 1 {
		t.Fatalf("disabled plugin ran (only recorder-git should):\n%s", out)
	}
	s.mustBerth("plugin:enable", "recorder")
	contains(t, s.mustBerth("recorder:hello", app), "hello "+app)

	// A user-auth plugin can deny commands over SSH (never locally).
	s.installPlugin(pluginFixture(t, "gatekeeper"))
	out, code = s.ssh("", "events", app)
	if code == 0 || !strings.Contains(out, "gatekeeper: e2e (as git) may not read events") ||
		!strings.Contains(out, "access denied (user-auth plugin gatekeeper exited with code 1)") {
		t.Fatalf("gatekeeper over SSH: %d %s", code, out)
	}
	s.mustBerth("events", app)
	if out, code := s.ssh("", "config:show", app); code != 0 {
		t.Fatalf("gatekeeper denied config:show: %d %s", code, out)
	}

	// Managing plugins is for the server itself, as in Dokku.
	out, code = s.ssh("", "plugin:install", pluginFixture(t, "labeler"))
	if code == 0 || !strings.Contains(out, "plugin:install can only be run on the server itself") {
		t.Fatalf("plugin:install over SSH: %d %s", code, out)
	}
	// A relative directory is taken from where the CLI runs.
	cmd := exec.Command(berthBin, "--data-dir", s.DataDir, "plugin:install", "./labeler", "--name", "labeler-rel")
	cmd.Dir = filepath.Dir(pluginFixture(t, "labeler"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Plugin labeler-rel installed") {
		t.Fatalf("plugin:install ./labeler: %v\n%s", err, out)
	}
	s.mustBerth("plugin:uninstall", "labeler-rel")
	s.mustBerth("plugin:uninstall", "recorder-git")
	s.jsonOut(&list, "plugin:list", "--format", "json")
	if len(list) != 4 {
		t.Fatalf("after uninstall: %+v", list)
	}
	contains(t, s.mustFail("plugin:install", pluginFixture(t, "recorder")), "plugin recorder is already installed")
	contains(t, s.mustFail("plugin:install", pluginFixture(t, "labeler"), "--name", "apps"), "taken by a core command namespace")
	contains(t, s.mustFail("plugin:install", pluginFixture(t, "labeler"), "--name", "../x"), "invalid plugin name")
}

func TestPluginFailingPreDeployKeepsOldRelease(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("plugfail")
	repo := newRepo(t, nil)
	s.mustPush(repo, app)
	contains(t, s.mustGet(host(app), "/"), "release=v1")

	s.installPlugin(pluginFixture(t, "failing"))
	repo.write(map[string]string{"CHANGED": "1"})
	repo.commit("change")
	out, code := s.push(repo, app)
	if code == 0 {
		t.Fatalf("push succeeded despite the failing pre-deploy plugin:\n%s", out)
	}
	contains(t, out, "failing plugin refuses to deploy "+app, "trigger pre-deploy: plugin failing exited with code 7")
	contains(t, s.mustGet(host(app), "/"), "release=v1")
	var rels []struct {
		Version int    `json:"version"`
		Status  string `json:"status"`
		Current bool   `json:"current"`
	}
	s.jsonOut(&rels, "releases:list", app, "--format", "json")
	if len(rels) != 2 || rels[0].Status != "failed" || !rels[1].Current {
		t.Fatalf("releases = %+v", rels)
	}
}

func TestACLLimitsAUserKey(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	bobKey, bobPub, err := testkit.NewKey(t.TempDir(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddKey("bob", bobPub); err != nil {
		t.Fatal(err)
	}
	mine, other := appName("mine"), appName("other")
	s.mustBerth("apps:create", mine)
	s.mustBerth("apps:create", other)
	s.apps.Store(mine, true)
	s.apps.Store(other, true)
	bob := func(stdin string, args ...string) (string, int) { return s.SSH(bobKey, stdin, args...) }

	// Admin by default: bob sees everything.
	if out, code := bob("", "config:show", other); code != 0 {
		t.Fatalf("admin bob: %d %s", code, out)
	}
	out := s.mustBerth("acl:add", mine, "bob")
	contains(t, out, "Added bob to the ACL of "+mine, "bob is an admin key")
	s.mustBerth("acl:set-role", "bob", "user")

	var names []string
	out, code := bob("", "apps:list", "--format", "json")
	if code != 0 || strings.Contains(out, other) || !strings.Contains(out, mine) {
		t.Fatalf("bob's apps:list: %d %s", code, out)
	}
	out, code = s.ssh("", "apps:list", "--format", "json")
	if code != 0 || !strings.Contains(out, other) || !strings.Contains(out, mine) {
		t.Fatalf("admin apps:list: %d %s", code, out)
	}
	s.jsonOut(&names, "apps:list", "--format", "json")
	if len(names) != 2 {
		t.Fatalf("local apps:list: %v", names)
	}

	if out, code := bob("", "config:set", mine, "A=1"); code != 0 {
		t.Fatalf("bob on his app: %d %s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config:show", other}, "app " + other + " does not exist"},
		{[]string{"config:show", "--format", "json", other}, "app " + other + " does not exist"},
		{[]string{"apps:destroy", other, "--force"}, "app " + other + " does not exist"},
		{[]string{"run", "-e", "X=" + mine, other, "ls"}, "app " + other + " does not exist"},
		{[]string{"config:set", "--global", "X=1"}, "may only run commands on its own apps"},
		{[]string{"apps:report"}, "may only run commands on its own apps"},
		{[]string{"ssh-keys:list"}, "ssh-keys:list is for admin keys only"},
		{[]string{"apps:create", "newapp"}, "apps:create is for admin keys only"},
		{[]string{"acl:add", mine, "bob"}, "acl:add is for admin keys only"},
		{[]string{"domains:add-global", "x.test"}, "domains:add-global is for admin keys only"},
	} {
		out, code := bob("", tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("bob %v: exit %d, want %q:\n%s", tc.args, code, tc.want, out)
		}
	}
	if v := strings.TrimSpace(s.mustBerth("config:get", mine, "A")); v != "1" {
		t.Fatalf("A = %q", v)
	}

	repo := newRepo(t, nil)
	out, code = s.Push(context.Background(), repo.Repo, other, bobKey)
	if code == 0 || !strings.Contains(out, "access denied: key bob may not push to or fetch "+other) {
		t.Fatalf("bob pushing to %s: %d %s", other, code, out)
	}
	out, code = s.Push(context.Background(), repo.Repo, appName("new"), bobKey)
	if code == 0 || !strings.Contains(out, "access denied") {
		t.Fatalf("bob creating an app by push: %d %s", code, out)
	}
	if out, code = s.Push(context.Background(), repo.Repo, mine, bobKey); code != 0 {
		t.Fatalf("bob pushing to his app: %d %s", code, out)
	}
	contains(t, s.mustGet(host(mine), "/"), "release=v1")

	var acl []struct {
		App  string   `json:"app"`
		Keys []string `json:"keys"`
	}
	s.jsonOut(&acl, "acl:list", "--format", "json")
	if len(acl) != 1 || acl[0].App != mine || fmt.Sprint(acl[0].Keys) != "[bob]" {
		t.Fatalf("acl:list = %+v", acl)
	}
	var rep struct {
		Key  string   `json:"key"`
		Role string   `json:"role"`
		Apps []string `json:"apps"`
	}
	s.jsonOut(&rep, "acl:report", "bob", "--format", "json")
	if rep.Role != "user" || fmt.Sprint(rep.Apps) != "["+mine+"]" {
		t.Fatalf("acl:report bob = %+v", rep)
	}

	s.mustBerth("acl:remove", mine, "bob")
	if out, code := bob("", "config:show", mine); code == 0 || !strings.Contains(out, "does not exist") {
		t.Fatalf("after acl:remove: %d %s", code, out)
	}
	s.mustBerth("acl:set-role", "bob", "admin")
	if out, code := bob("", "config:show", other); code != 0 {
		t.Fatalf("admin again: %d %s", code, out)
	}
}

// appPackagePlugin installs the repository's app-package plugin on s.
func (s *Server) installAppPackage(t testing.TB) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "plugins", "app-package"))
	if err != nil {
		t.Fatal(err)
	}
	contains(t, s.installPlugin(dir), "Plugin app-package 1.0.0 installed", "app-package: helper built")
}

// requireAnsible fails (never skips) when Ansible is missing.
func requireAnsible(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ansible-vault", "ansible-playbook"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required by the app package tests: run scripts/install-deps.sh (it installs Debian's ansible)", tool)
		}
	}
}

// vaultEncrypt encrypts plain with the real ansible-vault.
func vaultEncrypt(t testing.TB, plain, password string) string {
	t.Helper()
	dir := t.TempDir()
	file, pw := filepath.Join(dir, "secrets.yml"), filepath.Join(dir, "pw")
	os.WriteFile(file, []byte(plain), 0o600)
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	cmd := exec.Command("ansible-vault", "encrypt", "--vault-password-file", pw, file)
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+dir, "ANSIBLE_LOCAL_TEMP="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-vault encrypt: %v\n%s", err, out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "$ANSIBLE_VAULT;1.1;AES256") {
		t.Fatalf("ansible-vault wrote %q", data)
	}
	return string(data)
}

func TestAppPackage(t *testing.T) {
	t.Parallel()
	requireAnsible(t)
	s := startServer(t)
	s.installAppPackage(t)
	app := appName("pkg")
	s.mustBerth("apps:create", app)
	s.apps.Store(app, true)
	contains(t, s.mustBerth("help"), "vault")
	contains(t, s.mustBerth("help", "vault"), "vault:set-password <app>")
	contains(t, s.mustFail("vault:set-password", app), "give the password on stdin")
	if out, code := s.berthIn("correct horse\n", "vault:set-password", app); code != 0 {
		t.Fatalf("vault:set-password: %d %s", code, out)
	}

	outDir := t.TempDir()
	secret := "tok-" + appName("s")
	playbook := func(name string) string {
		return `- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: record what berth passed
      copy:
        dest: "{{ berth_config.OUT_DIR }}/` + name + `.txt"
        content: "{{ berth_app }} {{ berth_release }} {{ berth_image }} {{ berth_config.SECRET_TOKEN }} {{ berth_config.GREETING }} {{ berth_domains | join(',') }} {{ berth_port | default('-') }}\n"
`
	}
	repo := newRepo(t, map[string]string{
		"env.yml":                 "# plain config\nGREETING: hello from env.yml\nOUT_DIR: " + outDir + "\n",
		"vault/secrets.yml":       vaultEncrypt(t, "SECRET_TOKEN: "+secret+"\nDB_PASSWORD: 'p@ss word'\n", "correct horse"),
		"ansible/pre-deploy.yml":  playbook("pre-deploy"),
		"ansible/post-deploy.yml": playbook("post-deploy"),
	})
	out := s.mustPush(repo, app)
	contains(t, out, "App package: set GREETING, OUT_DIR from env.yml", "App package: set SECRET_TOKEN, DB_PASSWORD from vault/secrets.yml",
		"Running ansible/pre-deploy.yml", "Running ansible/post-deploy.yml")
	if strings.Contains(out, secret) {
		t.Fatalf("the secret appears in the push output:\n%s", out)
	}
	for k, want := range map[string]string{"GREETING": "hello from env.yml", "SECRET_TOKEN": secret, "DB_PASSWORD": "p@ss word"} {
		if got := strings.TrimSpace(s.mustBerth("config:get", app, k)); got != want {
			t.Fatalf("config %s = %q, want %q", k, got, want)
		}
	}
	// The release the containers run has them.
	if got := s.mustGet(host(app), "/env?k=SECRET_TOKEN"); got != secret {
		t.Fatalf("the app sees SECRET_TOKEN=%q", got)
	}
	for name, port := range map[string]string{"pre-deploy": "-", "post-deploy": "5000"} {
		data, err := os.ReadFile(filepath.Join(outDir, name+".txt"))
		if err != nil {
			t.Fatalf("the %s playbook did not run: %v", name, err)
		}
		want := fmt.Sprintf("%s v1 berth/%s:v1 %s hello from env.yml %s %s\n", app, app, secret, host(app), port)
		if string(data) != want {
			t.Fatalf("%s playbook wrote %q, want %q", name, data, want)
		}
	}
	// No secret in clear anywhere in the data dir (config is sealed in the
	// database; the playbooks' extra vars were written encrypted).
	if out, _ := exec.Command("grep", "-rl", secret, s.DataDir).CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("the secret is in clear in:\n%s", out)
	}

	// A wrong password fails the deploy before anything changes.
	s.berthIn("wrong\n", "vault:set-password", app)
	repo.write(map[string]string{"env.yml": "GREETING: changed\nOUT_DIR: " + outDir + "\n"})
	repo.commit("change greeting")
	out, code := s.push(repo, app)
	if code == 0 {
		t.Fatalf("push with a wrong vault password succeeded:\n%s", out)
	}
	contains(t, out, "vault/secrets.yml: wrong vault password for "+app+": no config was changed")
	if got := strings.TrimSpace(s.mustBerth("config:get", app, "GREETING")); got != "hello from env.yml" {
		t.Fatalf("GREETING = %q after the failed deploy", got)
	}
	contains(t, s.mustGet(host(app), "/"), "release=v1")

	// A malformed env.yml names the line and the reason.
	s.berthIn("correct horse\n", "vault:set-password", app)
	repo.write(map[string]string{"env.yml": "GREETING: fine\nNESTED:\n  a: b\n"})
	repo.commit("bad env.yml")
	out, code = s.push(repo, app)
	if code == 0 {
		t.Fatalf("push with a malformed env.yml succeeded:\n%s", out)
	}
	contains(t, out, "env.yml line 3: nested values are not supported: give NESTED a plain value")
	contains(t, s.mustBerth("vault:report", app), "Vault password:     set", "SECRET_TOKEN")

	// Plaintext in vault/ is refused.
	repo.write(map[string]string{"env.yml": "GREETING: fine\nOUT_DIR: " + outDir + "\n", "vault/plain.yml": "LEAK: yes\n"})
	repo.commit("plaintext secret")
	out, code = s.push(repo, app)
	if code == 0 || !strings.Contains(out, "vault/plain.yml is not encrypted") {
		t.Fatalf("plaintext in vault/: %d\n%s", code, out)
	}
}
