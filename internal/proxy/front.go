package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Front serves berth's plain HTTP listener. It proxies the bulk of the
// traffic, GET and HEAD requests without a body to a routed app, itself: it
// reads the request head from the connection, writes it (hop-by-hop and
// forwarding headers replaced) to a pooled upstream connection and relays
// the response head and body back, without an http.Request, a
// ResponseWriter, a context or a goroutine per request. This is what makes
// berth's proxy as fast as nginx.
//
// Everything else is handed, with the bytes already read, to a regular
// http.Server (Fallback, serving the Edge and the Router): other methods,
// request bodies, upgrades, Expect, HTTP/1.0, unknown hosts and apps
// without targets (the 404 and 502 pages), ACME challenges and HTTPS
// redirects, heads that are malformed or larger than the read buffer, and
// requests whose upstream fails before it answers (the fallback retries on
// the next target or answers 502; GET and HEAD are safe to send again). A
// handed-over connection stays with the fallback server.
type Front struct {
	router   *Router
	edge     *Edge
	fallback *http.Server
	handoff  *connListener
	// port, when not 0, makes this the front of a port mapping's extra
	// listener: every request goes to the route of that host port.
	port int

	headerTimeout time.Duration
	idleTimeout   time.Duration

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*frontConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

// NewFront returns a Front proxying through r, consulting edge (may be
// nil) for requests it must leave to the fallback server. The fallback's
// ReadHeaderTimeout and IdleTimeout apply to the Front's connections too.
func NewFront(r *Router, edge *Edge, fallback *http.Server) *Front {
	f := &Front{
		router: r, edge: edge, fallback: fallback,
		headerTimeout: fallback.ReadHeaderTimeout, idleTimeout: fallback.IdleTimeout,
		conns: map[*frontConn]struct{}{},
	}
	if f.headerTimeout <= 0 {
		f.headerTimeout = 30 * time.Second
	}
	if f.idleTimeout <= 0 {
		f.idleTimeout = 120 * time.Second
	}
	return f
}

// Serve accepts connections on ln until it is closed or Shutdown is called;
// it then returns http.ErrServerClosed (or the accept error).
func (f *Front) Serve(ln net.Listener) error {
	f.mu.Lock()
	if f.closing.Load() {
		f.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	f.ln = ln
	f.handoff = newConnListener(ln.Addr())
	f.mu.Unlock()
	go func() {
		if err := f.fallback.Serve(f.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.router.logger.Warn("proxy: fallback HTTP server stopped", "err", err)
		}
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		fc := newFrontConn(c)
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serveConn(fc)
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// progress finish (until ctx is done, then closes their connections), and
// shuts the fallback server down.
func (f *Front) Shutdown(ctx context.Context) error {
	f.closing.Store(true)
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
	}
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.c.Close()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.c.Close()
		}
		f.mu.Unlock()
	}
	return f.fallback.Shutdown(ctx)
}

// frontConn is one client connection of the Front.
type frontConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	ip   string // client IP, for X-Forwarded-For
	idle atomic.Bool
}

const (
	frontReadBuffer  = 4 << 10
	frontWriteBuffer = 4 << 10
)

func newFrontConn(c net.Conn) *frontConn {
	fc := &frontConn{c: c, br: bufio.NewReaderSize(c, frontReadBuffer), bw: bufio.NewWriterSize(c, frontWriteBuffer)}
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		fc.ip = ip
	}
	return fc
}

// setIdle records whether fc waits for a request; it reports false when
// the server is shutting down (fc must then close). Shutdown sets closing
// before it closes the idle connections, so a connection going idle either
// sees closing or is closed by Shutdown.
func (f *Front) setIdle(fc *frontConn, idle bool) bool {
	fc.idle.Store(idle)
	return !f.closing.Load()
}

func (f *Front) forget(fc *frontConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.wg.Done()
}

// outcome of one request on the Front.
type outcome int

const (
	served   outcome = iota // keep the connection
	finished                // served; close the connection
	handOff                 // give the connection to the fallback server
	abort                   // close the connection now
)

