package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Made with Debian's ansible-vault 2.14 (ansible-core), password
// "secret-pass".
const (
	vault11 = `$ANSIBLE_VAULT;1.1;AES256
30346165313037316266643734353331663561353732316633666663343264383163323231303036
3231383463663761653233623263643665316131373638350a663463303465366531393134376363
37393230396262326433376433623735646465336435303336313733623065383138613866613363
3764653433306665610a393663613737643832396262626462626637633333323361353433663539
36383931373164623030663866313032356666613635333830616635653035343831636364393737
3966623231323365353965663864626236323833303730646138
`
	// ansible-vault encrypt --vault-id prod@pwfile
	vault12 = `$ANSIBLE_VAULT;1.2;AES256;prod
65393135346635623063313334376434393166353835393166366363646262393836643939643263
3265326436313939326438356530353465353230643030630a616464303934633836383265643831
35663637336363356565313337633262373533333334386236323535363664326633343963356636
3130313163323438620a666438303638613434666337646635653534323733386431306332396263
36643937326437633430356438333262383635303766363061653565623936363639336165613866
6638663262633332623930653832663566383365323761376465
`
	// an empty file
	vaultEmpty = `$ANSIBLE_VAULT;1.1;AES256
63346430623537373966323637643465323835666238656266303530393433383861623865636132
6235316163666663343633646634643862653135616537370a383836346534653361656532613830
35383739386662393663346134346231373531386536623262343565373939313830333861363138
3137633533393863620a663735613533323063386539363837626238376461303063313933636565
6161
`
	vaultPlain = "DB_PASSWORD: \"s3cr3t value\"\nAPI_TOKEN: abc123\n"
)

func TestDecryptAnsibleVaultVectors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"1.1":   {vault11, vaultPlain},
		"1.2":   {vault12, vaultPlain},
		"empty": {vaultEmpty, ""},
	} {
		got, err := decryptVault([]byte(tc.in), []byte("secret-pass"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

func TestDecryptWrongPasswordAndCorruption(t *testing.T) {
	if _, err := decryptVault([]byte(vault11), []byte("wrong")); !errors.Is(err, errWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	flipped := strings.Replace(vault11, "3966623231323365", "3966623231323366", 1)
	if _, err := decryptVault([]byte(flipped), []byte("secret-pass")); err == nil {
		t.Fatal("a modified ciphertext decrypted")
	}
	for _, bad := range []string{
		"$ANSIBLE_VAULT;1.0;AES\nabcd\n",
		"$ANSIBLE_VAULT;1.1;AES128\n3030\n",
		"$ANSIBLE_VAULT;1.1;AES256\nnot-hex\n",
		"$ANSIBLE_VAULT;1.1;AES256\n",
		"plain text",
	} {
		if _, err := decryptVault([]byte(bad), []byte("x")); err == nil {
			t.Errorf("decrypted %q", bad)
		}
	}
	if !isVault([]byte(vault12)) || isVault([]byte(vaultPlain)) {
		t.Fatal("isVault")
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	for _, plain := range []string{"", "a", "exactly sixteen!", strings.Repeat("x", 1000)} {
		sealed, err := encryptVault([]byte(plain), []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(sealed)), "\n")[1:] {
			if len(l) > 80 {
				t.Fatalf("line longer than 80: %q", l)
			}
		}
		got, err := decryptVault(sealed, []byte("pw"))
		if err != nil || string(got) != plain {
			t.Fatalf("round trip of %q: %q, %v", plain, got, err)
		}
	}
}

// TestEncryptReadByAnsibleVault checks the extra-vars files the helper
// writes open with the real ansible-vault, when it is installed (the e2e
// app-package test requires it).
func TestEncryptReadByAnsibleVault(t *testing.T) {
	bin, err := exec.LookPath("ansible-vault")
	if err != nil {
		t.Skip("ansible-vault is not installed (scripts/install-deps.sh installs it; the e2e test requires it)")
	}
	dir := t.TempDir()
	sealed, _ := encryptVault([]byte("hello: world\n"), []byte("pw"))
	os.WriteFile(filepath.Join(dir, "v.yml"), sealed, 0o600)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("pw\n"), 0o600)
	cmd := exec.Command(bin, "view", "--vault-password-file", filepath.Join(dir, "pw"), filepath.Join(dir, "v.yml"))
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+dir, "ANSIBLE_LOCAL_TEMP="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("hello: world")) {
		t.Fatalf("ansible-vault view: %v\n%s", err, out)
	}
}

func TestPBKDF2Vectors(t *testing.T) {
	// RFC 7914 section 11 and the usual PBKDF2-HMAC-SHA256 vectors.
	for _, tc := range []struct {
		p, s string
		c, n int
		want string
	}{
		{"password", "salt", 1, 32, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"},
		{"password", "salt", 2, 32, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"},
		{"password", "salt", 4096, 32, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"},
		{"passwd", "salt", 1, 64, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"},
	} {
		got := hex.EncodeToString(pbkdf2(sha256.New, []byte(tc.p), []byte(tc.s), tc.c, tc.n))
		if got != tc.want {
			t.Errorf("pbkdf2(%q, %q, %d) = %s, want %s", tc.p, tc.s, tc.c, got, tc.want)
		}
	}
}
