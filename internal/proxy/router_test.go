package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is what echoBackend answers.
type echo struct {
	Backend string
	Host    string
	URI     string
	XFF     string
	XFHost  string
	XFProto string
	Body    string
}

// echoBackend starts a backend on 127.0.0.1 that describes the request it got.
func echoBackend(t testing.TB, name string) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Backend: name,
			Host:    r.Host,
			URI:     r.URL.RequestURI(),
			XFF:     r.Header.Get("X-Forwarded-For"),
			XFHost:  r.Header.Get("X-Forwarded-Host"),
			XFProto: r.Header.Get("X-Forwarded-Proto"),
			Body:    string(body),
		})
	}))
	t.Cleanup(srv.Close)
	return srv, srv.Listener.Addr().String()
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestRouter returns a Router logging at debug level into a buffer, and a
// front server serving it.
func newTestRouter(t testing.TB) (*Router, *httptest.Server, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	r := New(Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	front := httptest.NewServer(r)
	t.Cleanup(func() {
		front.Close()
		r.transport.CloseIdleConnections()
	})
	return r, front, logs
}

// do sends a request with the given Host through front.
func do(t testing.TB, client *http.Client, front *httptest.Server, method, host, path, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, front.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if client == nil {
		client = front.Client()
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func decodeEcho(t testing.TB, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("decoding backend answer %q: %v", body, err)
	}
	return e
}

// waitFor polls cond until it holds or fails the test after 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// deadAddr returns a 127.0.0.1 address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":        "example.com",
		"Example.COM":        "example.com",
		"example.com:8080":   "example.com",
		"example.com.":       "example.com",
		"EXAMPLE.com.:443":   "example.com",
		"example.com:":       "example.com",
		"[::1]:8080":         "::1",
		"[::1]":              "::1",
		"[FE80::1]:80":       "fe80::1",
		"::1":                "::1",
		"127.0.0.1:80":       "127.0.0.1",
		"":                   "",
		"example.com:abc":    "example.com:abc",
		"example.com..":      "example.com.",
		"app.berth.test:443": "app.berth.test",
	} {
		if got := canonicalHost(in); got != want {
			t.Errorf("canonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = canonicalHost("app.example.com.:8080") }); n != 0 {
		t.Errorf("canonicalHost of a lowercase host allocates %v times", n)
	}
}

func TestRoutingByHost(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, a := echoBackend(t, "a")
	_, b := echoBackend(t, "b")
	r.Set("alpha", []string{"alpha.test", "www.alpha.test"}, []string{a})
	r.Set("beta", []string{"beta.test"}, []string{b})

	for host, want := range map[string]string{
		"alpha.test":          "a",
		"www.alpha.test":      "a",
		"ALPHA.Test":          "a",
		"alpha.test:8080":     "a",
		"alpha.test.":         "a",
		"Www.Alpha.Test.:443": "a",
		"beta.test":           "b",
		"beta.test:80":        "b",
	} {
		resp, body := do(t, nil, front, "GET", host, "/p/q?x=1&y=2", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Host %q: status %d, body %q", host, resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if e.Backend != want {
			t.Errorf("Host %q routed to %q, want %q", host, e.Backend, want)
		}
		if e.Host != host {
			t.Errorf("Host %q: backend saw Host %q, want it preserved", host, e.Host)
		}
		if e.URI != "/p/q?x=1&y=2" {
			t.Errorf("Host %q: backend saw URI %q", host, e.URI)
		}
	}
}

func TestUnknownHost404(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, a := echoBackend(t, "a")
	r.Set("alpha", []string{"alpha.test"}, []string{a})

	resp, body := do(t, nil, front, "GET", "other.test", "/", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	if !strings.Contains(body, "No app is configured for host") || !strings.Contains(body, "other.test") {
		t.Errorf("unexpected 404 page: %q", body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}

	// The host is escaped. (Go's client refuses such a Host, so call the
	// handler directly.)
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = `<script>alert("x")</script>.test`
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
	if got := rec.Body.String(); strings.Contains(got, "<script>") || !strings.Contains(got, "&lt;script&gt;") {
		t.Errorf("host not escaped in 404 page: %q", got)
	}

	// HEAD gets no body.
	req = httptest.NewRequest("HEAD", "/", nil)
	req.Host = "nope.test"
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, body %q", rec.Code, rec.Body.String())
	}
}

func TestNoTargets502(t *testing.T) {
	r, front, logs := newTestRouter(t)
	r.Set("my<app>", []string{"idle.test"}, nil)
	resp, body := do(t, nil, front, "GET", "idle.test", "/", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if !strings.Contains(body, "No running web process for <code>my&lt;app&gt;</code>") {
		t.Errorf("unexpected 502 page: %q", body)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("unexpected warning: %s", logs)
	}
}

func TestRoundRobin(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, a := echoBackend(t, "a")
	_, b := echoBackend(t, "b")
	r.Set("app", []string{"app.test"}, []string{a, b})

	var seen []string
	counts := map[string]int{}
	for range 10 {
		resp, body := do(t, nil, front, "GET", "app.test", "/", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		be := decodeEcho(t, body).Backend
		seen = append(seen, be)
		counts[be]++
	}
	if counts["a"] != 5 || counts["b"] != 5 {
		t.Fatalf("uneven distribution %v", counts)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Fatalf("not alternating: %v", seen)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, a := echoBackend(t, "a")
	r.Set("app", []string{"app.test"}, []string{a})

	// A client-supplied X-Forwarded-* must not be trusted.
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Host = "App.test:8080"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.test")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := decodeEcho(t, string(body))
	want := echo{Backend: "a", Host: "App.test:8080", URI: "/", XFF: "127.0.0.1", XFHost: "App.test:8080", XFProto: "http"}
	if e != want {
		t.Errorf("backend saw %+v, want %+v", e, want)
	}

	// Through TLS, X-Forwarded-Proto is https.
	tlsFront := httptest.NewTLSServer(r)
	defer tlsFront.Close()
	resp, body2 := do(t, tlsFront.Client(), tlsFront, "GET", "app.test", "/s", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e = decodeEcho(t, body2)
	want = echo{Backend: "a", Host: "app.test", URI: "/s", XFF: "127.0.0.1", XFHost: "app.test", XFProto: "https"}
	if e != want {
		t.Errorf("backend saw %+v, want %+v", e, want)
	}
}

func TestSetRemoveAndRoutes(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, a := echoBackend(t, "a")
	_, b := echoBackend(t, "b")
	_, c := echoBackend(t, "c")

	r.Set("app", []string{"one.test", "two.test"}, []string{a})
	r.Set("other", []string{"other.test"}, []string{c})
	if resp, _ := do(t, nil, front, "GET", "two.test", "/", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// Replace: two.test is dropped, three.test added, targets replaced.
	r.Set("app", []string{"one.test", "three.test"}, []string{b})
	if resp, _ := do(t, nil, front, "GET", "two.test", "/", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("dropped host: status %d, want 404", resp.StatusCode)
	}
	for _, h := range []string{"one.test", "three.test"} {
		resp, body := do(t, nil, front, "GET", h, "/", "")
		if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Backend != "b" {
			t.Errorf("%s: status %d body %q, want backend b", h, resp.StatusCode, body)
		}
	}

	routes := r.Routes()
	if len(routes) != 2 {
		t.Fatalf("Routes() = %v", routes)
	}
	if got := routes["app"]; strings.Join(got.Hosts, ",") != "one.test,three.test" || strings.Join(got.Targets, ",") != b {
		t.Errorf("Routes()[app] = %+v", got)
	}
	// The snapshot is a copy.
	routes["app"].Hosts[0] = "mutated"
	if r.Routes()["app"].Hosts[0] != "one.test" {
		t.Error("Routes() shares its slices with the router")
	}

	// A host taken over by another app moves.
	r.Set("other", []string{"other.test", "three.test"}, []string{c})
	resp, body := do(t, nil, front, "GET", "three.test", "/", "")
	if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Backend != "c" {
		t.Errorf("taken-over host: status %d body %q, want backend c", resp.StatusCode, body)
	}
	if got := r.Routes()["app"].Hosts; strings.Join(got, ",") != "one.test" {
		t.Errorf("app hosts after takeover = %v", got)
	}

	r.Remove("app")
	r.Remove("missing") // no-op
	if resp, _ := do(t, nil, front, "GET", "one.test", "/", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removed app: status %d, want 404", resp.StatusCode)
	}
	if resp, _ := do(t, nil, front, "GET", "other.test", "/", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("other app: status %d, want 200", resp.StatusCode)
	}
	if _, ok := r.Routes()["app"]; ok {
		t.Error("removed app still in Routes()")
	}
}

// TestSetUnderLoad swaps the targets of an app back and forth while
// concurrent clients hammer it: no request may fail.
func TestSetUnderLoad(t *testing.T) {
	r, front, logs := newTestRouter(t)
	_, a1 := echoBackend(t, "a1")
	_, a2 := echoBackend(t, "a2")
	_, b1 := echoBackend(t, "b1")
	_, b2 := echoBackend(t, "b2")
	hosts := []string{"load.test"}
	r.Set("app", hosts, []string{a1, a2})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	var (
		stop     atomic.Bool
		total    atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				req, _ := http.NewRequest("GET", front.URL+"/", nil)
				req.Host = "load.test"
				resp, err := client.Do(req)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			r.Set("app", hosts, []string{b1, b2})
		} else {
			r.Set("app", hosts, []string{a1, a2})
		}
		time.Sleep(time.Millisecond)
	}
	// Final deploy: b only, drain a.
	r.Set("app", hosts, []string{b1, b2})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Drain(ctx, []string{a1, a2}); err != nil {
		t.Errorf("Drain: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed, first: %v; logs:\n%s", n, total.Load(), firstErr.Load(), logs)
	}
	if total.Load() < 100 {
		t.Fatalf("only %d requests ran", total.Load())
	}
	if n := r.InFlight(a1) + r.InFlight(a2); n != 0 {
		t.Errorf("InFlight of drained targets = %d", n)
	}
	for range 4 {
		_, body := do(t, client, front, "GET", "load.test", "/", "")
		if be := decodeEcho(t, body).Backend; be != "b1" && be != "b2" {
			t.Errorf("after final Set, routed to %q", be)
		}
	}
}

// upgradeBackend answers "Upgrade: echo" requests with 101 and then echoes
// every byte back until the client closes.
func upgradeBackend(t testing.TB) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		if err := brw.Flush(); err != nil {
			return
		}
		_, _ = io.Copy(conn, brw)
	}))
	t.Cleanup(srv.Close)
	return srv, srv.Listener.Addr().String()
}

// dialUpgrade opens an upgraded "echo" connection through front.
func dialUpgrade(t testing.TB, front *httptest.Server, host string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status %d", resp.StatusCode)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "echo") {
		t.Fatalf("upgrade response headers %v", resp.Header)
	}
	return conn, br
}

func echoRoundTrip(t testing.TB, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(br, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echoed %q, want %q", buf, msg)
	}
}

func TestUpgrade(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{u})

	conn, br := dialUpgrade(t, front, "ws.test")
	echoRoundTrip(t, conn, br, "ping")
	echoRoundTrip(t, conn, br, strings.Repeat("x", 100<<10)) // bigger than a buffer
	if n := r.InFlight(u); n != 1 {
		t.Errorf("InFlight with an open upgraded connection = %d, want 1", n)
	}
	conn.Close()
	waitFor(t, "upgraded connection released", func() bool { return r.InFlight(u) == 0 })
}

func TestDrainWaitsForInFlight(t *testing.T) {
	r, front, _ := newTestRouter(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "slow done")
	}))
	defer slow.Close()
	slowAddr := slow.Listener.Addr().String()
	_, next := echoBackend(t, "next")
	r.Set("app", []string{"app.test"}, []string{slowAddr})

	type result struct {
		code int
		body string
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", front.URL+"/", nil)
		req.Host = "app.test"
		resp, err := front.Client().Do(req)
		if err != nil {
			res <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(b)}
	}()
	<-started
	if n := r.InFlight(slowAddr); n != 1 {
		t.Fatalf("InFlight = %d, want 1", n)
	}

	// Deploy: new target routed, old one drained.
	r.Set("app", []string{"app.test"}, []string{next})
	if _, body := do(t, nil, front, "GET", "app.test", "/", ""); decodeEcho(t, body).Backend != "next" {
		t.Fatalf("new requests not routed to the new target: %q", body)
	}
	drained := make(chan error, 1)
	go func() { drained <- r.Drain(context.Background(), []string{slowAddr}) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the request finished")
	}
	if got := <-res; got.code != http.StatusOK || got.body != "slow done" {
		t.Fatalf("in-flight request got %d %q", got.code, got.body)
	}
	if n := r.InFlight(slowAddr); n != 0 {
		t.Errorf("InFlight after Drain = %d", n)
	}
	// Drained and idle: its keep-alive connections are closed and its
	// accounting forgotten.
	r.mu.Lock()
	_, kept := r.stats[slowAddr]
	r.mu.Unlock()
	if kept {
		t.Error("stats of a drained target were not forgotten")
	}
	// Draining nothing, or an unknown address, returns at once.
	if err := r.Drain(context.Background(), nil); err != nil {
		t.Error(err)
	}
	if err := r.Drain(context.Background(), []string{"10.9.9.9:1"}); err != nil {
		t.Error(err)
	}
}