func (f *Front) serveConn(fc *frontConn) {
	defer f.forget(fc)
	timeout := f.headerTimeout
	var deadline time.Time
	for {
		if !f.setIdle(fc, true) {
			fc.c.Close()
			return
		}
		// The read deadline is re-armed at most once a second: it lies
		// between timeout-1s and timeout ahead.
		if want := time.Now().Add(timeout); want.Sub(deadline) >= time.Second {
			_ = fc.c.SetReadDeadline(want)
			deadline = want
		}
		timeout = f.idleTimeout
		raw, ok := peekHead(fc.br)
		if !ok {
			if fc.br.Buffered() > 0 {
				// A head too large for the buffer, bare LF line ends,
				// or cut short: net/http decides.
				f.handOff(fc)
				return
			}
			fc.c.Close() // closed or idle too long
			return
		}
		if !f.setIdle(fc, false) {
			fc.c.Close()
			return
		}
		switch f.serveRequest(fc, raw) {
		case served:
			continue
		case finished, abort:
			fc.c.Close()
		case handOff:
			f.handOff(fc)
		}
		return
	}
}

// handOff passes fc, with the bytes it has buffered, to the fallback
// server.
func (f *Front) handOff(fc *frontConn) {
	_ = fc.c.SetReadDeadline(time.Time{})
	var buffered []byte
	if n := fc.br.Buffered(); n > 0 {
		b, _ := fc.br.Peek(n)
		buffered = append([]byte(nil), b...)
	}
	f.handoff.give(&replayConn{Conn: fc.c, buf: buffered})
}

// request is what the Front needs of a request head.
type request struct {
	head       string // the whole head, through the empty line
	line       string // request line
	method     string
	path       string
	host       string
	close      bool
	connection string // Connection header value, if any
}

// parseRequest checks that head is a request the Front proxies itself.
func parseRequest(head string) (rq request, ok bool) {
	rq.head = head
	i := strings.Index(head, "\r\n")
	rq.line = head[:i]
	switch {
	case strings.HasPrefix(rq.line, "GET "):
		rq.method = http.MethodGet
	case strings.HasPrefix(rq.line, "HEAD "):
		rq.method = http.MethodHead
	default:
		return rq, false
	}
	uri, ok := strings.CutSuffix(rq.line[len(rq.method)+1:], " HTTP/1.1")
	if !ok || uri == "" || uri[0] != '/' {
		return rq, false
	}
	for j := 0; j < len(uri); j++ {
		if c := uri[j]; c <= ' ' || c >= 0x7f {
			return rq, false
		}
	}
	rq.path = uri
	if q := strings.IndexByte(uri, '?'); q >= 0 {
		rq.path = uri[:q]
		if !queryIsClean(uri[q+1:]) {
			return rq, false
		}
	}
	hosts := 0
	rest := head[i+2:]
	for {
		j := strings.Index(rest, "\r\n")
		line := rest[:j]
		rest = rest[j+2:]
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) || !validValue(line[colon+1:]) {
			return rq, false
		}
		key, val := line[:colon], trimOWS(line[colon+1:])
		switch len(key) {
		case 4:
			if strings.EqualFold(key, "Host") {
				hosts++
				rq.host = val
			}
		case 6:
			if strings.EqualFold(key, "Expect") {
				return rq, false
			}
		case 7:
			if strings.EqualFold(key, "Upgrade") || strings.EqualFold(key, "Trailer") {
				return rq, false
			}
		case 10:
			if strings.EqualFold(key, "Connection") {
				if rq.connection != "" {
					return rq, false
				}
				rq.connection = val
				rq.close = connectionListed([]string{val}, "close")
			}
		case 14:
			if strings.EqualFold(key, "Content-Length") && val != "0" {
				return rq, false
			}
		case 17:
			if strings.EqualFold(key, "Transfer-Encoding") {
				return rq, false
			}
		}
	}
	if hosts != 1 || !validHost(rq.host) {
		return rq, false
	}
	return rq, true
}

