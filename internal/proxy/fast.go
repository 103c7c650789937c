package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"
)

// The fast path proxies plain HTTP/1.x and HTTP/2 requests (no protocol
// upgrade, no Expect, a query ReverseProxy would not rewrite) in the
// handler's own goroutine over a keep-alive HTTP/1.1 connection of its own
// pool: the request head is written by hand, the response head parsed (see
// head.go, or http.ReadResponse for the unusual ones) and the body copied
// with a pooled buffer. Compared with httputil.ReverseProxy over an
// http.Transport it saves the Transport's two goroutines per connection and
// their hand-offs, the cloned request and most per-request allocations. The
// other requests (WebSocket upgrades above all) keep going through the
// ReverseProxy of their target.

// Tuning of the fast path's upstream connections.
const (
	upstreamReadBuffer  = 4 << 10
	upstreamWriteBuffer = 4 << 10
)

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// upConn is one keep-alive upstream connection of the fast path.
type upConn struct {
	tc     *trackedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// body frames the current response body (reused, not allocated).
	body io.LimitedReader
}

func (c *upConn) close() { _ = c.tc.Close() }

// takeIdle pops the most recently used idle connection, or nil.
func (s *addrStats) takeIdle() *upConn {
	s.mu.Lock()
	for n := len(s.idle); n > 0; n = len(s.idle) {
		c := s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		if c.tc.closed.Load() {
			continue
		}
		s.mu.Unlock()
		return c
	}
	s.mu.Unlock()
	return nil
}

