package plugins

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstallFromDirectory(t *testing.T) {
	m, b := newTestManager(t, 0)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"plugin.toml":          "[plugin]\nname = \"hello\"\nversion = \"0.3.0\"\ndescription = \"says hello\"\n",
		"post-deploy":          "#!/bin/sh\necho hello $1\n",
		"subcommands/greet":    "#!/bin/sh\necho greet\n",
		".git/HEAD":            "ref: refs/heads/main\n",
		"lib/helper.sh":        "echo\n",
		"subcommands/.ignored": "x",
	})
	os.Symlink("lib/helper.sh", filepath.Join(src, "link"))
	p, err := m.Install(context.Background(), InstallOptions{Source: src}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "hello" || !p.Enabled || p.Meta.Version != "0.3.0" || p.Source.Kind != SourceDir {
		t.Fatalf("plugin = %+v", p)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, ".git")); err == nil {
		t.Fatal(".git was copied")
	}
	out, err := b.Fire(context.Background(), "post-deploy", "shop")
	if err != nil || out != "hello shop\n" {
		t.Fatalf("trigger output %q, %v", out, err)
	}
	cmds, err := m.Commands(context.Background())
	if err != nil || len(cmds) != 1 || cmds[0].Name != "hello:greet" {
		t.Fatalf("commands %+v, %v", cmds, err)
	}
	if _, err := m.Install(context.Background(), InstallOptions{Source: src}, io.Discard); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Fatalf("second install: %v", err)
	}
	// Update re-copies the source.
	writeFiles(t, src, map[string]string{"post-deploy": "#!/bin/sh\necho updated\n"})
	if _, err := m.Update(context.Background(), "hello", "", io.Discard); err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Fire(context.Background(), "post-deploy", "shop"); out != "updated\n" {
		t.Fatalf("after update: %q", out)
	}
	if err := m.Uninstall("hello"); err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Fire(context.Background(), "post-deploy", "shop"); out != "" {
		t.Fatalf("after uninstall: %q", out)
	}
}

func TestInstallRefusesEscapingSymlink(t *testing.T) {
	m, _ := newTestManager(t, 0)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"post-deploy": "#!/bin/sh\n"})
	os.Symlink("../../etc/passwd", filepath.Join(src, "evil"))
	if _, err := m.Install(context.Background(), InstallOptions{Source: src, Name: "evil"}, io.Discard); err == nil || !strings.Contains(err.Error(), "outside the plugin") {
		t.Fatalf("err = %v", err)
	}
}

func TestInstallFromGitAtCommittish(t *testing.T) {
	m, b := newTestManager(t, 0)
	repo := t.TempDir()
	gitRun := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"post-deploy": "#!/bin/sh\necho v1\n"})
	gitRun("add", "-A")
	gitRun("commit", "-q", "-m", "v1")
	gitRun("tag", "v1")
	writeFiles(t, repo, map[string]string{"post-deploy": "#!/bin/sh\necho v2\n"})
	gitRun("commit", "-q", "-am", "v2")
	url := "file://" + repo
	p, err := m.Install(context.Background(), InstallOptions{Source: url, Name: "gitty", Committish: "v1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.Source.Kind != SourceGit || p.Source.Commit == "" {
		t.Fatalf("source %+v", p.Source)
	}
	if out, _ := b.Fire(context.Background(), "post-deploy"); out != "v1\n" {
		t.Fatalf("output %q", out)
	}
	if _, err := m.Update(context.Background(), "gitty", "", io.Discard); err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Fire(context.Background(), "post-deploy"); out != "v2\n" {
		t.Fatalf("after update %q", out)
	}
	for _, bad := range []string{"--upload-pack=x", "a..b", "-x"} {
		if _, err := m.Install(context.Background(), InstallOptions{Source: url, Name: "bad", Committish: bad}, io.Discard); err == nil {
			t.Errorf("committish %q accepted", bad)
		}
	}
}

func makeTarball(t *testing.T, entries []tar.Header, bodies map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := bodies[h.Name]
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	tw.Close()
	gz.Close()
	p := filepath.Join(t.TempDir(), "plugin.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallFromTarball(t *testing.T) {
	m, b := newTestManager(t, 0)
	p := makeTarball(t, []tar.Header{
		{Name: "tarred-1.0/", Typeflag: tar.TypeDir},
		{Name: "tarred-1.0/post-deploy", Typeflag: tar.TypeReg},
		{Name: "tarred-1.0/alias", Typeflag: tar.TypeSymlink, Linkname: "post-deploy"},
	}, map[string]string{"tarred-1.0/post-deploy": "#!/bin/sh\necho tarred\n"})
	pl, err := m.Install(context.Background(), InstallOptions{Source: "file://" + p, Name: "tarred"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Fire(context.Background(), "post-deploy"); out != "tarred\n" {
		t.Fatalf("output %q (plugin %+v)", out, pl)
	}
}

func TestInstallRefusesEscapingTarballs(t *testing.T) {
	cases := map[string][]tar.Header{
		"climbs out":              {{Name: "../evil", Typeflag: tar.TypeReg}},
		"absolute path":           {{Name: "/etc/evil", Typeflag: tar.TypeReg}},
		"symlink":                 {{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "../../etc/passwd"}},
		"symlink to the absolute": {{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}},
		"hard link":               {{Name: "x", Typeflag: tar.TypeLink, Linkname: "../y"}},
		"not a regular":           {{Name: "dev", Typeflag: tar.TypeChar}},
	}
	for want, entries := range cases {
		m, _ := newTestManager(t, 0)
		p := makeTarball(t, entries, nil)
		_, err := m.Install(context.Background(), InstallOptions{Source: "file://" + p, Name: "evil"}, io.Discard)
		if err == nil {
			t.Errorf("%s: installed", want)
			continue
		}
		if _, serr := os.Stat(filepath.Join(m.AvailableDir(), "evil")); serr == nil {
			t.Errorf("%s: plugin dir exists after refusal", want)
		}
		if _, serr := os.Stat("/etc/evil"); serr == nil {
			t.Fatalf("%s: wrote outside", want)
		}
	}
}

func TestClassifyAndName(t *testing.T) {
	for src, want := range map[string]string{
		"/opt/plugins/hello":                          SourceDir,
		"https://github.com/dokku/dokku-postgres.git": SourceGit,
		"git@github.com:dokku/dokku-redis.git":        SourceGit,
		"file:///srv/repo":                            SourceGit,
		"https://example.com/releases/x-1.0.tar.gz":   SourceTarball,
		"file:///srv/x.tgz":                           SourceTarball,
	} {
		got, err := ClassifySource(src)
		if err != nil || got != want {
			t.Errorf("ClassifySource(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
	for _, bad := range []string{"relative/dir", "-oProxyCommand=x", "ftp://x/y.git", "ext::sh -c touch% /tmp/x", ""} {
		if _, err := ClassifySource(bad); err == nil {
			t.Errorf("ClassifySource(%q) accepted", bad)
		}
	}
	for src, want := range map[string]string{
		"https://github.com/dokku/dokku-postgres.git": "postgres",
		"git@github.com:me/berth-acme.git":            "berth-acme",
		"/opt/plugins/hello/":                         "hello",
		"https://x.org/dl/tool-1.0.tar.gz":            "tool-1.0",
	} {
		if got := NameFromSource(src); got != want {
			t.Errorf("NameFromSource(%q) = %q, want %q", src, got, want)
		}
	}
}
