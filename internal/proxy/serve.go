package proxy

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
)

// maxAcquireAttempts bounds how often a request re-reads the table because
// the app it found was replaced concurrently. One retry suffices unless Set is
// called in a tight loop.
const maxAcquireAttempts = 4

// ServeHTTP proxies req to a target of the app owning req.Host. Unknown hosts
// get 404, apps without targets 502. Upgrade requests (WebSocket) are passed
// through and count as in flight until the upgraded connection closes.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	host := canonicalHost(req.Host)
	app, t := r.acquire(host)
	r.serve(w, req, app, t, host)
}

// PortHandler returns the handler of an extra HTTP listener on host port
// port: every request goes to the app [Router.SetPort] routed there,
// whatever its Host header.
func (r *Router) PortHandler(port int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		app, t := r.acquirePort(port)
		r.serve(w, req, app, t, "port "+strconv.Itoa(port))
	})
}

// serve proxies req to t, the target acquired for it (already counted in
// flight), or answers 404 (no app) or 502 (no target).
func (r *Router) serve(w http.ResponseWriter, req *http.Request, app *appState, t *target, host string) {
	switch {
	case app == nil:
		writePage(w, req, http.StatusNotFound, errorPage("404 Not Found",
			"No app is configured for host <code>"+html.EscapeString(host)+"</code>."))
		return
	case t == nil:
		writePage(w, req, http.StatusBadGateway, app.noTargetsPage)
		return
	}
	defer t.stats.release()
	if fastPathOK(req) {
		t.serveFast(w, req)
		return
	}
	t.proxy.ServeHTTP(w, req)
}

// acquire finds the app of host and picks a target, counting the request as
// in flight to it. It returns a nil app for an unknown host and a nil target
// for an app without targets.
//
// The request is counted before checking that the app was not replaced in
// the meantime; Set publishes the new table before marking the old app
// retired. So either Drain (which runs after Set) sees this request in
// flight, or this request sees retired and re-reads the table: it can never
// slip through to a target that is being drained.
func (r *Router) acquire(host string) (*appState, *target) {
	for attempt := 1; ; attempt++ {
		tbl := r.table.Load()
		app := tbl.hosts[host]
		if app == nil {
			// A wildcard domain (*.example.com) matches one more label.
			if i := strings.IndexByte(host, '.'); i > 0 {
				app = tbl.hosts["*"+host[i:]]
			}
			if app == nil {
				return nil, nil
			}
		}
		if len(app.targets) == 0 {
			return app, nil
		}
		t := app.pick()
		t.stats.acquire()
		if !app.retired.Load() || attempt == maxAcquireAttempts {
			return app, t
		}
		t.stats.release()
	}
}

// acquirePort is acquire for the route of an extra listener's host port.
func (r *Router) acquirePort(port int) (*appState, *target) {
	for attempt := 1; ; attempt++ {
		app := r.table.Load().ports[port]
		if app == nil {
			return nil, nil
		}
		if len(app.targets) == 0 {
			return app, nil
		}
		t := app.pick()
		t.stats.acquire()
		if !app.retired.Load() || attempt == maxAcquireAttempts {
			return app, t
		}
		t.stats.release()
	}
}

// canonicalHost returns the routing key of a Host header: port stripped
// (IPv6 literals lose their brackets), one trailing dot stripped, lowercase.
// It does not allocate unless the host contains upper-case letters.
func canonicalHost(h string) string {
	if strings.HasPrefix(h, "[") {
		// "[::1]:8080" or "[::1]".
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 &&
		strings.IndexByte(h, ':') == i && isPort(h[i+1:]) {
		// "host:port". More than one colon without brackets is a bare
		// IPv6 literal: leave it.
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// isPort reports whether s is empty or all ASCII digits.
func isPort(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// errorPage renders a minimal HTML error page. msg is HTML and must already
// be escaped.
func errorPage(title, msg string) []byte {
	return []byte("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title +
		"</title></head><body><h1>" + title + "</h1><p>" + msg +
		"</p><hr><p>berth</p></body></html>\n")
}

// writePage writes a pre-rendered error page.
func writePage(w http.ResponseWriter, req *http.Request, code int, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if req.Method != http.MethodHead {
		_, _ = w.Write(page)
	}
}

// rewrite builds the upstream request: URL http://addr with the incoming path
// and query, the incoming Host header kept (like nginx
// "proxy_set_header Host $http_host"), and fresh X-Forwarded-For/-Host/-Proto
// (client-supplied values were already stripped by ReverseProxy).
func (t *target) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(t.url)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if pr.Out.Body != nil && len(t.app.targets) > 1 {
		// Allow RoundTrip to resend the body to another target if dialing
		// this one fails (see target.RoundTrip).
		pr.Out.Body = &replayableBody{rc: pr.Out.Body}
	}
}

// errorHandler answers a failed upstream round trip with 502. A request
// whose client went away is not logged.
func (t *target) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	if req.Context().Err() != nil || errors.Is(err, context.Canceled) {
		t.router.logger.Debug("proxy: client gone", "app", t.app.name, "target", t.addr, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	t.router.logger.Warn("proxy: upstream error",
		"app", t.app.name, "target", t.addr, "host", req.Host,
		"method", req.Method, "path", req.URL.Path, "err", err)
	writePage(w, req, http.StatusBadGateway, t.app.badGatewayPage)
}
