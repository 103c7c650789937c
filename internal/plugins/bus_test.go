package plugins

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestManager returns a manager on a temp data dir and a bus running it.
func newTestManager(t *testing.T, timeout time.Duration) (*Manager, *Bus) {
	t.Helper()
	m, err := NewManager(Options{DataDir: t.TempDir(), Executable: "/bin/true", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBus()
	b.SetPlugins(m)
	return m, b
}

// addPlugin writes an enabled plugin with the given files (name → content;
// a name ending in "!" is written without the executable bit).
func addPlugin(t *testing.T, m *Manager, name string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(m.AvailableDir(), name)
	for f, content := range files {
		mode := os.FileMode(0o755)
		if strings.HasSuffix(f, "!") {
			f, mode = strings.TrimSuffix(f, "!"), 0o644
		}
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Enable(name); err != nil {
		t.Fatal(err)
	}
}

func TestFireOrderAndConcatenation(t *testing.T) {
	m, b := newTestManager(t, 0)
	b.Register("post-deploy", "core", func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
		io.WriteString(stdout, "core:"+strings.Join(args, ",")+"\n")
		return nil
	})
	addPlugin(t, m, "zeta", map[string]string{"post-deploy": "#!/bin/sh\necho \"zeta:$1,$2\"\n"})
	addPlugin(t, m, "alpha", map[string]string{"post-deploy": "#!/bin/sh\necho \"alpha:$*\"\n"})
	addPlugin(t, m, "middle", map[string]string{"other-trigger": "#!/bin/sh\necho never\n"})
	out, err := b.Fire(context.Background(), "post-deploy", "shop", "5000")
	if err != nil {
		t.Fatal(err)
	}
	if want := "core:shop,5000\nalpha:shop 5000\nzeta:shop,5000\n"; out != want {
		t.Fatalf("output = %q, want %q", out, want)
	}
}

func TestFireStdinGoesToEveryHandler(t *testing.T) {
	m, b := newTestManager(t, 0)
	addPlugin(t, m, "a", map[string]string{"receive": "#!/bin/sh\nprintf 'a:'; cat\n"})
	addPlugin(t, m, "b", map[string]string{"receive": "#!/bin/sh\nprintf 'b:'; cat\n"})
	out, err := b.FireWithInput(context.Background(), "receive", strings.NewReader("in\n"))
	if err != nil {
		t.Fatal(err)
	}
	if out != "a:in\nb:in\n" {
		t.Fatalf("output = %q", out)
	}
	// Without input, plugins read an empty stdin (and do not hang).
	out, err = b.Fire(context.Background(), "receive")
	if err != nil || out != "a:b:" {
		t.Fatalf("output = %q, %v", out, err)
	}
}

func TestFireFirstFailureStops(t *testing.T) {
	m, b := newTestManager(t, 0)
	marker := filepath.Join(t.TempDir(), "ran")
	addPlugin(t, m, "a-ok", map[string]string{"pre-deploy": "#!/bin/sh\necho ok\n"})
	addPlugin(t, m, "b-fail", map[string]string{"pre-deploy": "#!/bin/sh\necho partial\necho 'bad things' >&2\nexit 3\n"})
	addPlugin(t, m, "c-after", map[string]string{"pre-deploy": "#!/bin/sh\ntouch " + marker + "\n"})
	var stderr bytes.Buffer
	ctx := WithOutput(context.Background(), &stderr)
	out, err := b.Fire(ctx, "pre-deploy", "shop", "berth/shop:v2")
	var te *TriggerError
	if !errors.As(err, &te) || te.Plugin != "b-fail" || te.Trigger != "pre-deploy" || te.Code != 3 {
		t.Fatalf("err = %#v", err)
	}
	if want := "trigger pre-deploy: plugin b-fail exited with code 3"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if out != "ok\npartial\n" {
		t.Fatalf("output = %q", out)
	}
	if stderr.String() != "bad things\n" {
		t.Fatalf("stderr = %q", stderr.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the plugin after the failing one ran")
	}
}

func TestFireInProcessFailureStopsPlugins(t *testing.T) {
	m, b := newTestManager(t, 0)
	marker := filepath.Join(t.TempDir(), "ran")
	b.Register("user-auth", "acl", func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
		return errors.New("denied")
	})
	addPlugin(t, m, "a", map[string]string{"user-auth": "#!/bin/sh\ntouch " + marker + "\n"})
	if _, err := b.Fire(context.Background(), "user-auth", "git", "alice", "apps:list"); err == nil || err.Error() != "trigger user-auth (acl): denied" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the plugin ran after the in-process handler failed")
	}
}

func TestFireTimeoutKillsPlugin(t *testing.T) {
	m, b := newTestManager(t, 300*time.Millisecond)
	// The child sleeps too: the whole process group must go.
	addPlugin(t, m, "hang", map[string]string{"post-deploy": "#!/bin/sh\nsleep 30 &\nsleep 30\n"})
	start := time.Now()
	_, err := b.Fire(context.Background(), "post-deploy", "shop")
	var te *TriggerError
	if !errors.As(err, &te) || te.TimedOut == 0 || te.Plugin != "hang" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "plugin hang did not finish within 300ms and was killed") {
		t.Fatalf("message %q", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the hung plugin held the caller for %s", took)
	}
}

func TestFireTimeoutFromSettings(t *testing.T) {
	m, _ := newTestManager(t, 0)
	if got := m.Timeout(context.Background(), "post-deploy"); got != DefaultTimeout {
		t.Fatalf("default timeout %s", got)
	}
	m.opts.Settings = fakeSettings{TimeoutSetting: "60", TimeoutSetting + ":post-deploy": "7"}
	if got := m.Timeout(context.Background(), "post-deploy"); got != 7*time.Second {
		t.Fatalf("post-deploy timeout %s", got)
	}
	if got := m.Timeout(context.Background(), "pre-deploy"); got != time.Minute {
		t.Fatalf("pre-deploy timeout %s", got)
	}
}

type fakeSettings map[string]string

func (f fakeSettings) Setting(ctx context.Context, app, key string) (string, bool, error) {
	v, ok := f[key]
	return v, ok, nil
}

func TestFireSkipsNonExecutable(t *testing.T) {
	m, b := newTestManager(t, 0)
	addPlugin(t, m, "a", map[string]string{"post-deploy!": "#!/bin/sh\necho never\n"})
	addPlugin(t, m, "b", map[string]string{"post-deploy": "#!/bin/sh\necho b\n"})
	var stderr bytes.Buffer
	out, err := b.Fire(WithOutput(context.Background(), &stderr), "post-deploy", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if out != "b\n" {
		t.Fatalf("output = %q", out)
	}
	if !strings.Contains(stderr.String(), " !     plugin a: post-deploy is not executable, skipping it") {
		t.Fatalf("no warning: %q", stderr.String())
	}
}

func TestFireDisabledPluginDoesNotRun(t *testing.T) {
	m, b := newTestManager(t, 0)
	addPlugin(t, m, "a", map[string]string{"post-deploy": "#!/bin/sh\necho a\n"})
	if err := m.Disable("a"); err != nil {
		t.Fatal(err)
	}
	out, err := b.Fire(context.Background(), "post-deploy", "shop")
	if err != nil || out != "" {
		t.Fatalf("output %q, %v", out, err)
	}
}

func TestFireRefusesBadTriggerNames(t *testing.T) {
	_, b := newTestManager(t, 0)
	for _, name := range []string{"../x", "", "a/b", ".hidden", "UP"} {
		if _, err := b.Fire(context.Background(), name); err == nil {
			t.Errorf("trigger %q accepted", name)
		}
	}
}

func TestPluginEnvironment(t *testing.T) {
	m, b := newTestManager(t, 0)
	addPlugin(t, m, "env", map[string]string{"show-env": "#!/bin/sh\nfor v in DOKKU_ROOT DOKKU_LIB_ROOT PLUGIN_PATH PLUGIN_AVAILABLE_PATH PLUGIN_ENABLED_PATH PLUGIN_CORE_AVAILABLE_PATH BERTH_DATA_DIR BERTH_PLUGIN_DATA SSH_NAME; do eval \"echo $v=\\$$v\"; done\ncommand -v berth\n"})
	ctx := WithCaller(context.Background(), "git", "alice")
	out, err := b.Fire(ctx, "show-env")
	if err != nil {
		t.Fatal(err)
	}
	data := m.opts.DataDir
	for _, want := range []string{
		"DOKKU_ROOT=" + data, "DOKKU_LIB_ROOT=" + data, "PLUGIN_PATH=" + data + "/plugins",
		"PLUGIN_AVAILABLE_PATH=" + data + "/plugins/available", "PLUGIN_ENABLED_PATH=" + data + "/plugins/enabled",
		"PLUGIN_CORE_AVAILABLE_PATH=" + data + "/plugins/core-available", "BERTH_DATA_DIR=" + data,
		"BERTH_PLUGIN_DATA=" + data + "/plugins/data/env", "SSH_NAME=alice", data + "/plugins/bin/berth",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestParseMeta(t *testing.T) {
	m, err := ParseMeta([]byte(`
[plugin]
description = "Deploys app packages"
version = "1.2.0"
name = "app-package"

[plugin.commands.report]
usage = "<app>"
help = "Show things"
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "app-package" || m.Version != "1.2.0" || m.Description != "Deploys app packages" || m.Commands["report"].Usage != "<app>" {
		t.Fatalf("meta = %+v", m)
	}
	m, err = ParseMeta([]byte("name = \"x\"\nversion = \"0.1\"\ndescription = \"top-level keys\"\n"))
	if err != nil || m.Name != "x" || m.Version != "0.1" {
		t.Fatalf("meta = %+v, %v", m, err)
	}
	for in, want := range map[string]string{
		"name = \"Bad_Name\"\n":              "invalid plugin name",
		"[plugin]\nversion = 1.2.3\n":        "plugin.toml line 2",
		"[commands.\"../x\"]\nhelp = \"\"\n": "invalid command name",
	} {
		if _, err := ParseMeta([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMeta(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestParseCommandsHelp(t *testing.T) {
	out := "    vault:set-password <app>, Set the vault password of an app\n" +
		"    vault:help, Vault plugin\n" +
		"not a command line\n" +
		"    vault:unset-password <app>, Remove it\n"
	cmds := parseCommandsHelp("app-package", "/p/commands", out)
	if len(cmds) != 2 || cmds[0].Name != "vault:set-password" || cmds[0].Usage != "<app>" || cmds[0].Help != "Set the vault password of an app" || !cmds[0].Script {
		t.Fatalf("commands = %+v", cmds)
	}
}
