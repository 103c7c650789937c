package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// The common response, "HTTP/1.1 200 OK" with a Content-Length (or no body
// at all), is parsed here straight into the client's header map, from one
// string holding the whole response head: one allocation for the text, one
// for the header values, none per header. Everything else (chunked or
// close-delimited bodies, 1xx, HTTP/1.0, heads larger than the read buffer,
// anything unusual) is left to http.ReadResponse.

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// peekHead returns a message head (start line and headers, through the
// empty line) without consuming it, or false when it does not fit in br's
// buffer, ends lines with a bare LF (left to net/http, which accepts it),
// or the connection fails first.
func peekHead(br *bufio.Reader) ([]byte, bool) {
	n := br.Buffered()
	for {
		buf, _ := br.Peek(n)
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			if bytes.Contains(buf[:i+4], lflf) {
				return nil, false
			}
			return buf[:i+4], true
		}
		if bytes.Contains(buf, lflf) {
			return nil, false
		}
		if n >= br.Size() {
			return nil, false
		}
		if _, err := br.Peek(n + 1); err != nil {
			return nil, false
		}
		n = br.Buffered()
	}
}

// simpleHead is what the first pass over a head found.
type simpleHead struct {
	code          int
	contentLength int64 // -1: none
	headers       int
	close         bool
	connection    string // the Connection header, if any
}

// parseSimpleHead checks that head is a response the fast path handles and
// returns its framing. ok is false for anything else.
func parseSimpleHead(head string, method string) (h simpleHead, ok bool) {
	if len(head) < 16 || head[:9] != "HTTP/1.1 " {
		return h, false
	}
	d0, d1, d2 := head[9], head[10], head[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' || (head[12] != ' ' && head[12] != '\r') {
		return h, false
	}
	h.code = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	h.contentLength = -1
	rest := head[strings.Index(head, "\r\n")+2:]
	for {
		i := strings.Index(rest, "\r\n")
		line := rest[:i]
		rest = rest[i+2:]
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return h, false // obs-fold, junk: let ReadResponse decide
		}
		h.headers++
		key, val := line[:colon], trimOWS(line[colon+1:])
		switch {
		case strings.EqualFold(key, "Content-Length"):
			if h.contentLength >= 0 || val == "" || len(val) > 18 || strings.TrimLeft(val, "0123456789") != "" {
				return h, false
			}
			var n int64
			for j := 0; j < len(val); j++ {
				n = n*10 + int64(val[j]-'0')
			}
			h.contentLength = n
		case strings.EqualFold(key, "Transfer-Encoding"), strings.EqualFold(key, "Trailer"):
			return h, false
		case strings.EqualFold(key, "Connection"):
			if h.connection != "" {
				return h, false
			}
			h.connection = val
			h.close = connectionListed([]string{val}, "close")
		}
	}
	bodyless := method == http.MethodHead || h.code == http.StatusNoContent || h.code == http.StatusNotModified
	if !bodyless && h.contentLength < 0 {
		return h, false // read until close: ReadResponse knows how
	}
	return h, true
}

// isToken reports whether s is a valid header field name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isCanonical reports whether k is already in canonical MIME header form.
func isCanonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// errShortBody means the upstream closed before sending Content-Length
// bytes.
var errShortBody = errors.New("upstream sent less than its Content-Length")

// writeSimpleResponse answers the client from the response waiting on uc
// if it is a simple one (see parseSimpleHead) and reports whether it did;
// when it did not, nothing was consumed from uc.
func (t *target) writeSimpleResponse(w http.ResponseWriter, req *http.Request, uc *upConn, stop func() bool) bool {
	raw, ok := peekHead(uc.br)
	if !ok {
		return false
	}
	// One string for the whole head; keys and values are slices of it.
	head := string(raw)
	sh, ok := parseSimpleHead(head, req.Method)
	if !ok {
		return false
	}
	h := w.Header()
	vals := make([]string, sh.headers)
	rest := head[strings.Index(head, "\r\n")+2:]
	for k := 0; ; k++ {
		i := strings.Index(rest, "\r\n")
		line := rest[:i]
		rest = rest[i+2:]
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		key := line[:colon]
		if !isCanonical(key) {
			key = textproto.CanonicalMIMEHeaderKey(key)
		}
		if hopByHop(key) || (sh.connection != "" && connectionListed([]string{sh.connection}, key)) {
			continue
		}
		vals[k] = trimOWS(line[colon+1:])
		if cur, dup := h[key]; dup {
			h[key] = append(cur, vals[k])
		} else {
			h[key] = vals[k : k+1 : k+1]
		}
	}
	_, _ = uc.br.Discard(len(raw))
	w.WriteHeader(sh.code)

	bodyless := req.Method == http.MethodHead || sh.code == http.StatusNoContent || sh.code == http.StatusNotModified
	if !bodyless && sh.contentLength > 0 {
		buf := t.router.buffers.Get()
		uc.body = io.LimitedReader{R: uc.br, N: sh.contentLength}
		n, rerr, werr := copyResponse(w, &uc.body, buf)
		t.router.buffers.Put(buf)
		if rerr == nil && werr == nil && n != sh.contentLength {
			rerr = errShortBody
		}
		if rerr != nil || werr != nil {
			stop()
			uc.close()
			if rerr != nil && req.Context().Err() == nil {
				t.router.logger.Warn("proxy: upstream response cut short",
					"app", t.app.name, "target", t.addr, "host", req.Host, "err", fmt.Errorf("read response body: %w", rerr))
			}
			panic(http.ErrAbortHandler)
		}
	}
	if !stop() || sh.close || req.Close {
		uc.close()
		return true
	}
	t.stats.putIdle(uc)
	return true
}