func TestDrainTimeoutClosesUpgraded(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{u})

	conn, br := dialUpgrade(t, front, "ws.test")
	echoRoundTrip(t, conn, br, "hello")

	r.Set("ws", []string{"ws.test"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Drain(ctx, []string{u})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain error = %v, want deadline exceeded", err)
	}
	if !strings.Contains(err.Error(), u) {
		t.Errorf("error %q does not name the target", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("Drain returned after %v, before its deadline", d)
	}

	// The client side of the upgraded connection is closed.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("upgraded connection still open after Drain timed out")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("upgraded connection not closed by Drain")
	}
	waitFor(t, "upgraded connection released", func() bool { return r.InFlight(u) == 0 })
}

func TestDrainCancelledContext(t *testing.T) {
	r, front, _ := newTestRouter(t)
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{u})
	conn, br := dialUpgrade(t, front, "ws.test")
	echoRoundTrip(t, conn, br, "x")
	r.Remove("ws")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Drain(ctx, []string{u}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain error = %v, want context.Canceled", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("upgraded connection still open")
	}
	waitFor(t, "upgraded connection released", func() bool { return r.InFlight(u) == 0 })
}

func TestDrainLeavesRoutedTargetsAlone(t *testing.T) {
	r, front, logs := newTestRouter(t)
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{u})
	conn, br := dialUpgrade(t, front, "ws.test")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Drain(ctx, []string{u}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain error = %v", err)
	}
	if !strings.Contains(logs.String(), "still routed") {
		t.Errorf("no warning about draining a routed target: %s", logs)
	}
	echoRoundTrip(t, conn, br, "still alive")
}

