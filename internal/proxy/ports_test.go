package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tcpEcho starts a line echo server answering "NAME:LINE".
func tcpEcho(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, name+":"+line)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newTestListeners(t testing.TB) (*Router, *Listeners, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	r := New(Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	l := NewListeners(r, "127.0.0.1")
	t.Cleanup(func() { l.CloseAll(context.Background()) })
	return r, l, logs
}

func echoLine(t testing.TB, c net.Conn, br *bufio.Reader, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func dialPort(t testing.TB, port int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestTCPSwapAndDrain(t *testing.T) {
	r, l, _ := newTestListeners(t)
	a, b := tcpEcho(t, "a"), tcpEcho(t, "b")
	port := freePort(t)
	if err := l.Open("app", SchemeTCP, port); err != nil {
		t.Fatal(err)
	}
	r.SetPort(port, "app", []string{a})
	old, oldR := dialPort(t, port)
	if got := echoLine(t, old, oldR, "one"); got != "a:one" {
		t.Fatalf("got %q", got)
	}
	if n := r.InFlight(a); n != 1 {
		t.Fatalf("InFlight(a) = %d, want 1", n)
	}

	// Deploy: new connections go to b, the open one stays on a.
	r.SetPort(port, "app", []string{b})
	c2, r2 := dialPort(t, port)
	if got := echoLine(t, c2, r2, "two"); got != "b:two" {
		t.Fatalf("got %q", got)
	}
	if got := echoLine(t, old, oldR, "still"); got != "a:still" {
		t.Fatalf("got %q", got)
	}

	// Retire a: the drain waits for the open connection, then closes it.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Drain(ctx, []string{a})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("Drain = %v after %s, want a timeout", err, time.Since(start))
	}
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := oldR.ReadString('\n'); err == nil {
		t.Fatal("the drained connection is still open")
	}
	waitFor(t, "a released", func() bool { return r.InFlight(a) == 0 })
	if got := echoLine(t, c2, r2, "three"); got != "b:three" {
		t.Fatalf("got %q", got)
	}
}

func TestTCPDrainSucceedsWhenClientsLeave(t *testing.T) {
	r, l, _ := newTestListeners(t)
	a, b := tcpEcho(t, "a"), tcpEcho(t, "b")
	port := freePort(t)
	if err := l.Open("app", SchemeTCP, port); err != nil {
		t.Fatal(err)
	}
	r.SetPort(port, "app", []string{a})
	c, br := dialPort(t, port)
	echoLine(t, c, br, "x")
	r.SetPort(port, "app", []string{b})
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Drain(ctx, []string{a}); err != nil {
		t.Fatal(err)
	}
}

func TestTCPRetryAndNoTargets(t *testing.T) {
	r, l, logs := newTestListeners(t)
	live := tcpEcho(t, "live")
	port := freePort(t)
	if err := l.Open("app", SchemeTCP, port); err != nil {
		t.Fatal(err)
	}
	r.SetPort(port, "app", []string{deadAddr(t), live})
	for i := range 4 {
		c, br := dialPort(t, port)
		if got := echoLine(t, c, br, "hi"); got != "live:hi" {
			t.Fatalf("#%d: got %q", i, got)
		}
		c.Close()
	}
	if !strings.Contains(logs.String(), "retrying on next target") {
		t.Errorf("no retry logged: %s", logs)
	}

	// No running target: the connection is closed at once.
	r.SetPort(port, "app", nil)
	c, br := dialPort(t, port)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read = %v, want EOF", err)
	}
}

func TestTCPCloseEndsConnections(t *testing.T) {
	r, l, _ := newTestListeners(t)
	a := tcpEcho(t, "a")
	port := freePort(t)
	if err := l.Open("app", SchemeTCP, port); err != nil {
		t.Fatal(err)
	}
	r.SetPort(port, "app", []string{a})
	c, br := dialPort(t, port)
	echoLine(t, c, br, "x")
	l.Close(port)
	r.RemovePort(port)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after Close")
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		t.Fatal("port still accepts connections after Close")
	}
	waitFor(t, "a released", func() bool { return r.InFlight(a) == 0 })
}

func TestHTTPPortListener(t *testing.T) {
	r, l, _ := newTestListeners(t)
	_, a := echoBackend(t, "a")
	port := freePort(t)
	if err := l.Open("app", SchemeHTTP, port); err != nil {
		t.Fatal(err)
	}
	r.SetPort(port, "app", []string{a})
	// Any Host header: the port belongs to one app.
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/p?q=1", nil)
	req.Host = "anything.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := decodeEcho(t, string(body))
	if e.Backend != "a" || e.URI != "/p?q=1" || e.Host != "anything.test" {
		t.Fatalf("backend saw %+v", e)
	}
	if got := r.PortRoutes()[port]; got.Hosts[0] != "app" || got.Targets[0] != a {
		t.Fatalf("PortRoutes = %+v", got)
	}
	// Reopening the same port with the other scheme replaces it.
	if err := l.Open("app", SchemeTCP, port); err != nil {
		t.Fatal(err)
	}
	if s := l.Scheme(port); s != SchemeTCP {
		t.Fatalf("scheme %q", s)
	}
	if got := l.Ports("app"); len(got) != 1 || got[0] != port {
		t.Fatalf("Ports = %v", got)
	}
}

func TestOpenBusyPort(t *testing.T) {
	_, l, _ := newTestListeners(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	err = l.Open("app", SchemeTCP, port)
	if err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("Open on a busy port = %v", err)
	}
}
