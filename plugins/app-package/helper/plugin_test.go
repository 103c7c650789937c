package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testPlugin(t *testing.T) *plugin {
	t.Helper()
	return &plugin{data: t.TempDir(), dir: t.TempDir(), stdout: io.Discard, stderr: io.Discard}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlaybooksNeedAnsible(t *testing.T) {
	p := testPlugin(t)
	src := t.TempDir()
	writeTree(t, src, map[string]string{"ansible/post-deploy.yml": "- hosts: localhost\n"})
	t.Setenv("PATH", t.TempDir())
	err := p.keepAnsible("shop", src, "0123456789abcdef0123456789abcdef01234567")
	if err == nil || !strings.Contains(err.Error(), "ansible/post-deploy.yml needs ansible-playbook, which is not installed on the server: install it there with 'apt-get install ansible'") {
		t.Fatalf("err = %v", err)
	}
	// Without playbooks, nothing Ansible-related is needed.
	src2 := t.TempDir()
	writeTree(t, src2, map[string]string{"ansible/README": "notes\n"})
	if err := p.keepAnsible("shop", src2, ""); err != nil {
		t.Fatal(err)
	}
	if err := p.keepAnsible("shop", t.TempDir(), ""); err != nil {
		t.Fatal(err)
	}
}

func TestReadConfigAllOrNothing(t *testing.T) {
	p := testPlugin(t)
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"env.yml":       "A: 1\n",
		"vault/one.yml": vault11,
		"vault/.hidden": "ignored",
	})
	// No password: a clear error.
	if _, _, err := p.readConfig("shop", src); err == nil || !strings.Contains(err.Error(), "shop has no vault password: set it with 'berth vault:set-password shop'") {
		t.Fatalf("err = %v", err)
	}
	writeFileAtomic(filepath.Join(p.appDir("shop"), "vault-password"), []byte("wrong"), 0o600)
	if _, _, err := p.readConfig("shop", src); err == nil || !strings.Contains(err.Error(), "vault/one.yml: wrong vault password for shop: no config was changed") {
		t.Fatalf("err = %v", err)
	}
	writeFileAtomic(filepath.Join(p.appDir("shop"), "vault-password"), []byte("secret-pass"), 0o600)
	pairs, sources, err := p.readConfig("shop", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 3 || sources["API_TOKEN"] != "vault/one.yml" || sources["A"] != "env.yml" {
		t.Fatalf("pairs %+v sources %v", pairs, sources)
	}
	// A key in two files is refused.
	writeTree(t, src, map[string]string{"env.yml": "API_TOKEN: x\n"})
	if _, _, err := p.readConfig("shop", src); err == nil || !strings.Contains(err.Error(), "API_TOKEN is already set in env.yml") {
		t.Fatalf("err = %v", err)
	}
	// Plaintext in vault/ is refused.
	writeTree(t, src, map[string]string{"env.yml": "", "vault/two.yml": "LEAK: 1\n"})
	if _, _, err := p.readConfig("shop", src); err == nil || !strings.Contains(err.Error(), "vault/two.yml is not encrypted") {
		t.Fatalf("err = %v", err)
	}
}

func TestReleaseOf(t *testing.T) {
	if n, err := releaseOf("shop", "berth/shop:v12"); err != nil || n != 12 {
		t.Fatalf("%d %v", n, err)
	}
	for _, bad := range []string{"berth/other:v1", "berth/shop:latest", "berth/shop:v0", "shop"} {
		if _, err := releaseOf("shop", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
