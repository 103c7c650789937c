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
