package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Listener schemes of [Listeners].
const (
	SchemeHTTP = "http"
	SchemeTCP  = "tcp"
)

// portCloseGrace is how long in-flight requests of an extra HTTP listener
// may take to finish once its mapping is removed.
const portCloseGrace = 10 * time.Second

// Listeners owns the extra listeners of port mappings: on each host port
// either an HTTP server whose requests all go to one app
// ([Router.PortHandler]), or a raw TCP proxy to that app's targets. What a
// port routes to is set with [Router.SetPort]; Listeners only opens and
// closes the sockets. All methods are safe for concurrent use.
type Listeners struct {
	router *Router
	host   string
	logger *slog.Logger

	mu     sync.Mutex
	open   map[int]*portListener
	closed bool
}

// NewListeners returns a manager opening its listeners on host (an IP
// address, or "" for every interface) and proxying through r.
func NewListeners(r *Router, host string) *Listeners {
	return &Listeners{router: r, host: host, logger: r.logger, open: map[int]*portListener{}}
}

// Addr returns the address a listener on port binds.
func (l *Listeners) Addr(port int) string {
	return net.JoinHostPort(l.host, strconv.Itoa(port))
}

// portListener is one open host port.
type portListener struct {
	app    string
	scheme string
	port   int
	ln     net.Listener
	srv    *http.Server // SchemeHTTP, behind front
	front  *Front

	// SchemeTCP: the accepted client connections, closed with the
	// listener; ctx ends pending dials.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Open makes sure port is open with scheme (SchemeHTTP or SchemeTCP) for
// app. A port already open with that scheme is handed over to app; one
// open with the other scheme is closed and opened again. The error of a
// failed listen names the address.
func (l *Listeners) Open(app, scheme string, port int) error {
	if scheme != SchemeHTTP && scheme != SchemeTCP {
		return fmt.Errorf("open port %d: unknown scheme %q", port, scheme)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("the server is shutting down")
	}
	if cur := l.open[port]; cur != nil {
		if cur.scheme == scheme {
			cur.app = app
			return nil
		}
		delete(l.open, port)
		cur.close(context.Background())
	}
	ln, err := net.Listen("tcp", l.Addr(port))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", l.Addr(port), err)
	}
	pl := &portListener{app: app, scheme: scheme, port: port, ln: ln}
	if scheme == SchemeHTTP {
		pl.srv = &http.Server{
			Handler:           l.router.PortHandler(port),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(l.logger.Handler(), slog.LevelDebug),
		}
		pl.front = NewFront(l.router, nil, pl.srv)
		pl.front.port = port
		go func() {
			if err := pl.front.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.logger.Warn("proxy: port listener stopped", "port", port, "err", err)
			}
		}()
	} else {
		pl.ctx, pl.cancel = context.WithCancel(context.Background())
		pl.conns = map[net.Conn]struct{}{}
		go pl.serveTCP(l.router)
	}
	l.open[port] = pl
	l.logger.Info("proxy: port listening", "app", app, "scheme", scheme, "addr", ln.Addr().String())
	return nil
}

// Close closes the listener on port, if open: TCP connections through it
// are closed at once, HTTP requests in flight get a short grace period.
func (l *Listeners) Close(port int) {
	l.mu.Lock()
	pl := l.open[port]
	delete(l.open, port)
	l.mu.Unlock()
	if pl != nil {
		pl.close(context.Background())
		l.logger.Info("proxy: port closed", "app", pl.app, "scheme", pl.scheme, "port", port)
	}
}

// Ports returns the open ports of app (every open port for ""), sorted.
func (l *Listeners) Ports(app string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for port, pl := range l.open {
		if app == "" || pl.app == app {
			out = append(out, port)
		}
	}
	slices.Sort(out)
	return out
}

// Scheme returns the scheme port is open with, "" when it is not open.
func (l *Listeners) Scheme(port int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pl := l.open[port]; pl != nil {
		return pl.scheme
	}
	return ""
}

