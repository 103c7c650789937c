package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLSManualCertificates: manual and self-signed certificates, SNI
// isolation, HTTP/2, X-Forwarded-Proto, redirect and HSTS switches, and bad
// certificates refused without touching other apps.
func TestTLSManualCertificates(t *testing.T) {
	s := startHTTPSServer(t)
	ca := newTestCA(t, "e2e test CA")
	app, other := appName("tlsa"), appName("tlsb")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("apps:create", other)
	s.apps.Store(other, true)

	// Without a certificate: no HTTPS for anyone, HTTP is served as is.
	if _, err := s.handshake(host(app), nil, false); err == nil {
		t.Fatal("handshake for an app without a certificate succeeded")
	}
	if code, _ := s.get(host(app), "/"); code != 200 {
		t.Fatalf("plain HTTP before a certificate: %d", code)
	}

	// certs:add with files (absolute paths on the local CLI).
	dir := t.TempDir()
	crt, key := ca.issue(t, []string{host(app)}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	os.WriteFile(filepath.Join(dir, "server.crt"), crt, 0o600)
	os.WriteFile(filepath.Join(dir, "server.key"), key, 0o600)
	out := s.mustBerth("certs:add", app, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if !strings.Contains(out, "-----> Added a certificate to "+app) {
		t.Fatalf("certs:add output: %s", out)
	}

	// A valid chain for the app's host, over HTTP/2, with X-Forwarded-Proto.
	resp, body, err := s.httpsGet(ca.pool(), host(app), "/headers")
	if err != nil {
		t.Fatalf("HTTPS GET: %v", err)
	}
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("HTTPS GET: %d %s", resp.StatusCode, resp.Proto)
	}
	if !strings.Contains(body, "proto=https") || !strings.Contains(body, "host="+host(app)) {
		t.Fatalf("upstream saw: %s", body)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=15724800" {
		t.Fatalf("default HSTS header: %q", got)
	}

	// Unknown names and names of apps without a certificate never get this
	// app's certificate.
	for _, sni := range []string{"unknown.example.org", host(other), ""} {
		if certs, err := s.handshake(sni, nil, false); err == nil {
			t.Fatalf("handshake for %q succeeded with %v", sni, certs[0].DNSNames)
		}
	}

	// Plain HTTP redirects to HTTPS, keeping path and query; POST gets 308.
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/a/b?c=d", nil)
	req.Host = host(app)
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, httpsPort, _ := strings.Cut(s.HTTPSAddr, ":")
	want := "https://" + host(app) + ":" + httpsPort + "/a/b?c=d"
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	req, _ = http.NewRequest("POST", "http://"+s.HTTPAddr+"/p", strings.NewReader("x"))
	req.Host = host(app)
	if resp, err = noFollow.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("POST redirect: %d", resp.StatusCode)
	}
	// The other app (no certificate) is not redirected.
	if code, _ := s.get(host(other), "/"); code != http.StatusBadGateway {
		t.Fatalf("other app over HTTP: %d", code)
	}

	// The switches.
	s.mustBerth("certs:set", app, "redirect", "false")
	if code, _ := s.get(host(app), "/"); code != 200 {
		t.Fatalf("with redirect false: %d", code)
	}
	s.mustBerth("certs:set", app, "hsts-max-age", "60")
	s.mustBerth("certs:set", app, "hsts-include-subdomains", "true")
	s.mustBerth("certs:set", app, "hsts-preload", "true")
	resp, _, err = s.httpsGet(ca.pool(), host(app), "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=60; includeSubDomains; preload" {
		t.Fatalf("HSTS header: %q", got)
	}
	s.mustBerth("certs:set", app, "hsts", "false")
	resp, _, _ = s.httpsGet(ca.pool(), host(app), "/")
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Fatalf("HSTS after hsts false: %q", got)
	}
	if out, code := s.berth("certs:set", app, "redirect", "maybe"); code == 0 || !strings.Contains(out, "use true or false") {
		t.Fatalf("bad certs:set value: %d %s", code, out)
	}
	s.mustBerth("certs:set", app, "redirect")

	// Bad certificates are refused with one clear error, and change nothing.
	otherCrt, _ := ca.issue(t, []string{host(app)}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	expired, expiredKey := ca.issue(t, []string{host(other)}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	for name, in := range map[string]struct{ crt, key []byte }{
		"does not match": {otherCrt, key},
		"expired":        {expired, expiredKey},
		"not PEM":        {[]byte("hello"), key},
	} {
		stdin := string(in.crt) + string(in.key)
		out, errOut, code := s.RunSplit(stdin, "certs:add", other)
		if code == 0 || !strings.HasPrefix(errOut, " !     certificate refused: ") || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("%s certificate: exit %d, stderr %q (out %q)", name, code, errOut, out)
		}
	}
	if _, err := s.handshake(host(other), nil, false); err == nil {
		t.Fatal("a refused certificate is served")
	}
	if _, _, err := s.httpsGet(ca.pool(), host(app), "/"); err != nil {
		t.Fatalf("the first app stopped serving HTTPS after another app's bad certificate: %v", err)
	}

	// certs:add with a tar on stdin over SSH, as Dokku.
	ocrt, okey := ca.issue(t, []string{host(other)}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, b := range map[string][]byte{"server.crt": ocrt, "server.key": okey} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	if out, code := s.ssh(tb.String(), "certs:add", other); code != 0 {
		t.Fatalf("certs:add from a tar over SSH: %d %s", code, out)
	}
	chain, err := s.handshake(host(other), ca.pool(), true)
	if err != nil || chain[0].DNSNames[0] != host(other) {
		t.Fatalf("other app's certificate: %v %v", err, chain)
	}
	chain, err = s.handshake(host(app), ca.pool(), true)
	if err != nil || chain[0].DNSNames[0] != host(app) {
		t.Fatalf("the first app's certificate after the second's was added: %v", err)
	}

	// certs:report.
	var rep struct {
		App         string   `json:"app"`
		Enabled     bool     `json:"enabled"`
		Source      string   `json:"source"`
		Hostnames   []string `json:"hostnames"`
		SecureHosts []string `json:"secure-hosts"`
		ExpiresAt   string   `json:"expires-at"`
		Redirect    bool     `json:"redirect"`
		HSTS        bool     `json:"hsts"`
	}
	s.jsonOut(&rep, "certs:report", app, "--format", "json")
	if rep.App != app || !rep.Enabled || rep.Source != "manual" || rep.Hostnames[0] != host(app) || len(rep.SecureHosts) != 1 || rep.ExpiresAt == "" || !rep.Redirect || rep.HSTS {
		t.Fatalf("certs:report: %+v", rep)
	}

	// The URLs after a deploy are https:// once the app has a certificate.
	out = s.mustBerth("config:set", app, "MSG=hello")
	if !strings.Contains(out, "https://"+host(app)+":"+httpsPort) {
		t.Fatalf("deploy URLs: %s", out)
	}

	// certs:generate: a self-signed certificate for the app's hosts.
	s.mustBerth("certs:remove", other)
	out = s.mustBerth("certs:generate", other)
	if !strings.Contains(out, "Generated a self-signed certificate for "+other) {
		t.Fatalf("certs:generate: %s", out)
	}
	chain, err = s.handshake(host(other), nil, false)
	if err != nil || chain[0].Subject.Organization[0] != "berth self-signed" || chain[0].DNSNames[0] != host(other) {
		t.Fatalf("self-signed certificate: %v %+v", err, chain)
	}
	var reports []map[string]any
	s.jsonOut(&reports, "certs:report", "--format", "json")
	if len(reports) != 2 {
		t.Fatalf("certs:report of every app: %v", reports)
	}
	b, _ := json.Marshal(reports)
	if !strings.Contains(string(b), `"source":"self-signed"`) || !strings.Contains(string(b), `"verified":"self signed"`) {
		t.Fatalf("certs:report: %s", b)
	}

	// certs:remove: no more HTTPS, no more redirect.
	s.mustBerth("certs:remove", app)
	if _, err := s.handshake(host(app), nil, false); err == nil {
		t.Fatal("handshake after certs:remove succeeded")
	}
	if code, _ := s.get(host(app), "/"); code != 200 {
		t.Fatalf("HTTP after certs:remove: %d", code)
	}
	if out, code := s.berth("certs:remove", app); code == 0 || !strings.Contains(out, "has no certificate") {
		t.Fatalf("second certs:remove: %d %s", code, out)
	}
}
