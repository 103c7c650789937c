package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// rawUpstream answers each request with reply(method, n), n counting the
// requests it saw.
func rawUpstream(t *testing.T, reply func(method string, n int64) string) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var count atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					c.Write([]byte(reply(req.Method, count.Add(1))))
				}
			}()
		}
	}()
	return ln.Addr().String(), &count
}

// An answer the Front does not parse itself (a head larger than its
// buffer, an interim 103) is relayed from the same exchange: the app sees
// the request once.
func TestFrontNeverSendsARequestTwice(t *testing.T) {
	big := strings.Repeat("x", 5000)
	for name, answer := range map[string]string{
		"large head":    "HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\nContent-Length: 2\r\n\r\nok",
		"early hints":   "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"bare LF heads": "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	} {
		addr, count := rawUpstream(t, func(string, int64) string { return answer })
		r := New(Options{})
		r.Set("app", []string{"app.test"}, []string{addr})
		_, fa := newTestFront(t, r, nil)
		out := rawExchange(t, fa, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200 OK") || !strings.HasSuffix(out, "ok") {
			t.Errorf("%s: client got %q", name, out)
		}
		if n := count.Load(); n != 1 {
			t.Errorf("%s: the app saw %d requests for one", name, n)
		}
	}
}

// An app that sends a body on a HEAD answer must not have those bytes
// taken for the next client's answer, on the Front or the fast path.
func TestNoStaleBytesAcrossRequests(t *testing.T) {
	pad := "X-Pad: " + strings.Repeat("p", 5000) + "\r\n" // too big for the Front: the fast path serves it
	for name, tc := range map[string]struct{ head, get string }{
		"front":         {"HEAD / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"},
		"fast HTTP/1.0": {"HEAD / HTTP/1.0\r\nHost: app.test\r\n\r\n", "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n"},
		"fast large":    {"HEAD / HTTP/1.1\r\nHost: app.test\r\n" + pad + "Connection: close\r\n\r\n", "GET / HTTP/1.1\r\nHost: app.test\r\n" + pad + "Connection: close\r\n\r\n"},
	} {
		addr, _ := rawUpstream(t, func(m string, n int64) string {
			if m == "HEAD" {
				stale := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTALE!"
				return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(stale), stale)
			}
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nreq-%03d", n)
		})
		r := New(Options{})
		r.Set("app", []string{"app.test"}, []string{addr})
		_, fa := newTestFront(t, r, nil)
		rawExchange(t, fa, tc.head)
		if out := rawExchange(t, fa, tc.get); strings.Contains(out, "STALE") || !strings.Contains(out, "req-") {
			t.Errorf("%s: second client got %q", name, out)
		}
	}
}