// validValue reports whether a header value has no control characters
// but horizontal tabs.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts the characters of a host name, an IP literal and a port.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// skipForwarded reports whether an incoming request header is not passed
// upstream: hop-by-hop, framing and forwarding headers.
func skipForwarded(k string) bool {
	if hopByHop(k) {
		return true
	}
	switch len(k) {
	case 9:
		return strings.EqualFold(k, "Forwarded")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 15:
		return strings.EqualFold(k, "X-Forwarded-For")
	case 16:
		return strings.EqualFold(k, "X-Forwarded-Host")
	case 17:
		return strings.EqualFold(k, "X-Forwarded-Proto")
	}
	return false
}

// serveRequest proxies the request whose head is raw (still buffered in
// fc.br), or says to hand the connection over.
func (f *Front) serveRequest(fc *frontConn, raw []byte) outcome {
	rq, ok := parseRequest(string(raw))
	if !ok {
		return handOff
	}
	host := canonicalHost(rq.host)
	if f.edge != nil && f.edge.InterceptsHTTP(host, rq.path) {
		return handOff
	}
	var app *appState
	var t *target
	if f.port != 0 {
		app, t = f.router.acquirePort(f.port)
	} else {
		app, t = f.router.acquire(host)
	}
	if app == nil || t == nil {
		if t != nil {
			t.stats.release()
		}
		return handOff
	}
	defer t.stats.release()
	uc, _, err := t.conn(context.Background(), false)
	if err != nil {
		return handOff
	}
	if err := writeUpstreamRequest(uc.bw, &rq, fc.ip); err != nil {
		uc.close()
		return handOff
	}
	if _, err := uc.br.Peek(1); err != nil {
		uc.close()
		return handOff
	}
	// The upstream has started answering: from here on the request must
	// not be handed off (the fallback would send it a second time).
	rh, ok := peekHead(uc.br)
	if !ok {
		return f.relayStd(fc, uc, raw, &rq, app, t)
	}
	resp, ok := parseUpstreamHead(string(rh), rq.method)
	if !ok {
		return f.relayStd(fc, uc, raw, &rq, app, t)
	}
	// From here on the request is answered here.
	_, _ = fc.br.Discard(len(raw))
	closeClient := rq.close || resp.untilClose
	writeClientHead(fc.bw, &resp, closeClient)
	_, _ = uc.br.Discard(len(rh))

	var rerr, werr error
	switch {
	case resp.bodyless:
	case resp.chunked:
		rerr, werr = f.relayChunked(fc.bw, uc.br)
	case resp.contentLength >= 0:
		rerr, werr = f.relayN(fc.bw, uc.br, resp.contentLength)
	default: // until the upstream closes
		rerr, werr = f.relayAll(fc.bw, uc.br)
	}
	if werr == nil {
		werr = fc.bw.Flush()
	}
	if rerr != nil || werr != nil {
		uc.close()
		if rerr != nil {
			f.router.logger.Warn("proxy: upstream response cut short",
				"app", app.name, "target", t.addr, "host", rq.host, "err", rerr)
		}
		return abort
	}
	if resp.close || resp.untilClose {
		uc.close()
	} else {
		t.stats.putIdle(uc)
	}
	if closeClient {
		return finished
	}
	return served
}

