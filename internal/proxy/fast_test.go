package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestFastPathChunkedUploadAndHopHeaders(t *testing.T) {
	r, front, _ := newTestRouter(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not reach the client")
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprintf(w, "len=%d te=%v cl=%d xfoo=%q secret=%q conn=%q", len(body), req.TransferEncoding, req.ContentLength,
			req.Header.Get("X-Foo"), req.Header.Get("X-Secret"), req.Header.Get("Connection"))
	}))
	defer backend.Close()
	r.Set("app", []string{"app.test"}, []string{backend.Listener.Addr().String()})

	// A body of unknown length is sent chunked; headers named in
	// Connection are hop-by-hop.
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			pw.Write([]byte(strings.Repeat("x", 1000)))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", front.URL+"/up", pr)
	req.Host = "app.test"
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "hop")
	req.Header.Set("X-Foo", "kept")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `len=3000 te=[chunked] cl=-1 xfoo="kept" secret="" conn=""`
	if string(body) != want {
		t.Errorf("backend saw %s, want %s", body, want)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive", "Connection"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop response header %s: %q reached the client", h, v)
		}
	}
}

func TestFastPathHeadAndEmptyPost(t *testing.T) {
	r, front, _ := newTestRouter(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", "11")
		w.Header().Set("X-Method", req.Method)
		w.Header().Set("X-CL", fmt.Sprint(req.ContentLength))
		if req.Method != http.MethodHead {
			io.WriteString(w, "hello world")
		}
	}))
	defer backend.Close()
	r.Set("app", []string{"app.test"}, []string{backend.Listener.Addr().String()})
	for range 3 { // over the same pooled upstream connection
		resp, body := do(t, nil, front, "HEAD", "app.test", "/", "")
		if resp.StatusCode != 200 || body != "" || resp.ContentLength != 11 || resp.Header.Get("X-Method") != "HEAD" {
			t.Fatalf("HEAD: %d %q cl=%d %v", resp.StatusCode, body, resp.ContentLength, resp.Header)
		}
		req, _ := http.NewRequest("POST", front.URL+"/", http.NoBody)
		req.Host = "app.test"
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello world" || resp.Header.Get("X-CL") != "0" {
			t.Fatalf("empty POST: %q %v", b, resp.Header)
		}
	}
}

func TestFastPathTrailersAndEarlyHints(t *testing.T) {
	r, front, _ := newTestRouter(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	}))
	defer backend.Close()
	r.Set("app", []string{"app.test"}, []string{backend.Listener.Addr().String()})

	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\n\r\n")
	br := bufio.NewReader(conn)
	hints, err := http.ReadResponse(br, nil)
	if err != nil || hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") == "" {
		t.Fatalf("early hints: %v %v", hints, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("got %d %q trailer %v", resp.StatusCode, body, resp.Trailer)
	}
}

// TestFastPathStaleConnection: an upstream that closes a keep-alive
// connection after each response is retried on a new connection, not
// answered with 502.
func TestFastPathStaleConnection(t *testing.T) {
	r, front, logs := newTestRouter(t)
	var served atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				n := served.Add(1)
				// Keep-alive is promised, but the connection closes
				// right after the response.
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d", n%100)
			}()
		}
	}()
	r.Set("app", []string{"app.test"}, []string{ln.Addr().String()})
	for i := range 5 {
		resp, body := do(t, nil, front, "GET", "app.test", "/", "")
		if resp.StatusCode != 200 || len(body) != 2 {
			t.Fatalf("request %d: %d %q\n%s", i, resp.StatusCode, body, logs)
		}
	}
}

func TestFastPathQueryKeptOrCleaned(t *testing.T) {
	for q, ok := range map[string]bool{"": true, "a=1&b=%20": true, "a=1;b=2": false, "a=%zz": false, "a=%2": false} {
		if got := queryIsClean(q); got != ok {
			t.Errorf("queryIsClean(%q) = %v, want %v", q, got, ok)
		}
	}
}

// rawBackend answers every request on a connection with the next of
// responses (raw bytes), keeping the connection open unless the response
// says otherwise, and counts connections.
func rawBackend(t testing.TB, responses ...string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns, served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					n := served.Add(1) - 1
					resp := responses[int(n)%len(responses)]
					io.WriteString(c, resp)
					if strings.Contains(resp, "Connection: close") || strings.HasPrefix(resp, "HTTP/1.0") {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

func TestFastPathResponseHeads(t *testing.T) {
	cases := []struct {
		name, resp, method string
		code               int
		body               string
		header             http.Header
		reuse              bool
	}{
		{"simple", "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nX-A:  1 \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello",
			"GET", 200, "hello", http.Header{"Content-Type": {"text/plain"}, "X-A": {"1"}, "Set-Cookie": {"a=1", "b=2"}}, true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: x\r\nContent-Length: 2\r\n\r\nok",
			"GET", 200, "ok", http.Header{"X-Hop": nil}, false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD", 200, "", http.Header{"Content-Length": {"1000"}}, true},
		{"no content", "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n", "GET", 204, "", http.Header{"X-B": {"2"}}, true},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET", 201, "abc", nil, true},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", 200, "ok", nil, false},
		{"until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", "GET", 200, "all of it", nil, false},
		{"big head", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 6000) + "\r\nContent-Length: 2\r\n\r\nok", "GET", 200, "ok", nil, true},
		{"bare lf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "GET", 200, "ok", nil, true},
		{"status 500", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", "GET", 500, "oops", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, front, _ := newTestRouter(t)
			addr, conns := rawBackend(t, c.resp)
			r.Set("app", []string{"app.test"}, []string{addr})
			for i := range 3 {
				resp, body := do(t, nil, front, c.method, "app.test", "/", "")
				if resp.StatusCode != c.code || body != c.body {
					t.Fatalf("#%d: %d %q, want %d %q", i, resp.StatusCode, body, c.code, c.body)
				}
				for k, want := range c.header {
					if got := resp.Header[k]; fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("#%d: header %s = %q, want %q", i, k, got, want)
					}
				}
			}
			if n := conns.Load(); (n == 1) != c.reuse {
				t.Errorf("%d upstream connections for 3 requests (reuse expected: %v)", n, c.reuse)
			}
		})
	}
}

func TestFastPathShortBodyAborts(t *testing.T) {
	r, front, _ := newTestRouter(t)
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
	r.Set("app", []string{"app.test"}, []string{ln.Addr().String()})
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Host = "app.test"
	resp, err := front.Client().Do(req)
	if err != nil {
		return // the connection was dropped before the head: fine too
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a truncated upstream body reached the client as complete")
	}
}

func TestFastPathHTTP2(t *testing.T) {
	r := New(Options{})
	_, a := echoBackend(t, "a")
	r.Set("app", []string{"app.test"}, []string{a})
	front := httptest.NewUnstartedServer(r)
	front.EnableHTTP2 = true
	front.StartTLS()
	defer front.Close()
	client := front.Client()
	for _, body := range []string{"", "posted over h2"} {
		method := "GET"
		if body != "" {
			method = "POST"
		}
		resp, got := do(t, client, front, method, "app.test", "/h2?x=1", body)
		if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 {
			t.Fatalf("%s: %s %d", method, resp.Proto, resp.StatusCode)
		}
		e := decodeEcho(t, got)
		if e.URI != "/h2?x=1" || e.Body != body || e.XFProto != "https" || e.Host != "app.test" {
			t.Errorf("%s: backend saw %+v", method, e)
		}
	}
}
