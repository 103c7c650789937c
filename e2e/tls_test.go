package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// The same over HTTP/1.1.
	h1c := s.httpsClient(ca.pool())
	h1c.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1c.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	resp, err = h1c.Get("https://" + host(app) + "/headers")
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || !strings.Contains(string(b1), "proto=https") || resp.Header.Get("Strict-Transport-Security") != "max-age=15724800" {
		t.Fatalf("HTTPS over HTTP/1.1: %s %s %v", resp.Proto, b1, resp.Header)
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

// acmeEnv is a berth server with HTTPS, an authoritative DNS server for
// zone tls.test taking berth's updates, and Pebble validating against
// both.
type acmeEnv struct {
	s      *Server
	dns    *knot
	pebble *pebble
	zone   string
}

func startACME(t *testing.T) *acmeEnv {
	t.Helper()
	s := startHTTPSServer(t)
	zone := "tls.test"
	k := startKnot(t, zone)
	_, hp, _ := strings.Cut(s.HTTPAddr, ":")
	_, sp, _ := strings.Cut(s.HTTPSAddr, ":")
	p := startPebble(t, hp, sp, k.Addr)
	s.mustBerth("dns:provider:set", "rfc2136", "server="+k.Addr, "zone="+zone, "key-name="+k.KeyName, "key-alg=hmac-sha256", "key-secret="+k.Secret)
	s.mustBerth("dns:set", "--global", "ip", "127.0.0.1")
	s.mustBerth("letsencrypt:set", "--global", "server", p.Dir)
	s.mustBerth("letsencrypt:set", "--global", "ca-root", p.CAFile)
	s.mustBerth("letsencrypt:set", "--global", "email", "ops@tls.test")
	// Apps answer at APP.apps.tls.test, inside the zone.
	s.mustBerth("domains:set-global", "apps."+zone)
	return &acmeEnv{s: s, dns: k, pebble: p, zone: zone}
}

// TestTLSACME: certificates from Pebble through HTTP-01, TLS-ALPN-01 and
// DNS-01 (a wildcard, through RFC 2136 updates of a real DNS server), DNS
// records of apps created and removed, letsencrypt:list, renewal,
// revocation and a failing domain.
func TestTLSACME(t *testing.T) {
	e := startACME(t)
	s := e.s
	web := appName("acme")
	s.mustPush(newRepo(t, nil), web)
	roots := e.pebble.Roots(t)

	// DNS records: dns:enable creates an A record per host in the zone.
	h1 := "h1." + e.zone
	s.mustBerth("domains:add", web, h1)
	out := s.mustBerth("dns:enable", web)
	if !strings.Contains(out, "Created "+h1+" A 127.0.0.1") {
		t.Fatalf("dns:enable: %s", out)
	}
	if got := e.dns.dig(t, "A", h1); got != "127.0.0.1" {
		t.Fatalf("dig A %s: %q", h1, got)
	}
	// The default host (APP.apps.tls.test) gets one too; the zone's server
	// has both.
	var rep struct {
		Enabled bool     `json:"enabled"`
		Skipped []string `json:"skipped"`
		Live    []string `json:"live"`
		Records []struct {
			Name, Type, Value string
		} `json:"records"`
	}
	s.jsonOut(&rep, "dns:report", web, "--format", "json")
	if !rep.Enabled || len(rep.Records) != 2 || rep.Records[1].Name != h1 || rep.Records[0].Name != web+".apps."+e.zone || len(rep.Skipped) != 0 || len(rep.Live) != 2 {
		t.Fatalf("dns:report: %+v", rep)
	}
	// domains:add of an enabled app creates the record at once.
	h2 := "h2." + e.zone
	out = s.mustBerth("domains:add", web, h2)
	if !strings.Contains(out, "DNS: created "+h2+" A 127.0.0.1") || e.dns.dig(t, "A", h2) != "127.0.0.1" {
		t.Fatalf("domains:add on a DNS-enabled app: %s / dig %q", out, e.dns.dig(t, "A", h2))
	}

	// HTTP-01.
	s.mustBerth("letsencrypt:set", web, "challenge", "http-01")
	out = s.mustBerth("letsencrypt:enable", web)
	if !strings.Contains(out, "Certificates ready for "+web) {
		t.Fatalf("letsencrypt:enable: %s", out)
	}
	if !strings.Contains(e.pebble.log.String(), "Attempting to validate w/ HTTP: http://"+h1) || !servedChallenge(s, "http-01", h1) {
		t.Fatal("berth did not answer an http-01 challenge")
	}
	for _, h := range []string{h1, h2} {
		resp, body, err := s.httpsGet(roots, h, "/headers")
		if err != nil {
			t.Fatalf("HTTPS %s with Pebble's root: %v", h, err)
		}
		if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.Contains(body, "proto=https") {
			t.Fatalf("HTTPS %s: %d %s %s", h, resp.StatusCode, resp.Proto, body)
		}
	}
	// HTTP now redirects, and the deploy URLs are https://.
	if code, loc := s.getNoFollow(h1, "/x"); code != 301 || !strings.HasPrefix(loc, "https://"+h1+":") {
		t.Fatalf("HTTP after letsencrypt: %d %s", code, loc)
	}
	var list []struct {
		App       string   `json:"app"`
		Domains   []string `json:"domains"`
		Expiry    string   `json:"expiry"`
		LastError string   `json:"last-error"`
	}
	s.jsonOut(&list, "letsencrypt:list", "--format", "json")
	if len(list) != 1 || list[0].App != web || len(list[0].Domains) != 3 || list[0].Expiry == "" || list[0].LastError != "" {
		t.Fatalf("letsencrypt:list: %+v", list)
	}
	before, _ := s.handshake(h1, roots, true)

	// auto-renew --force gets new certificates at once.
	out = s.mustBerth("letsencrypt:auto-renew", web, "--force")
	if !strings.Contains(out, "Renewed the certificate of "+h1) {
		t.Fatalf("auto-renew: %s", out)
	}
	after, err := s.handshake(h1, roots, true)
	if err != nil || after[0].SerialNumber.Cmp(before[0].SerialNumber) == 0 {
		t.Fatalf("the renewed certificate is not served: %v", err)
	}

	// A domain Pebble cannot validate (no DNS record: outside the zone's
	// records because DNS is off for that app) fails clearly and changes
	// nothing.
	bad := appName("acmebad")
	s.mustBerth("apps:create", bad)
	s.apps.Store(bad, true)
	s.mustBerth("domains:add", bad, "nowhere."+e.zone)
	out, code := s.berth("letsencrypt:enable", bad)
	if code == 0 || !strings.Contains(out, "get a certificate for nowhere."+e.zone+": the ACME server said: ") || strings.Count(out, " !     ") != 1 {
		t.Fatalf("letsencrypt:enable of an unresolvable domain: %d %s", code, out)
	}
	if _, _, err := s.httpsGet(roots, h1, "/"); err != nil {
		t.Fatalf("another app's failure broke HTTPS of %s: %v", web, err)
	}

	// TLS-ALPN-01, on a second app.
	alpn := appName("alpn")
	s.mustBerth("apps:create", alpn)
	s.apps.Store(alpn, true)
	h3 := "h3." + e.zone
	s.mustBerth("domains:add", alpn, h3)
	s.mustBerth("dns:enable", alpn)
	s.mustBerth("letsencrypt:set", alpn, "challenge", "tls-alpn-01")
	s.mustBerth("letsencrypt:enable", alpn)
	if !servedChallenge(s, "tls-alpn-01", h3) {
		t.Fatal("berth did not answer a tls-alpn-01 challenge")
	}
	chain, err := s.handshake(h3, roots, true)
	if err != nil || chain[0].DNSNames[0] != h3 {
		t.Fatalf("TLS-ALPN-01 certificate: %v", err)
	}
	// Each app gets only its own certificates.
	if _, err := s.handshake("unknown."+e.zone, nil, false); err == nil {
		t.Fatal("a name no app answers to got a certificate")
	}
	if _, err := s.handshake(bad+".apps."+e.zone, nil, false); err == nil {
		t.Fatal("an app without a certificate got one")
	}

	// DNS-01 with a wildcard domain (records through RFC 2136).
	wild := "*.wild." + e.zone
	s.mustBerth("domains:add", web, wild) // obtained in the background
	eventually(t, 60*time.Second, func() error {
		_, err := s.handshake("anything.wild."+e.zone, roots, true)
		return err
	})
	out = s.mustBerth("letsencrypt:auto-renew", web)
	if !strings.Contains(out, wild+": not due for renewal") {
		t.Fatalf("auto-renew: %s", out)
	}
	resp, body, err := s.httpsGet(roots, "anything.wild."+e.zone, "/")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, "proc=web") {
		t.Fatalf("HTTPS through the wildcard certificate: %v %v", err, body)
	}
	if got := e.dns.dig(t, "TXT", "_acme-challenge.wild."+e.zone); got != "" {
		t.Fatalf("the DNS-01 challenge record was left behind: %q", got)
	}

	// Revoke: the certificate goes away and so does HTTPS.
	s.mustBerth("letsencrypt:revoke", alpn)
	if _, err := s.handshake(h3, roots, true); err == nil {
		t.Fatal("HTTPS after letsencrypt:revoke")
	}

	// Records are removed on domains:remove, dns:disable and apps:destroy.
	out = s.mustBerth("domains:remove", web, h2)
	if !strings.Contains(out, "DNS: removed "+h2+" A 127.0.0.1") || e.dns.dig(t, "A", h2) != "" {
		t.Fatalf("domains:remove: %s / dig %q", out, e.dns.dig(t, "A", h2))
	}
	s.mustBerth("dns:disable", alpn)
	if got := e.dns.dig(t, "A", h3); got != "" {
		t.Fatalf("dns:disable left %q", got)
	}
	s.mustBerth("dns:enable", alpn)
	if got := e.dns.dig(t, "A", h3); got != "127.0.0.1" {
		t.Fatalf("dns:enable again: %q", got)
	}
	s.mustBerth("apps:destroy", "--force", alpn)
	if got := e.dns.dig(t, "A", h3); got != "" {
		t.Fatalf("apps:destroy left %q", got)
	}
	if got := e.dns.dig(t, "A", h1); got != "127.0.0.1" {
		t.Fatalf("another app's record went with apps:destroy: %q", got)
	}

	// A domain added to a letsencrypt app is obtained in the background;
	// a failure shows in letsencrypt:list and leaves the other names alone.
	s.mustBerth("domains:add", web, "outside.example")
	eventually(t, 30*time.Second, func() error {
		s.jsonOut(&list, "letsencrypt:list", "--format", "json")
		if len(list) != 1 || !strings.Contains(list[0].LastError, "outside.example") {
			return fmt.Errorf("letsencrypt:list: %+v", list)
		}
		return nil
	})
	if _, err := s.handshake(h1, roots, true); err != nil {
		t.Fatalf("HTTPS of %s after another name failed: %v", h1, err)
	}
	s.mustBerth("domains:remove", web, "outside.example")

	// Certificates live in the store: a restarted server serves them
	// without asking the CA again.
	issued := strings.Count(e.pebble.log.String(), "Issued certificate serial")
	s.stop(syscall.SIGTERM)
	s.start(t)
	eventually(t, 20*time.Second, func() error {
		_, err := s.handshake(h1, roots, true)
		return err
	})
	if _, err := s.handshake("x.wild."+e.zone, roots, true); err != nil {
		t.Fatalf("wildcard certificate after a restart: %v", err)
	}
	if n := strings.Count(e.pebble.log.String(), "Issued certificate serial"); n != issued {
		t.Fatalf("%d certificates issued again after a restart", n-issued)
	}
}

// servedChallenge reports whether the server log shows certmagic answering
// an ACME challenge of type typ for name.
func servedChallenge(s *Server, typ, name string) bool {
	for _, l := range strings.Split(s.Log.String(), "\n") {
		if strings.Contains(l, "certmagic: served key authentication") && strings.Contains(l, "challenge="+typ) && strings.Contains(l, name) {
			return true
		}
	}
	return false
}

// getNoFollow sends GET path over plain HTTP with host and returns the
// status and the Location header, without following redirects.
func (s *Server) getNoFollow(hostname, path string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+path, nil)
	req.Host = hostname
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}