func TestDialFailureRetry(t *testing.T) {
	r, front, logs := newTestRouter(t)
	dead := deadAddr(t)
	_, live := echoBackend(t, "live")
	r.Set("app", []string{"app.test"}, []string{dead, live})

	// Round robin alternates dead, live, dead, ...: requests 0, 2, 4, 6
	// (two GETs, two POSTs) are retried.
	for i := range 8 {
		method, body := "GET", ""
		if i%4 >= 2 {
			method, body = "POST", fmt.Sprintf("payload-%d-%s", i, strings.Repeat("z", 64<<10))
		}
		resp, got := do(t, nil, front, method, "app.test", "/r", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s #%d: status %d body %q", method, i, resp.StatusCode, got)
		}
		e := decodeEcho(t, got)
		if e.Backend != "live" || e.Body != body {
			t.Fatalf("%s #%d: backend %q, body of %d bytes, want %d", method, i, e.Backend, len(e.Body), len(body))
		}
	}
	if n := strings.Count(logs.String(), "retrying on next target"); n != 4 {
		t.Errorf("%d retries logged, want 4: %s", n, logs)
	}
	waitFor(t, "in-flight counts back to zero", func() bool {
		return r.InFlight(dead) == 0 && r.InFlight(live) == 0
	})
}

func TestUpgradeRetry(t *testing.T) {
	r, front, _ := newTestRouter(t)
	dead := deadAddr(t)
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{dead, u})

	conn, br := dialUpgrade(t, front, "ws.test") // first pick is dead
	echoRoundTrip(t, conn, br, "retried")
	if n := r.InFlight(u); n != 1 {
		t.Errorf("InFlight(live) = %d, want 1", n)
	}
	conn.Close()
	waitFor(t, "in-flight counts back to zero", func() bool {
		return r.InFlight(dead) == 0 && r.InFlight(u) == 0
	})
}