// writeUpstreamRequest writes the request to bw and flushes it.
func writeUpstreamRequest(bw *bufio.Writer, rq *request, ip string) error {
	bw.WriteString(rq.line)
	bw.WriteString("\r\n")
	rest := rq.head[len(rq.line)+2:]
	for {
		j := strings.Index(rest, "\r\n")
		line := rest[:j]
		rest = rest[j+2:]
		if line == "" {
			break
		}
		key := line[:strings.IndexByte(line, ':')]
		if skipForwarded(key) || (rq.connection != "" && connectionListed([]string{rq.connection}, key)) {
			continue
		}
		bw.WriteString(line)
		bw.WriteString("\r\n")
	}
	if ip != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(rq.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	return bw.Flush()
}

// upstreamHead is what the Front needs of a response head.
type upstreamHead struct {
	head          string
	status        string // "200 OK"
	contentLength int64  // -1: none
	chunked       bool
	bodyless      bool
	close         bool // the upstream closes the connection after it
	untilClose    bool // the body ends when the upstream closes
	connection    string
}

// parseUpstreamHead checks that head is a final HTTP/1.1 response the
// Front relays itself.
func parseUpstreamHead(head, method string) (r upstreamHead, ok bool) {
	r.head = head
	if len(head) < 16 || head[:9] != "HTTP/1.1 " {
		return r, false
	}
	i := strings.Index(head, "\r\n")
	r.status = head[9:i]
	if len(r.status) < 3 || r.status[0] < '2' || r.status[0] > '5' ||
		r.status[1] < '0' || r.status[1] > '9' || r.status[2] < '0' || r.status[2] > '9' ||
		len(r.status) > 3 && r.status[3] != ' ' || !validValue(r.status) {
		return r, false
	}
	code := int(r.status[0]-'0')*100 + int(r.status[1]-'0')*10 + int(r.status[2]-'0')
	r.contentLength = -1
	rest := head[i+2:]
	for {
		j := strings.Index(rest, "\r\n")
		line := rest[:j]
		rest = rest[j+2:]
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) || !validValue(line[colon+1:]) {
			return r, false
		}
		key, val := line[:colon], trimOWS(line[colon+1:])
		switch {
		case strings.EqualFold(key, "Content-Length"):
			if r.contentLength >= 0 || val == "" || len(val) > 18 || strings.TrimLeft(val, "0123456789") != "" {
				return r, false
			}
			r.contentLength, _ = strconv.ParseInt(val, 10, 64)
		case strings.EqualFold(key, "Transfer-Encoding"):
			if r.chunked || !strings.EqualFold(val, "chunked") {
				return r, false
			}
			r.chunked = true
		case strings.EqualFold(key, "Connection"):
			if r.connection != "" {
				return r, false
			}
			r.connection = val
			r.close = connectionListed([]string{val}, "close")
		}
	}
	r.bodyless = method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	switch {
	case r.bodyless:
	case r.chunked && r.contentLength >= 0:
		return r, false // ambiguous framing: let net/http refuse it
	case !r.chunked && r.contentLength < 0:
		r.untilClose = true
	}
	return r, true
}

