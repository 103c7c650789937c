package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func edgeFixture(t *testing.T, challenge func(http.ResponseWriter, *http.Request) bool) (*Router, *Edge) {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app "+r.Host+" "+r.URL.RequestURI())
	}))
	t.Cleanup(backend.Close)
	r := New(Options{})
	addr := strings.TrimPrefix(backend.URL, "http://")
	r.Set("shop", []string{"shop.example.com", "www.example.com", "*.wild.example.com"}, []string{addr})
	r.Set("blog", []string{"blog.example.com"}, []string{addr})
	return r, NewEdge(r, 8443, challenge)
}

func edgeDo(h http.Handler, method, host, uri string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://"+host+uri, nil)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestEdgeRedirect(t *testing.T) {
	_, e := edgeFixture(t, nil)
	h := e.HTTP()
	// No policy: proxied.
	if rec := edgeDo(h, "GET", "shop.example.com", "/x"); rec.Code != 200 {
		t.Fatalf("no policy: %d", rec.Code)
	}
	e.SetPolicy("shop", HTTPSPolicy{Secure: []string{"shop.example.com", "*.wild.example.com"}, Redirect: true})
	rec := edgeDo(h, "GET", "Shop.Example.com:8080", "/a/b?c=d")
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "https://shop.example.com:8443/a/b?c=d" {
		t.Fatalf("GET redirect: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := edgeDo(h, "POST", "shop.example.com", "/form"); rec.Code != http.StatusPermanentRedirect {
		t.Fatalf("POST redirect: %d", rec.Code)
	}
	if rec := edgeDo(h, "GET", "x.wild.example.com", "/"); rec.Code != http.StatusMovedPermanently {
		t.Fatalf("wildcard host redirect: %d", rec.Code)
	}
	// A host of the app without a certificate is not redirected.
	if rec := edgeDo(h, "GET", "www.example.com", "/"); rec.Code != 200 {
		t.Fatalf("host without a certificate: %d", rec.Code)
	}
	// Another app is not affected.
	if rec := edgeDo(h, "GET", "blog.example.com", "/"); rec.Code != 200 {
		t.Fatalf("other app: %d", rec.Code)
	}
	// The switch.
	e.SetPolicy("shop", HTTPSPolicy{Secure: []string{"shop.example.com"}, Redirect: false})
	if rec := edgeDo(h, "GET", "shop.example.com", "/"); rec.Code != 200 {
		t.Fatalf("redirect off: %d", rec.Code)
	}
	e.SetPolicy("shop", HTTPSPolicy{Secure: []string{"shop.example.com"}, Redirect: true})
	e.RemovePolicy("shop")
	if rec := edgeDo(h, "GET", "shop.example.com", "/"); rec.Code != 200 {
		t.Fatalf("policy removed: %d", rec.Code)
	}
	// Port 443 is left out.
	e443 := NewEdge(e.router, 443, nil)
	e443.SetPolicy("shop", HTTPSPolicy{Secure: []string{"shop.example.com"}, Redirect: true})
	if rec := edgeDo(e443.HTTP(), "GET", "shop.example.com", "/"); rec.Header().Get("Location") != "https://shop.example.com/" {
		t.Fatalf("443 redirect: %q", rec.Header().Get("Location"))
	}
}

func TestEdgeChallengeFirst(t *testing.T) {
	var asked []string
	_, e := edgeFixture(t, func(w http.ResponseWriter, r *http.Request) bool {
		asked = append(asked, r.URL.Path)
		if r.URL.Path == "/.well-known/acme-challenge/token" {
			io.WriteString(w, "key-authorization")
			return true
		}
		return false
	})
	e.SetPolicy("shop", HTTPSPolicy{Secure: []string{"shop.example.com"}, Redirect: true})
	rec := edgeDo(e.HTTP(), "GET", "shop.example.com", "/.well-known/acme-challenge/token")
	if rec.Code != 200 || rec.Body.String() != "key-authorization" {
		t.Fatalf("challenge: %d %q", rec.Code, rec.Body.String())
	}
	// Unknown tokens fall through (here to the redirect); other paths are
	// never offered to the challenge handler.
	if rec := edgeDo(e.HTTP(), "GET", "shop.example.com", "/.well-known/acme-challenge/other"); rec.Code != http.StatusMovedPermanently {
		t.Fatalf("unknown token: %d", rec.Code)
	}
	edgeDo(e.HTTP(), "GET", "shop.example.com", "/index.html")
	if len(asked) != 2 {
		t.Fatalf("challenge handler asked for %v", asked)
	}
	// Unknown hosts still get the router's 404.
	if rec := edgeDo(e.HTTP(), "GET", "nope.example.com", "/"); rec.Code != 404 {
		t.Fatalf("unknown host: %d", rec.Code)
	}
}

func TestEdgeHSTS(t *testing.T) {
	_, e := edgeFixture(t, nil)
	h := e.HTTPS()
	if rec := edgeDo(h, "GET", "shop.example.com", "/"); rec.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS without a policy")
	}
	e.SetPolicy("shop", HTTPSPolicy{HSTS: "max-age=60; includeSubDomains"})
	rec := edgeDo(h, "GET", "shop.example.com", "/")
	if rec.Code != 200 || rec.Header().Get("Strict-Transport-Security") != "max-age=60; includeSubDomains" {
		t.Fatalf("HSTS: %d %q", rec.Code, rec.Header().Get("Strict-Transport-Security"))
	}
	if rec := edgeDo(h, "GET", "blog.example.com", "/"); rec.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS leaked to another app")
	}
	// Plain HTTP never carries HSTS.
	if rec := edgeDo(e.HTTP(), "GET", "shop.example.com", "/"); rec.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
}

func TestRouterAppOf(t *testing.T) {
	r, _ := edgeFixture(t, nil)
	r.Set("exact", []string{"a.wild.example.com"}, nil)
	for host, want := range map[string]string{
		"shop.example.com":     "shop",
		"x.wild.example.com":   "shop",
		"a.wild.example.com":   "exact",
		"wild.example.com":     "",
		"b.a.wild.example.com": "",
		"nope.example.com":     "",
	} {
		if got := r.AppOf(host); got != want {
			t.Errorf("AppOf(%q) = %q, want %q", host, got, want)
		}
	}
}
