package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// newTestFront serves r (behind edge, if not nil) through a Front on a
// loopback port and returns its address.
func newTestFront(t testing.TB, r *Router, edge *Edge) (*Front, string) {
	t.Helper()
	var h http.Handler = r
	if edge != nil {
		h = edge.HTTP()
	}
	fb := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	f := NewFront(r, edge, fb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		r.transport.CloseIdleConnections()
	})
	return f, ln.Addr().String()
}

// rawExchange writes req on a new connection and returns everything read
// until the server closes it or 2 s pass.
func rawExchange(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func frontGet(t testing.TB, client *http.Client, addr, method, host, path, body string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, rd)
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func TestFrontProxiesAndFallsBack(t *testing.T) {
	r := New(Options{})
	_, a := echoBackend(t, "a")
	r.Set("app", []string{"app.test"}, []string{a})
	r.Set("empty", []string{"empty.test"}, nil)
	r.Set("down", []string{"down.test"}, []string{deadAddr(t)})
	_, addr := newTestFront(t, r, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()

	// GET and HEAD on the fast path, over one keep-alive connection.
	for i := range 3 {
		resp, body := frontGet(t, client, addr, "GET", "App.test:80", fmt.Sprintf("/p%d?q=1", i), "",
			http.Header{"X-Forwarded-For": {"6.6.6.6"}, "Connection": {"X-Secret"}, "X-Secret": {"hop"}})
		if resp.StatusCode != 200 {
			t.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		want := echo{Backend: "a", Host: "App.test:80", URI: fmt.Sprintf("/p%d?q=1", i), XFF: "127.0.0.1", XFHost: "App.test:80", XFProto: "http"}
		if e != want {
			t.Errorf("backend saw %+v, want %+v", e, want)
		}
	}
	resp, body := frontGet(t, client, addr, "HEAD", "app.test", "/", "", nil)
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	// A body goes to the fallback server, on the same connection.
	resp, body = frontGet(t, client, addr, "POST", "app.test", "/post", "payload", nil)
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Body != "payload" || e.XFF != "127.0.0.1" {
		t.Errorf("POST: %d %+v", resp.StatusCode, e)
	}
	resp, body = frontGet(t, client, addr, "GET", "app.test", "/after-post", "", nil)
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.URI != "/after-post" {
		t.Errorf("GET after a hand-over: %d %+v", resp.StatusCode, e)
	}

	// 404, 502 pages and a failing upstream: the fallback's answers.
	fresh := &http.Client{Transport: &http.Transport{}}
	for host, want := range map[string]string{
		"nope.test":  "404 Not Found",
		"empty.test": "No running web process",
		"down.test":  "is not responding",
	} {
		resp, body := frontGet(t, fresh, addr, "GET", host, "/", "", nil)
		if resp.StatusCode != 404 && resp.StatusCode != 502 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q", host, resp.StatusCode, body)
		}
	}
	// A head larger than the Front's buffer.
	resp, body = frontGet(t, fresh, addr, "GET", "app.test", "/big", "", http.Header{"Cookie": {strings.Repeat("c", 6000)}})
	if resp.StatusCode != 200 || decodeEcho(t, body).URI != "/big" {
		t.Errorf("big head: %d %s", resp.StatusCode, body)
	}
	// Malformed requests get net/http's answer.
	if out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: app.test\r\nBad Header: x\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Errorf("malformed header: %q", out)
	}
	if out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Errorf("two Host headers: %q", out)
	}
	// Bare LF line ends are net/http's business (it accepts them).
	if out := rawExchange(t, addr, "GET /lf HTTP/1.1\nHost: app.test\nConnection: close\n\n"); !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, `"/lf"`) {
		t.Errorf("bare LF: %q", out)
	}
	waitFor(t, "requests released", func() bool { return r.InFlight(a) == 0 })
}

