package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

// pebbleVersion is the Let's Encrypt test CA the ACME tests run.
const pebbleVersion = "v2.10.1"

var (
	pebbleOnce sync.Once
	pebbleBin  string
	pebbleErr  error
)

// buildPebble builds Pebble from the Go module proxy once per run.
func buildPebble(t testing.TB) string {
	t.Helper()
	pebbleOnce.Do(func() {
		dir := filepath.Join(workDir, "pebble")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			pebbleErr = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pebbleErr = fmt.Errorf("build pebble %s: %v\n%s", pebbleVersion, err, out)
			return
		}
		pebbleBin = filepath.Join(dir, "pebble")
	})
	if pebbleErr != nil {
		t.Fatal(pebbleErr)
	}
	return pebbleBin
}

// testCA is a certificate authority made by a test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf for hosts (DNS names or IPs) valid from notBefore to
// notAfter, and returns its PEM certificate and key.
func (ca *testCA) issue(t testing.TB, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// startHTTPSServer starts a berth server with an HTTPS listener.
func startHTTPSServer(t testing.TB) *Server {
	t.Helper()
	return startServerWith(t, func(ks *testkit.Server) {
		port, err := testkit.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ks.HTTPSAddr = "127.0.0.1:" + port
	})
}

// httpsClient returns a client that sends every request to the server's
// HTTPS port (whatever the URL's host), trusts roots, and speaks HTTP/2
// when offered.
func (s *Server) httpsClient(roots *x509.CertPool) *http.Client {
	addr := s.HTTPSAddr
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// httpsGet GETs https://host/path through the server's HTTPS port.
func (s *Server) httpsGet(roots *x509.CertPool, host, path string) (*http.Response, string, error) {
	resp, err := s.httpsClient(roots).Get("https://" + host + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// handshake connects to the HTTPS port with server name sni and returns
// the certificate chain it got (nil and the error when it failed).
func (s *Server) handshake(sni string, roots *x509.CertPool, verify bool) ([]*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.HTTPSAddr,
		&tls.Config{ServerName: sni, RootCAs: roots, InsecureSkipVerify: !verify, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

// knot is an authoritative DNS server (Knot DNS) on loopback serving one
// zone that accepts TSIG-signed dynamic updates and transfers.
type knot struct {
	Addr    string // 127.0.0.1:PORT
	Zone    string
	KeyName string
	Secret  string // base64
	cmd     *exec.Cmd
	log     *testkit.LockedBuffer
}

func startKnot(t testing.TB, zone string) *knot {
	t.Helper()
	bin, err := exec.LookPath("knotd")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/knotd")
	}
	if err != nil {
		t.Fatalf("knotd (Debian package knot) is required for the DNS tests: run scripts/install-deps.sh")
	}
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatalf("dig (Debian package bind9-dnsutils) is required for the DNS tests: run scripts/install-deps.sh")
	}
	dir := t.TempDir()
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	k := &knot{Addr: "127.0.0.1:" + port, Zone: zone, KeyName: "berth-test", Secret: base64.StdEncoding.EncodeToString(secret), log: &testkit.LockedBuffer{}}
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]s
    pidfile: "%[1]s/knot.pid"
log:
  - target: stderr
    any: info
database:
    storage: "%[1]s/db"
control:
    listen: "%[1]s/knot.sock"
key:
  - id: %[3]s
    algorithm: hmac-sha256
    secret: %[4]s
acl:
  - id: berth_update
    key: %[3]s
    action: [update, transfer]
template:
  - id: default
    storage: "%[1]s"
    file: "%%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
    semantic-checks: off
zone:
  - domain: %[5]s
    acl: berth_update
`, dir, port, k.KeyName, k.Secret, zone)
	zoneFile := fmt.Sprintf("$ORIGIN %[1]s.\n$TTL 60\n@ SOA ns.%[1]s. admin.%[1]s. 1 60 60 3600 60\n@ NS ns.%[1]s.\nns A 127.0.0.1\n", zone)
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, zone+".zone"), []byte(zoneFile), 0o600); err != nil {
		t.Fatal(err)
	}
	k.cmd = exec.Command(bin, "-c", filepath.Join(dir, "knot.conf"))
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.cmd.Process.Kill()
		k.cmd.Wait()
		if t.Failed() {
			t.Logf("knotd log:\n%s", k.log.String())
		}
	})
	eventually(t, 10*time.Second, func() error {
		if out := k.dig(t, "SOA", zone); !strings.Contains(out, "ns."+zone) {
			return fmt.Errorf("knotd does not answer for %s yet: %q", zone, out)
		}
		return nil
	})
	return k
}

// dig asks the server for name's records of type typ (short answers).
func (k *knot) dig(t testing.TB, typ, name string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(k.Addr)
	out, err := exec.Command("dig", "+short", "+time=2", "+tries=1", "@"+host, "-p", port, typ, name).CombinedOutput()
	if err != nil {
		return "dig error: " + err.Error() + " " + string(out)
	}
	return strings.TrimSpace(string(out))
}

// pebble is Let's Encrypt's test CA on loopback.
type pebble struct {
	Dir     string // ACME directory URL
	Mgmt    string // management address
	CAFile  string // the CA of Pebble's own HTTPS listener
	caPool  *x509.CertPool
	cmd     *exec.Cmd
	log     *testkit.LockedBuffer
	rootsMu sync.Mutex
	roots   *x509.CertPool
}

// startPebble starts Pebble validating http-01 on httpPort and
// tls-alpn-01 on tlsPort of the addresses dnsServer resolves names to.
func startPebble(t testing.TB, httpPort, tlsPort, dnsServer string) *pebble {
	t.Helper()
	bin := buildPebble(t)
	dir := t.TempDir()
	ca := newTestCA(t, "pebble listener CA")
	crt, key := ca.issue(t, []string{"127.0.0.1", "localhost"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	for name, b := range map[string][]byte{"cert.pem": crt, "key.pem": key, "ca.pem": ca.certPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lp, _ := testkit.FreePort()
	mp, _ := testkit.FreePort()
	var hp, tp int
	fmt.Sscan(httpPort, &hp)
	fmt.Sscan(tlsPort, &tp)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           "127.0.0.1:" + lp,
		"managementListenAddress": "127.0.0.1:" + mp,
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                hp,
		"tlsPort":                 tp,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles":                map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebble{Dir: "https://127.0.0.1:" + lp + "/dir", Mgmt: "127.0.0.1:" + mp, CAFile: filepath.Join(dir, "ca.pem"), caPool: ca.pool(), log: &testkit.LockedBuffer{}}
	p.cmd = exec.Command(bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", dnsServer)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.log.String())
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}}
	eventually(t, 20*time.Second, func() error {
		resp, err := client.Get(p.Dir)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p
}

// Roots returns the root Pebble issues certificates under (from its
// management interface).
func (p *pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	p.rootsMu.Lock()
	defer p.rootsMu.Unlock()
	if p.roots != nil {
		return p.roots
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}}
	resp, err := client.Get("https://" + p.Mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: no certificate in %q", b)
	}
	p.roots = pool
	return pool
}
