package certs

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func readFile(t *testing.T, p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// issue makes a self-signed pair for hosts valid in [nb, na].
func issue(t *testing.T, hosts []string, nb, na time.Time) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts, NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func TestParsePair(t *testing.T) {
	now := time.Now()
	crt, key := issue(t, []string{"a.example.com", "*.b.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	crt2, key2 := issue(t, []string{"c.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	old, oldKey := issue(t, []string{"a.example.com"}, now.Add(-2*time.Hour), now.Add(-time.Hour))

	p, err := ParsePair(crt, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Covers("a.example.com") || !p.Covers("x.b.example.com") || p.Covers("c.example.com") {
		t.Fatal("Covers")
	}
	if got := strings.Join(p.Names(), " "); got != "a.example.com *.b.example.com" {
		t.Fatalf("Names: %q", got)
	}
	for name, c := range map[string]struct {
		crt, key []byte
		want     string
	}{
		"mismatch":     {crt, key2, "the private key does not match the certificate"},
		"expired":      {old, oldKey, "the certificate expired on"},
		"empty cert":   {nil, key, "the certificate is empty"},
		"empty key":    {crt, nil, "the private key is empty"},
		"not pem":      {[]byte("junk"), key, "the certificate is not PEM"},
		"key not pem":  {crt2, []byte("junk"), "the private key is not PEM"},
		"swapped":      {key, crt, "holds a private key"},
		"garbage cert": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), key, "cannot be parsed"},
	} {
		_, err := ParsePair(c.crt, c.key, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestReadBundle(t *testing.T) {
	now := time.Now()
	crt, key := issue(t, []string{"a.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))

	// PEM: certificate and key in one stream.
	c, k, err := ReadBundle(bytes.NewReader(append(append([]byte{}, crt...), key...)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePair(c, k, now); err != nil {
		t.Fatal(err)
	}
	// A tar with server.crt and server.key (in a folder, as Dokku allows).
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range map[string][]byte{"certs/server.crt": crt, "certs/server.key": key, "README": []byte("x")} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	c, k, err = ReadBundle(&b)
	if err != nil || !bytes.Equal(c, crt) || !bytes.Equal(k, key) {
		t.Fatalf("tar: %v", err)
	}
	for name, in := range map[string]string{
		"empty":      "",
		"cert only":  string(crt),
		"two keys":   string(crt) + string(key) + string(key),
		"plain text": "hello",
	} {
		if _, _, err := ReadBundle(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSelfSigned(t *testing.T) {
	now := time.Now()
	crt, key, err := SelfSigned([]string{"a.example.com", "*.w.example.com"}, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePair(crt, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Covers("a.example.com") || !p.Covers("x.w.example.com") || p.Leaf.CheckSignature(p.Leaf.SignatureAlgorithm, p.Leaf.RawTBSCertificate, p.Leaf.Signature) != nil {
		t.Fatal("self-signed certificate")
	}
	if _, _, err := SelfSigned(nil, now); err == nil {
		t.Fatal("no hosts accepted")
	}
}

func TestPolicyHeader(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{HSTS: false, MaxAge: 10}, ""},
		{Policy{HSTS: true, MaxAge: 15724800}, "max-age=15724800"},
		{Policy{HSTS: true, MaxAge: 60, IncludeSubdomains: true, Preload: true}, "max-age=60; includeSubDomains; preload"},
	} {
		if got := c.p.Header(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
}

func TestNormalizeServer(t *testing.T) {
	for in, want := range map[string]string{
		"":                          LetsEncryptProduction,
		"staging":                   LetsEncryptStaging,
		"https://127.0.0.1:14000/d": "https://127.0.0.1:14000/d",
	} {
		if got, err := NormalizeServer(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"http://x/dir", "ftp://x", "https://", "not a url", "https://u:p@x/dir"} {
		if _, err := NormalizeServer(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