// CloseAll closes every listener and refuses to open new ones; HTTP
// requests in flight may finish until ctx is done.
func (l *Listeners) CloseAll(ctx context.Context) {
	l.mu.Lock()
	l.closed = true
	open := l.open
	l.open = map[int]*portListener{}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, pl := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl.close(ctx)
		}()
	}
	wg.Wait()
}

// close stops accepting, then ends the listener's connections.
func (pl *portListener) close(ctx context.Context) {
	if pl.srv != nil {
		ctx, cancel := context.WithTimeout(ctx, portCloseGrace)
		defer cancel()
		if err := pl.front.Shutdown(ctx); err != nil {
			_ = pl.srv.Close()
		}
		return
	}
	pl.cancel()
	_ = pl.ln.Close()
	pl.mu.Lock()
	for c := range pl.conns {
		_ = c.Close()
	}
	pl.mu.Unlock()
	pl.wg.Wait()
}

// serveTCP accepts connections until the listener is closed.
func (pl *portListener) serveTCP(r *Router) {
	var backoff time.Duration
	for {
		c, err := pl.ln.Accept()
		if err != nil {
			if pl.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.logger.Warn("proxy: tcp accept failed", "port", pl.port, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		pl.mu.Lock()
		if pl.ctx.Err() != nil {
			pl.mu.Unlock()
			_ = c.Close()
			return
		}
		pl.conns[c] = struct{}{}
		pl.wg.Add(1)
		pl.mu.Unlock()
		go func() {
			defer pl.wg.Done()
			r.ServeTCP(pl.ctx, pl.port, c)
			pl.mu.Lock()
			delete(pl.conns, c)
			pl.mu.Unlock()
		}()
	}
}

// ServeTCP proxies the client connection c, accepted on host port port, to
// a target of the app routed there (round robin; on a dial failure the next
// target is tried). The connection counts as in flight to its target until
// it closes, so [Router.Drain] waits for it and, when its context ends
// first, closes it. c is closed when ServeTCP returns.
func (r *Router) ServeTCP(ctx context.Context, port int, c net.Conn) {
	defer c.Close()
	app, t := r.acquirePort(port)
	if app == nil || t == nil {
		r.logger.Debug("proxy: tcp connection without target", "port", port, "routed", app != nil)
		return
	}
	for {
		up, err := r.dialContext(ctx, "tcp", t.addr)
		if err == nil {
			pipeConns(c, up)
			_ = up.Close()
			t.stats.release()
			return
		}
		n := r.acquireRetry(t)
		if n == nil || ctx.Err() != nil {
			if n != nil {
				n.stats.release()
			}
			if ctx.Err() == nil {
				r.logger.Warn("proxy: tcp upstream unreachable", "app", app.name, "port", port, "target", t.addr, "err", err)
			}
			t.stats.release()
			return
		}
		r.logger.Warn("proxy: dial failed, retrying on next target",
			"app", app.name, "port", port, "target", t.addr, "next", n.addr, "err", err)
		t.stats.release()
		t = n
	}
}

// pipeConns copies a to b and b to a until both directions end. An EOF on
// one side half-closes the other (so a client's shutdown(SHUT_WR) reaches
// the app); an error on either closes both.
func pipeConns(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(b, a)
	}()
	copyHalf(a, b)
	<-done
}

// copyHalf copies src to dst. TCP to TCP copies use splice(2) (the
// connections are unwrapped so net.TCPConn.ReadFrom sees both).
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(rawConn(dst), rawConn(src))
	if err != nil {
		_ = dst.Close()
		_ = src.Close()
		return
	}
	if cw, ok := rawConn(dst).(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	_ = dst.Close()
}

// rawConn returns the net.Conn under a tracked upstream connection.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*trackedConn); ok {
		return tc.Conn
	}
	return c
}