// writeClientHead writes the response head for the client: the upstream's
// status and headers but hop-by-hop ones, chunked framing kept.
func writeClientHead(bw *bufio.Writer, r *upstreamHead, closeClient bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(r.status)
	bw.WriteString("\r\n")
	rest := r.head[9+len(r.status)+2:]
	for {
		j := strings.Index(rest, "\r\n")
		line := rest[:j]
		rest = rest[j+2:]
		if line == "" {
			break
		}
		key := line[:strings.IndexByte(line, ':')]
		if hopByHop(key) || (r.connection != "" && connectionListed([]string{r.connection}, key)) {
			continue
		}
		bw.WriteString(line)
		bw.WriteString("\r\n")
	}
	if r.chunked && !r.bodyless {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if closeClient {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// relayStd relays an answer the Front's own parser does not take (1xx
// interim responses, a head larger than the buffer, unusual framing) with
// net/http's parser, on the connection the request was already sent on.
// The client connection is closed afterwards.
func (f *Front) relayStd(fc *frontConn, uc *upConn, raw []byte, rq *request, app *appState, t *target) outcome {
	defer uc.close()
	_, _ = fc.br.Discard(len(raw))
	req := &http.Request{Method: rq.method}
	for {
		resp, err := http.ReadResponse(uc.br, req)
		if err != nil {
			f.router.logger.Warn("proxy: unreadable upstream response", "app", app.name, "target", t.addr, "host", rq.host, "err", err)
			fc.bw.WriteString("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Gateway\n")
			fc.bw.Flush()
			return finished
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			// Interim responses (103 Early Hints…) are not passed on.
			resp.Body.Close()
			continue
		}
		for k := range resp.Header {
			if hopByHop(k) {
				delete(resp.Header, k)
			}
		}
		resp.Close = true
		err = resp.Write(fc.bw)
		resp.Body.Close()
		if err == nil {
			err = fc.bw.Flush()
		}
		if err != nil {
			return abort
		}
		return finished
	}
}

// hopByHop reports whether a header belongs to one connection only
// (RFC 9110 section 7.6.1) and is never forwarded.
func hopByHop(k string) bool {
	switch len(k) {
	case 2:
		return strings.EqualFold(k, "Te")
	case 7:
		return strings.EqualFold(k, "Upgrade") || strings.EqualFold(k, "Trailer")
	case 10:
		return strings.EqualFold(k, "Connection") || strings.EqualFold(k, "Keep-Alive")
	case 16:
		return strings.EqualFold(k, "Proxy-Connection")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	case 18:
		return strings.EqualFold(k, "Proxy-Authenticate")
	case 19:
		return strings.EqualFold(k, "Proxy-Authorization")
	}
	return false
}

// relayN copies exactly n body bytes from src to dst.
func (f *Front) relayN(dst *bufio.Writer, src *bufio.Reader, n int64) (rerr, werr error) {
	if n <= int64(src.Buffered()) {
		b, _ := src.Peek(int(n))
		_, werr = dst.Write(b)
		_, _ = src.Discard(int(n))
		return nil, werr
	}
	buf := f.router.buffers.Get()
	defer f.router.buffers.Put(buf)
	for n > 0 {
		m, err := src.Read(buf[:min(int64(len(buf)), n)])
		n -= int64(m)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return nil, werr
			}
		}
		if err != nil {
			if n > 0 {
				if errors.Is(err, io.EOF) {
					err = errShortBody
				}
				return err, nil
			}
		}
	}
	return nil, nil
}

// relayAll copies src to dst until src ends.
func (f *Front) relayAll(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	buf := f.router.buffers.Get()
	defer f.router.buffers.Put(buf)
	_, rerr, werr = copyResponse(dst, src, buf)
	return rerr, werr
}

// relayChunked copies a chunked body from src to dst as it is (chunk
// extensions and trailers included), checking its framing so the end of
// the body is known.
func (f *Front) relayChunked(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return err, nil
		}
		size, ok := chunkSize(line)
		if !ok {
			return errors.New("malformed chunked body"), nil
		}
		if _, err := dst.Write(line); err != nil {
			return nil, err
		}
		if size == 0 {
			// Trailer fields, then the empty line.
			for {
				l, err := src.ReadSlice('\n')
				if err != nil {
					return err, nil
				}
				if _, err := dst.Write(l); err != nil {
					return nil, err
				}
				if len(l) <= 2 && strings.TrimRight(string(l), "\r\n") == "" {
					return nil, nil
				}
			}
		}
		if rerr, werr := f.relayN(dst, src, size+2); rerr != nil || werr != nil {
			return rerr, werr
		}
		// Flush each chunk: a chunked response is often streamed.
		if err := dst.Flush(); err != nil {
			return nil, err
		}
	}
}

// chunkSize parses a chunk-size line ("1a;ext\r\n").
func chunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == '\r' || c == ' ' || c == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		digits++
		if digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return 0, false
}

// InterceptsHTTP reports whether a plain HTTP request for host (canonical)
// and path is answered by the Edge itself (an ACME HTTP-01 challenge, a
// redirect to HTTPS) rather than routed: the Front leaves those to the
// fallback server. It mirrors [Edge.HTTP].
func (e *Edge) InterceptsHTTP(host, path string) bool {
	if e.challenge != nil && strings.HasPrefix(path, "/.well-known/acme-challenge/") {
		return true
	}
	if app := e.router.AppOf(host); app != "" {
		if p := (*e.policies.Load())[app]; p != nil && p.redirect && p.covers(host) {
			return true
		}
	}
	return false
}

// connListener is the net.Listener the fallback server accepts handed-over
// connections from.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *connListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// replayConn is a connection whose first reads return bytes already read
// from it.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