func TestUpstreamDown502(t *testing.T) {
	r, front, logs := newTestRouter(t)
	dead := deadAddr(t)
	r.Set("app", []string{"app.test"}, []string{dead})

	resp, body := do(t, nil, front, "POST", "app.test", "/", "data")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if !strings.Contains(body, "<code>app</code> is not responding") {
		t.Errorf("unexpected 502 page %q", body)
	}
	l := logs.String()
	if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "app=app") || !strings.Contains(l, "target="+dead) {
		t.Errorf("upstream error not logged with app and target: %s", l)
	}
	if r.InFlight(dead) != 0 {
		t.Errorf("InFlight = %d", r.InFlight(dead))
	}
}

func TestClientCancelIsQuiet(t *testing.T) {
	r, front, logs := newTestRouter(t)
	backendDone := make(chan struct{}, 2)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() { backendDone <- struct{}{} }()
		if req.URL.Path == "/stream" {
			_, _ = io.WriteString(w, "first chunk\n")
			http.NewResponseController(w).Flush()
		}
		select {
		case <-req.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	addr := slow.Listener.Addr().String()
	r.Set("app", []string{"app.test"}, []string{addr})

	// Cancelled while waiting for the response headers.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL+"/wait", nil)
	req.Host = "app.test"
	if resp, err := front.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request unexpectedly succeeded")
	}

	// Cancelled in the middle of the response body.
	ctx2, cancel2 := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx2, "GET", front.URL+"/stream", nil)
	req.Host = "app.test"
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first chunk\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	cancel2()
	resp.Body.Close()

	for range 2 {
		select {
		case <-backendDone:
		case <-time.After(5 * time.Second):
			t.Fatal("backend request not cancelled")
		}
	}
	waitFor(t, "requests released", func() bool { return r.InFlight(addr) == 0 })
	time.Sleep(20 * time.Millisecond)
	if l := logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Errorf("client cancellation logged as a problem:\n%s", l)
	}
}

