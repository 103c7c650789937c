package commands

import (
	"crypto/ed25519"
	"crypto/rand"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseDomains(t *testing.T) {
	got, err := parseDomains([]string{"Example.COM.", "www.example.com", "example.com", "*.apps.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com", "www.example.com", "*.apps.example.com"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("parseDomains = %q, want %q (normalised, deduplicated, in order)", got, want)
	}
	if _, err := parseDomains([]string{"ok.example.com", "10.0.0.1"}); err == nil {
		t.Fatal("parseDomains accepted an IP address")
	}
	if got, err := parseDomains(nil); err != nil || len(got) != 0 {
		t.Fatalf("parseDomains(nil) = %q, %v", got, err)
	}
}

func testKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestParseKey(t *testing.T) {
	k, line := testKey(t)
	_, other := testKey(t)

	for _, in := range []string{
		line,
		line + " alice@laptop\n",
		"# my key\n\n  " + line + "  \n\n",
	} {
		got, canon, err := ParseKey([]byte(in))
		if err != nil {
			t.Fatalf("ParseKey(%q) = %v", in, err)
		}
		if canon != line {
			t.Errorf("ParseKey(%q) canonical line = %q, want %q (no comment)", in, canon, line)
		}
		if ssh.FingerprintSHA256(got) != ssh.FingerprintSHA256(k) {
			t.Errorf("ParseKey(%q) returned another key", in)
		}
	}

	for _, tc := range []struct{ in, want string }{
		{"", "no key given"},
		{"# only a comment\n\n", "no key given"},
		{line + "\n" + other + "\n", "more than one key"},
		{"ssh-ed25519 AAAAnotbase64!!", "not a valid SSH public key"},
		{"hello world", "not a valid SSH public key"},
		{`command="rm -rf /" ` + line, "options"},
		{`no-pty,from="10.0.0.1" ` + line, "options"},
	} {
		_, _, err := ParseKey([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKey(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":             `''`,
		"plain":        `'plain'`,
		"with space":   `'with space'`,
		"it's":         `'it'\''s'`,
		"$HOME `x` \\": `'$HOME ` + "`x`" + ` \'`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	// A POSIX shell reads every quoted value back unchanged.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to check the quoting against")
	}
	for _, v := range []string{"", "a b", "it's", `"double"`, "$HOME", "`id`", "back\\slash", "new\nline", "'''", "*?[x]"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(v)).Output()
		if err != nil {
			t.Fatalf("sh with %q: %v", v, err)
		}
		if string(out) != v {
			t.Errorf("sh read shellQuote(%q) back as %q", v, out)
		}
	}
}