func TestFrontWebSocketUpgrade(t *testing.T) {
	r := New(Options{})
	_, u := upgradeBackend(t)
	r.Set("ws", []string{"ws.test"}, []string{u})
	_, addr := newTestFront(t, r, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	echoRoundTrip(t, c, br, "through the front")
}

func TestFrontResponseFraming(t *testing.T) {
	r := New(Options{})
	addr, _ := rawBackend(t,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
	)
	r.Set("app", []string{"app.test"}, []string{addr})
	_, front := newTestFront(t, r, nil)

	// Pipelined requests, answered in order on one connection.
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	r1, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(r1.Body)
	if string(b1) != "abc" || r1.Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked: %q trailer %v", b1, r1.Trailer)
	}
	r2, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil || r2.StatusCode != 204 || r2.Header.Get("X-A") != "1" {
		t.Fatalf("204: %v %v", r2, err)
	}
	r3, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := io.ReadAll(r3.Body)
	if string(b3) != "ok" || r3.Header.Get("X-Hop") != "" || r3.Header.Get("Keep-Alive") != "" || !r3.Close {
		t.Errorf("third: %q %v close=%v", b3, r3.Header, r3.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after Connection: close: %v", err)
	}
}

func TestFrontCloseDelimitedAndShortBodies(t *testing.T) {
	r := New(Options{})
	addr, _ := rawBackend(t, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
	r.Set("app", []string{"app.test"}, []string{addr})
	_, front := newTestFront(t, r, nil)
	out := rawExchange(t, front, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.Contains(out, "Connection: close\r\n") || !strings.HasSuffix(out, "\r\n\r\nuntil the end") {
		t.Errorf("close-delimited: %q", out)
	}

	short := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
		c.Close()
	}()
	short.Set("app", []string{"app.test"}, []string{ln.Addr().String()})
	_, front2 := newTestFront(t, short, nil)
	out = rawExchange(t, front2, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if strings.Count(out, "only this") > 1 || len(out) >= len("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")+100 {
		t.Errorf("short body: %q", out)
	}
}

func TestFrontEdgeAndShutdown(t *testing.T) {
	r := New(Options{})
	_, a := echoBackend(t, "a")
	r.Set("app", []string{"app.test", "secure.test"}, []string{a})
	e := NewEdge(r, 443, func(w http.ResponseWriter, req *http.Request) bool {
		io.WriteString(w, "challenge answered")
		return true
	})
	e.SetPolicy("app", HTTPSPolicy{Secure: []string{"secure.test"}, Redirect: true})
	f, addr := newTestFront(t, r, e)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if _, body := frontGet(t, client, addr, "GET", "app.test", "/.well-known/acme-challenge/tok", "", nil); body != "challenge answered" {
		t.Errorf("challenge: %q", body)
	}
	if resp, _ := frontGet(t, client, addr, "GET", "secure.test", "/x", "", nil); resp.StatusCode != 301 || resp.Header.Get("Location") != "https://secure.test/x" {
		t.Errorf("redirect: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := frontGet(t, client, addr, "GET", "app.test", "/x", "", nil); resp.StatusCode != 200 || decodeEcho(t, body).URI != "/x" {
		t.Errorf("routed: %d %s", resp.StatusCode, body)
	}

	// An idle keep-alive connection is closed by Shutdown.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("idle connection still open after Shutdown")
	}
}

func TestChunkSize(t *testing.T) {
	for in, want := range map[string]int64{"0\r\n": 0, "1a\r\n": 26, "FF;x=y\r\n": 255, "10 \r\n": 16} {
		if n, ok := chunkSize([]byte(in)); !ok || n != want {
			t.Errorf("chunkSize(%q) = %d %v", in, n, ok)
		}
	}
	for _, in := range []string{"\r\n", "x\r\n", "-1\r\n", "1234567890abcdef0\r\n", "12"} {
		if _, ok := chunkSize([]byte(in)); ok {
			t.Errorf("chunkSize(%q) accepted", in)
		}
	}
}

func TestFrontDrain(t *testing.T) {
	r := New(Options{})
	release := make(chan struct{})
	slow := newSlowBackend(t, release)
	_, b := echoBackend(t, "b")
	r.Set("app", []string{"app.test"}, []string{slow})
	_, addr := newTestFront(t, r, nil)
	got := make(chan string, 1)
	go func() {
		_, body := frontGet(t, &http.Client{}, addr, "GET", "app.test", "/slow", "", nil)
		got <- body
	}()
	waitFor(t, "request in flight", func() bool { return r.InFlight(slow) == 1 })
	r.Set("app", []string{"app.test"}, []string{b})
	drained := make(chan error, 1)
	go func() { drained <- r.Drain(context.Background(), []string{slow}) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-got; body != "slow done" {
		t.Errorf("body %q", body)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

// newSlowBackend answers "slow done" once release is closed.
func newSlowBackend(t testing.TB, release chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		io.WriteString(w, "slow done")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
