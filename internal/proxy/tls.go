package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// HTTPSPolicy is the HTTPS behaviour of one app, set by whoever manages its
// certificates.
type HTTPSPolicy struct {
	// Secure lists the app's hosts that have a certificate. A "*.example.com"
	// entry covers one more label, like the routing table.
	Secure []string
	// Redirect sends plain HTTP requests for a Secure host to HTTPS.
	Redirect bool
	// HSTS is the Strict-Transport-Security header value sent on HTTPS
	// responses; "" sends none.
	HSTS string
}

// edgePolicy is an HTTPSPolicy ready for lookups.
type edgePolicy struct {
	secure   map[string]bool
	redirect bool
	hsts     []string
}

// Edge puts the HTTP and HTTPS front doors before a [Router]: on plain HTTP
// it first lets the ACME HTTP-01 challenge handler answer, then redirects
// secure hosts of apps that ask for it to HTTPS; on HTTPS it adds the app's
// HSTS header. Everything else goes to the router. Policies are published
// through an atomic pointer, so requests never take a lock.
type Edge struct {
	router    *Router
	httpsPort int
	challenge func(http.ResponseWriter, *http.Request) bool

	mu       sync.Mutex // serialises policy writers
	policies atomic.Pointer[map[string]*edgePolicy]
}

// NewEdge returns an Edge before r. httpsPort is the public HTTPS port
// redirects point to (443 is left out of the URL). challenge, if not nil,
// is offered every plain HTTP request first and reports whether it answered.
func NewEdge(r *Router, httpsPort int, challenge func(http.ResponseWriter, *http.Request) bool) *Edge {
	e := &Edge{router: r, httpsPort: httpsPort, challenge: challenge}
	e.policies.Store(&map[string]*edgePolicy{})
	return e
}

// SetPolicy sets app's HTTPS policy.
func (e *Edge) SetPolicy(app string, p HTTPSPolicy) {
	ep := &edgePolicy{secure: make(map[string]bool, len(p.Secure)), redirect: p.Redirect}
	for _, h := range p.Secure {
		ep.secure[canonicalHost(h)] = true
	}
	if p.HSTS != "" {
		ep.hsts = []string{p.HSTS}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.policies.Load()
	next := make(map[string]*edgePolicy, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[app] = ep
	e.policies.Store(&next)
}

// RemovePolicy drops app's HTTPS policy: plain HTTP is served as is.
func (e *Edge) RemovePolicy(app string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.policies.Load()
	if _, ok := old[app]; !ok {
		return
	}
	next := make(map[string]*edgePolicy, len(old))
	for k, v := range old {
		if k != app {
			next[k] = v
		}
	}
	e.policies.Store(&next)
}

// covers reports whether host (canonical) is one of the policy's secure
// hosts, directly or through a wildcard entry.
func (p *edgePolicy) covers(host string) bool {
	if p.secure[host] {
		return true
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return p.secure["*"+host[i:]]
	}
	return false
}

// HTTP returns the handler of the plain HTTP listener.
func (e *Edge) HTTP() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if e.challenge != nil && strings.HasPrefix(req.URL.Path, "/.well-known/acme-challenge/") && e.challenge(w, req) {
			return
		}
		host := canonicalHost(req.Host)
		if app := e.router.AppOf(host); app != "" {
			if p := (*e.policies.Load())[app]; p != nil && p.redirect && p.covers(host) {
				e.redirect(w, req, host)
				return
			}
		}
		e.router.ServeHTTP(w, req)
	})
}

// redirect answers with a redirect to the HTTPS URL of req: 301 for GET and
// HEAD, 308 (which keeps the method and body) for the others.
func (e *Edge) redirect(w http.ResponseWriter, req *http.Request, host string) {
	target := "https://"
	if strings.IndexByte(host, ':') >= 0 {
		target += "[" + host + "]"
	} else {
		target += host
	}
	if e.httpsPort != 0 && e.httpsPort != 443 {
		target += ":" + strconv.Itoa(e.httpsPort)
	}
	uri := req.URL.RequestURI()
	if !strings.HasPrefix(uri, "/") {
		uri = "/"
	}
	target += uri
	code := http.StatusMovedPermanently
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		code = http.StatusPermanentRedirect
	}
	w.Header().Set("Location", target)
	w.Header().Set("Connection", "close")
	w.WriteHeader(code)
}

// HTTPS returns the handler of the TLS listener.
func (e *Edge) HTTPS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if app := e.router.AppOf(canonicalHost(req.Host)); app != "" {
			if p := (*e.policies.Load())[app]; p != nil && p.hsts != nil {
				w.Header()["Strict-Transport-Security"] = p.hsts
			}
		}
		e.router.ServeHTTP(w, req)
	})
}

// AppOf returns the app that host (canonical: lowercase, no port) routes
// to, or "" when none does. Like request routing, an exact host wins over a
// wildcard "*.parent" host.
func (r *Router) AppOf(host string) string {
	tbl := r.table.Load()
	if st := tbl.hosts[host]; st != nil {
		return st.name
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if st := tbl.hosts["*"+host[i:]]; st != nil {
			return st.name
		}
	}
	return ""
}

// CanonicalHost returns the routing key of a Host header or TLS server
// name: port stripped, one trailing dot stripped, lowercase.
func CanonicalHost(h string) string { return canonicalHost(h) }
