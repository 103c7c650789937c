package certs

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/proxy"
)

// fakeConn gives certmagic's handshake logging a remote address.
type fakeConn struct{ net.Conn }

func (fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }

func TestManagerManualCertificates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, _ := openStore(t)
	router := proxy.New(proxy.Options{})
	hosts := map[string][]string{
		"shop": {"shop.example.com", "*.wild.example.com"},
		"blog": {"blog.example.com", "x.wild.example.com"},
	}
	for app, hs := range hosts {
		if err := st.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		router.Set(app, hs, nil)
	}
	m := New(ctx, Options{Store: st, Router: router, HTTPPort: 80, HTTPSPort: 443,
		Hosts: func(_ context.Context, app string) ([]string, error) { return hosts[app], nil }})
	defer m.Stop()
	edge := proxy.NewEdge(router, 443, m.HandleHTTPChallenge)
	m.SetEdge(edge)
	m.Start(ctx)

	hello := func(name string) (*tls.Certificate, error) {
		return m.GetCertificate(&tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2"}, Conn: fakeConn{}})
	}
	if _, err := hello("shop.example.com"); err == nil {
		t.Fatal("a certificate before any was added")
	}

	// shop gets a certificate covering its host and, by accident, blog's.
	now := time.Now()
	crt, key := issue(t, []string{"shop.example.com", "*.wild.example.com", "blog.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	if _, err := m.SetManual(ctx, "shop", "manual", crt, key); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shop.example.com", "SHOP.example.com.", "a.wild.example.com"} {
		c, err := hello(name)
		if err != nil || c.Leaf.DNSNames[0] != "shop.example.com" {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// blog's hosts never get shop's certificate, even where it is valid:
	// blog.example.com (blog's) and x.wild.example.com (blog's exact host
	// beats shop's wildcard).
	for _, name := range []string{"blog.example.com", "x.wild.example.com", "unknown.example.com", ""} {
		if _, err := hello(name); err == nil {
			t.Fatalf("%q got a certificate", name)
		}
	}
	if !m.SecureHost("shop", "shop.example.com") || !m.SecureHost("shop", "*.wild.example.com") || m.SecureHost("blog", "blog.example.com") {
		t.Fatal("SecureHost")
	}

	// A broken certificate for blog is refused and changes nothing.
	_, otherKey := issue(t, []string{"blog.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	if _, err := m.SetManual(ctx, "blog", "manual", crt, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := hello("shop.example.com"); err != nil {
		t.Fatalf("shop after blog's refused certificate: %v", err)
	}
	if _, err := st.AppCertOf(ctx, "blog"); err == nil {
		t.Fatal("a refused certificate was stored")
	}

	// A restart (a new manager on the same store) serves it again.
	m2 := New(ctx, Options{Store: st, Router: router, HTTPSPort: 443,
		Hosts: func(_ context.Context, app string) ([]string, error) { return hosts[app], nil }})
	defer m2.Stop()
	m2.Start(ctx)
	if c, err := m2.GetCertificate(&tls.ClientHelloInfo{ServerName: "shop.example.com", Conn: fakeConn{}}); err != nil || c.Leaf == nil {
		t.Fatalf("after a restart: %v", err)
	}

	// Removal.
	if err := m.RemoveManual(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if _, err := hello("shop.example.com"); err == nil {
		t.Fatal("a certificate after certs:remove")
	}
	if m.SecureHost("shop", "shop.example.com") {
		t.Fatal("SecureHost after removal")
	}
}

func TestEnableRefusesWithoutIssuableNames(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, _ := openStore(t)
	st.CreateApp(ctx, "shop")
	hosts := map[string][]string{"shop": {"shop.localhost", "*.wild.example.com"}}
	m := New(ctx, Options{Store: st, Router: proxy.New(proxy.Options{}), HTTPSPort: 443,
		Hosts: func(_ context.Context, app string) ([]string, error) { return hosts[app], nil }})
	defer m.Stop()
	// The wildcard needs DNS-01 and there is no DNS provider: refused
	// before anything is asked of a CA.
	err := m.Enable(ctx, "shop", nil, func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "needs the dns-01 challenge") {
		t.Fatalf("Enable: %v", err)
	}
	if on, _ := m.acmeEnabled(ctx, "shop"); on {
		t.Fatal("letsencrypt left enabled")
	}
	hosts["shop"] = []string{"shop.localhost"}
	if err := m.Enable(ctx, "shop", nil, func(string, ...any) {}); err == nil || !strings.Contains(err.Error(), "no domain a certificate authority can issue for") {
		t.Fatalf("Enable with only localhost: %v", err)
	}
}