// putIdle returns a connection to the pool, closing it if the pool is full.
func (s *addrStats) putIdle(c *upConn) {
	c.idleAt = time.Now()
	s.mu.Lock()
	// Bytes left unread (a body on a HEAD, 204 or 304 answer, or more than
	// Content-Length said) would be taken for the next request's answer.
	if len(s.idle) >= maxIdleConnsPerHost || c.tc.closed.Load() || c.br.Buffered() > 0 {
		s.mu.Unlock()
		c.close()
		return
	}
	s.idle = append(s.idle, c)
	if s.sweeper == nil {
		s.sweeper = time.AfterFunc(idleConnTimeout, s.sweepIdle)
	}
	s.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idleConnTimeout and
// reschedules itself while the pool is not empty.
func (s *addrStats) sweepIdle() {
	cutoff := time.Now().Add(-idleConnTimeout)
	s.mu.Lock()
	var expired []*upConn
	kept := s.idle[:0]
	for _, c := range s.idle {
		if c.idleAt.Before(cutoff) || c.tc.closed.Load() {
			expired = append(expired, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(s.idle[len(kept):])
	s.idle = kept
	if len(s.idle) > 0 {
		s.sweeper.Reset(idleConnTimeout)
	} else {
		s.sweeper = nil
	}
	s.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// fastPathOK reports whether req can take the fast path.
func fastPathOK(req *http.Request) bool {
	if req.ProtoMajor != 1 && req.ProtoMajor != 2 {
		return false
	}
	h := req.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	if _, ok := h["Trailer"]; ok {
		return false
	}
	return queryIsClean(req.URL.RawQuery)
}

// queryIsClean reports whether ReverseProxy would forward the query
// untouched (it re-encodes queries with ';', bad escapes or too many
// parameters).
func queryIsClean(q string) bool {
	params := 1
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !ishex(q[i+1]) || !ishex(q[i+2]) {
				return false
			}
		case '&':
			params++
		}
	}
	return params <= 10000
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// errUpstreamClosed means a reused connection was closed by the upstream
// before it answered.
var errUpstreamClosed = errors.New("upstream closed the keep-alive connection")

// idempotent reports whether a request may be sent again after a
// connection failed under it (as net/http's Transport decides).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// serveFast proxies req to t on the fast path.
func (t *target) serveFast(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
	var body *bodyTracker
	if hasBody {
		body = &bodyTracker{r: req.Body}
	}
	cur := t
	freshOnly := false
	for attempt := 0; ; attempt++ {
		uc, reused, err := cur.conn(ctx, freshOnly)
		if err != nil {
			if isDialError(err) && ctx.Err() == nil && !body.wasRead() {
				if n := cur.router.acquireRetry(cur); n != nil {
					cur.router.logger.Warn("proxy: dial failed, retrying on next target",
						"app", cur.app.name, "target", cur.addr, "next", n.addr, "err", err)
					if cur != t {
						cur.stats.release()
					}
					cur = n
					continue
				}
			}
			cur.finishError(w, req, t, err)
			return
		}
		// A client that goes away interrupts the exchange.
		stop := context.AfterFunc(ctx, func() { _ = uc.tc.SetDeadline(aLongTimeAgo) })
		if err := cur.send(uc, req, hasBody, body); err != nil {
			stop()
			uc.close()
			if reused && !body.wasRead() && idempotent(req.Method) && ctx.Err() == nil && attempt < 2 {
				// The upstream closed an idle connection just as it
				// was reused: nothing was processed, try a new one.
				freshOnly = true
				continue
			}
			cur.finishError(w, req, t, err)
			return
		}
		if cur != t {
			defer cur.stats.release()
		}
		if cur.writeSimpleResponse(w, req, uc, stop) {
			return
		}
		resp, err := http.ReadResponse(uc.br, req)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			err = errors.New("upstream switched protocols without being asked to")
		}
		if err != nil {
			stop()
			uc.close()
			cur.errorHandler(w, req, fmt.Errorf("read response: %w", err))
			return
		}
		cur.writeResponse(w, req, uc, resp, stop)
		return
	}
}

// finishError answers a failed round trip and releases a retry target.
func (t *target) finishError(w http.ResponseWriter, req *http.Request, first *target, err error) {
	if t != first {
		t.stats.release()
	}
	t.errorHandler(w, req, err)
}

// conn returns an idle connection to t (reused true) or dials a new one.
func (t *target) conn(ctx context.Context, freshOnly bool) (*upConn, bool, error) {
	if !freshOnly {
		for {
			uc := t.stats.takeIdle()
			if uc == nil {
				break
			}
			// Every reuse peeks: a closed connection, or bytes that
			// arrived while it was idle, mean it cannot carry a request.
			if !connAlive(uc.tc.Conn) {
				uc.close()
				continue
			}
			return uc, true, nil
		}
	}
	c, err := t.router.dialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	tc := c.(*trackedConn)
	return &upConn{
		tc: tc,
		br: bufio.NewReaderSize(tc, upstreamReadBuffer),
		bw: bufio.NewWriterSize(tc, upstreamWriteBuffer),
	}, false, nil
}

// send writes req on uc and waits for the first byte of the response.
func (t *target) send(uc *upConn, req *http.Request, hasBody bool, body *bodyTracker) error {
	if err := t.writeRequest(uc.bw, req, hasBody, body); err != nil {
		return err
	}
	if err := uc.bw.Flush(); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	if _, err := uc.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			return errUpstreamClosed
		}
		return fmt.Errorf("read response: %w", err)
	}
	return nil
}

// cleanURI reports whether uri holds only bytes an HTTP/1.1 request line
// may carry.
func cleanURI(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// writeRequest writes the upstream request head and body to bw: the
// incoming request line and headers without hop-by-hop and client-supplied
// forwarding headers, the incoming Host, fresh X-Forwarded-For/-Host/-Proto
// (like nginx "proxy_set_header X-Forwarded-For $remote_addr").
func (t *target) writeRequest(bw *bufio.Writer, req *http.Request, hasBody bool, body *bodyTracker) error {
	uri := req.RequestURI
	if uri == "" || uri[0] != '/' || !cleanURI(uri) {
		// (HTTP/2 hands :path over as it came: re-encode what is not
		// safe on an HTTP/1.1 request line.)
		uri = req.URL.RequestURI()
	}
	host := req.Host
	if host == "" {
		host = t.addr
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	conn := req.Header["Connection"]
	for k, vv := range req.Header {
		if skipRequestHeader(k) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if te := req.Header["Te"]; len(te) > 0 && connectionListed(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	if req.Host != "" {
		bw.WriteString("X-Forwarded-Host: ")
		bw.WriteString(req.Host)
		bw.WriteString("\r\n")
	}
	if req.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	chunked := false
	switch {
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody && req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		chunked = true
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	if !hasBody {
		return nil
	}
	var dst io.Writer = bw
	var cw io.WriteCloser
	if chunked {
		cw = httputil.NewChunkedWriter(bw)
		dst = cw
	}
	buf := t.router.buffers.Get()
	defer t.router.buffers.Put(buf)
	n, err := copyBuf(dst, body, buf)
	if err != nil {
		return fmt.Errorf("send request body: %w", err)
	}
	if req.ContentLength > 0 && n != req.ContentLength {
		return fmt.Errorf("send request body: %d of %d bytes", n, req.ContentLength)
	}
	if chunked {
		if err := cw.Close(); err != nil {
			return fmt.Errorf("send request body: %w", err)
		}
		if _, err := bw.WriteString("\r\n"); err != nil {
			return fmt.Errorf("send request body: %w", err)
		}
	}
	return nil
}

// skipRequestHeader reports whether a header of an incoming request is not
// forwarded as is: Host and what skipForwarded names.
func skipRequestHeader(k string) bool {
	return k == "Host" || skipForwarded(k)
}

// connectionListed reports whether the comma-separated token lists of a
// header (Connection, TE) name k, case-insensitively.
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

// writeResponse copies resp to the client and recycles or closes uc. stop
// ends the watch on the client's context; a connection whose deadline the
// watch may have set is closed.
func (t *target) writeResponse(w http.ResponseWriter, req *http.Request, uc *upConn, resp *http.Response, stop func() bool) {
	h := w.Header()
	for resp.StatusCode < 200 {
		// 1xx informational: forward it, then read the final response.
		for k, vv := range resp.Header {
			if !hopByHop(k) {
				h[k] = vv
			}
		}
		w.WriteHeader(resp.StatusCode)
		clear(h)
		next, err := http.ReadResponse(uc.br, req)
		if err != nil || next.StatusCode == http.StatusSwitchingProtocols {
			stop()
			uc.close()
			if err == nil {
				err = errors.New("upstream switched protocols without being asked to")
			}
			t.errorHandler(w, req, fmt.Errorf("read response: %w", err))
			return
		}
		resp = next
	}
	conn := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if hopByHop(k) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	var dst io.Writer = w
	if resp.ContentLength == -1 || isEventStream(resp.Header) {
		// Unknown length (streamed) or server-sent events: flush every
		// write, like ReverseProxy does.
		dst = flushWriter{w: w, rc: http.NewResponseController(w)}
	}
	buf := t.router.buffers.Get()
	_, rerr, werr := copyResponse(dst, resp.Body, buf)
	t.router.buffers.Put(buf)
	if rerr != nil || werr != nil {
		stop()
		uc.close()
		if rerr != nil && req.Context().Err() == nil {
			t.router.logger.Warn("proxy: upstream response cut short",
				"app", t.app.name, "target", t.addr, "host", req.Host, "err", rerr)
		}
		// The response is incomplete: make the server drop the client
		// connection rather than end the message normally.
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush()
		for k, vv := range resp.Trailer {
			h[http.TrailerPrefix+k] = vv
		}
	}
	if !stop() || resp.Close || req.Close {
		uc.close()
		return
	}
	t.stats.putIdle(uc)
}

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct[0])), "text/event-stream")
}

// flushWriter flushes the client response after every write.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// copyResponse copies src to dst until EOF and tells read errors apart from
// write errors.
func copyResponse(dst io.Writer, src io.Reader, buf []byte) (n int64, rerr, werr error) {
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			nw, err := dst.Write(buf[:nr])
			n += int64(nw)
			if err != nil {
				return n, nil, err
			}
			if nw != nr {
				return n, nil, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// copyBuf copies src to dst until EOF with buf.
func copyBuf(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// bodyTracker records whether the request body was read at all (a request
// whose body was partly sent cannot be retried).
type bodyTracker struct {
	r    io.Reader
	read bool
}

func (b *bodyTracker) wasRead() bool { return b != nil && b.read }

func (b *bodyTracker) Read(p []byte) (int, error) {
	b.read = true
	return b.r.Read(p)
}
