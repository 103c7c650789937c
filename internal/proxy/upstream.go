package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// addrStats is the accounting of one upstream address, shared by every
// target (across tables and apps) with that address.
type addrStats struct {
	// inflight counts requests being proxied to the address, including
	// upgraded connections, which stay counted until they close.
	inflight atomic.Int64

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // open upstream connections
	// idle holds the fast path's keep-alive connections, most recently
	// used last; sweeper closes those idle too long.
	idle    []*upConn
	sweeper *time.Timer
}

func (s *addrStats) acquire() { s.inflight.Add(1) }
func (s *addrStats) release() { s.inflight.Add(-1) }

func (s *addrStats) addConn(c *trackedConn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*trackedConn]struct{})
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *addrStats) removeConn(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *addrStats) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeConns closes every open upstream connection to the address, idle,
// busy or upgraded, and returns how many it closed.
func (s *addrStats) closeConns() int {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// statsLocked returns the stats of addr, creating them. r.mu must be held.
func (r *Router) statsLocked(addr string) *addrStats {
	s := r.stats[addr]
	if s == nil {
		s = &addrStats{}
		r.stats[addr] = s
	}
	return s
}

// gcStatsLocked forgets the stats of addresses that are neither routed by tbl
// nor in use. r.mu must be held.
//
// A request may still increment forgotten stats if it read an older table,
// but it then sees its app retired and releases them at once (see
// Router.acquire), so no request is ever proxied while counted only there.
func (r *Router) gcStatsLocked(tbl *table) {
	live := routedAddrs(tbl)
	for addr, s := range r.stats {
		if _, ok := live[addr]; ok {
			continue
		}
		if s.inflight.Load() == 0 && s.connCount() == 0 {
			delete(r.stats, addr)
		}
	}
}

// trackedConn is an upstream connection registered with its address's stats,
// so Drain can close it.
type trackedConn struct {
	net.Conn
	stats  *addrStats
	closed atomic.Bool
}

// Close unregisters and closes the connection. It is safe to call twice.
func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.stats.removeConn(c)
	}
	return c.Conn.Close()
}

// dialContext is the DialContext of the shared transport. Dial errors are
// returned unwrapped (a *net.OpError with Op "dial") so RoundTrip can tell
// them apart from errors after the request was sent.
func (r *Router) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := r.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	s := r.statsLocked(addr)
	r.mu.Unlock()
	tc := &trackedConn{Conn: c, stats: s}
	s.addConn(tc)
	return tc, nil
}

// RoundTrip sends req to t through the shared transport. If dialing t fails,
// nothing was sent, so the request (body included, see target.rewrite) is
// sent once more to the next target of the same app, if it has another one.
func (t *target) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.router.transport.RoundTrip(req)
	if err == nil || !isDialError(err) || req.Context().Err() != nil {
		return resp, err
	}
	if req.Body != nil {
		if b, ok := req.Body.(*replayableBody); !ok || b.wasRead() {
			return nil, err
		}
	}
	n := t.router.acquireRetry(t)
	if n == nil {
		return nil, err
	}
	t.router.logger.Warn("proxy: dial failed, retrying on next target",
		"app", t.app.name, "target", t.addr, "next", n.addr, "err", err)

	retry := req.Clone(req.Context())
	retry.URL.Host = n.addr
	resp, err = t.router.transport.RoundTrip(retry)
	if err != nil {
		n.stats.release()
		return nil, fmt.Errorf("retry on %s: %w", n.addr, err)
	}
	// The request stays counted against t until ServeHTTP returns (t does
	// not accept connections, so that is harmless); it is counted against n
	// until the response body, or the upgraded connection, is closed.
	resp.Body = releaseOnClose(resp.Body, n.stats)
	return resp, nil
}

// acquireRetry picks, from the current routes of failed's app, the target
// after failed whose address differs from failed's, counting a request in
// flight to it. It returns nil if there is none.
func (r *Router) acquireRetry(failed *target) *target {
	for range maxAcquireAttempts {
		tbl := r.table.Load()
		app := tbl.apps[failed.app.name]
		if failed.app.port != 0 {
			app = tbl.ports[failed.app.port]
		}
		if app == nil || len(app.targets) == 0 {
			return nil
		}
		start := int(app.rr.Load())
		for i, c := range app.targets {
			if c.addr == failed.addr {
				start = i + 1
				break
			}
		}
		var next *target
		for k := range len(app.targets) {
			if c := app.targets[(start+k)%len(app.targets)]; c.addr != failed.addr {
				next = c
				break
			}
		}
		if next == nil {
			return nil
		}
		next.stats.acquire()
		if !app.retired.Load() {
			return next
		}
		next.stats.release()
	}
	return nil
}

// isDialError reports whether err comes from failing to connect, i.e.
// before any byte of the request was written.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayableBody wraps an outbound request body so that the transport's
// Close after a failed dial does not make it unreadable, and records whether
// it was read at all.
type replayableBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *replayableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

// Close does nothing: ReverseProxy closes the wrapped body itself when it is
// done with the request.
func (b *replayableBody) Close() error { return nil }

func (b *replayableBody) wasRead() bool { return b.read.Load() }

// releaseBody releases a request count when the response body is closed.
type releaseBody struct {
	io.ReadCloser
	stats *addrStats
	done  atomic.Bool
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	if b.done.CompareAndSwap(false, true) {
		b.stats.release()
	}
	return err
}

// releaseConn is a releaseBody for 101 responses, whose body is the upgraded
// connection and must stay writable.
type releaseConn struct {
	releaseBody
	w io.Writer
}

func (b *releaseConn) Write(p []byte) (int, error) { return b.w.Write(p) }

// releaseOnClose wraps body so that closing it releases one request counted
// in s.
func releaseOnClose(body io.ReadCloser, s *addrStats) io.ReadCloser {
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &releaseConn{releaseBody: releaseBody{ReadCloser: body, stats: s}, w: rwc}
	}
	return &releaseBody{ReadCloser: body, stats: s}
}

// bufferPool is the httputil.BufferPool of every ReverseProxy: 32 KiB
// buffers, recycled without allocating (the pool stores array pointers).
type bufferPool struct {
	pool sync.Pool
}

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[bufferSize]byte); ok {
		return b[:]
	}
	return new([bufferSize]byte)[:]
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) < bufferSize {
		return
	}
	p.pool.Put((*[bufferSize]byte)(b[:bufferSize]))
}