func TestBufferPool(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != bufferSize {
		t.Fatalf("len %d", len(b))
	}
	p.Put(b)
	p.Put(make([]byte, 10)) // too small: dropped
	if b := p.Get(); len(b) != bufferSize {
		t.Fatalf("len %d", len(b))
	}
}

// discardWriter is a minimal reusable http.ResponseWriter.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func benchRouter(b *testing.B) *Router {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello from the backend\n"))
	}))
	b.Cleanup(backend.Close)
	r := New(Options{Logger: slog.New(slog.DiscardHandler)})
	b.Cleanup(r.transport.CloseIdleConnections)
	r.Set("bench", []string{"bench.test"}, []string{backend.Listener.Addr().String()})
	return r
}

// BenchmarkServeHTTP measures one proxied request through the router to a
// local keep-alive backend, with allocations.
func BenchmarkServeHTTP(b *testing.B) {
	r := benchRouter(b)
	req := httptest.NewRequest("GET", "http://bench.test/path?q=1", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		r.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkServeHTTPParallel is BenchmarkServeHTTP from GOMAXPROCS
// goroutines at once.
func BenchmarkServeHTTPParallel(b *testing.B) {
	r := benchRouter(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://bench.test/path?q=1", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			r.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
}

func TestWildcardHost(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "wild") }))
	defer backend.Close()
	r := New(Options{})
	r.Set("w", []string{"*.example.test", "exact.example.test"}, []string{strings.TrimPrefix(backend.URL, "http://")})
	for host, want := range map[string]int{"a.example.test": 200, "B.example.test:80": 200, "exact.example.test": 200, "a.b.example.test": 404, "example.test": 404} {
		req := httptest.NewRequest("GET", "http://"+host+"/", nil)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", host, rec.Code, want)
		}
	}
}
