// Package proxy is berth's in-process HTTP reverse proxy.
//
// A [Router] routes each request by its Host header to the web containers of
// an app. The routing table is immutable and published through an
// atomic.Pointer: [Router.Set] and [Router.Remove] build a new table under a
// mutex and swap it in (copy-on-write), so [Router.ServeHTTP] never takes a
// lock. Requests to an app are spread over its targets round robin, through
// one shared, tuned keep-alive http.Transport.
//
// During a deploy the pipeline calls Set with the new targets, then
// [Router.Drain] with the old ones, then stops the old containers. The proxy
// counts requests in flight per target address (upgraded WebSocket
// connections included) so Drain knows when an old target is idle.
package proxy

import (
	"context"
	"html"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Tuning of the shared upstream transport.
const (
	dialTimeout         = 5 * time.Second
	dialKeepAlive       = 30 * time.Second
	maxIdleConnsPerHost = 512
	idleConnTimeout     = 90 * time.Second
	bufferSize          = 32 << 10
)

// Options configures a [Router].
type Options struct {
	// Logger receives upstream errors and routing warnings. It is never nil
	// after [New]: the default is slog.Default().
	Logger *slog.Logger
}

// Route is the routing entry of one app, as reported by [Router.Routes].
type Route struct {
	// Hosts are the host names (lowercase, no port) routed to the app.
	Hosts []string
	// Targets are the upstream "ip:port" addresses, in round-robin order.
	Targets []string
}

// Router is an http.Handler that reverse-proxies each request to an app's
// targets, chosen by the request's Host header. Create it with [New]; the zero
// value is not usable. All methods are safe for concurrent use.
type Router struct {
	logger    *slog.Logger
	errorLog  *log.Logger
	transport *http.Transport
	dialer    net.Dialer
	buffers   bufferPool

	table atomic.Pointer[table]

	// mu serialises writers of table and guards stats.
	mu sync.Mutex
	// stats holds the per-address accounting (requests in flight, open
	// upstream connections). An entry outlives its routes as long as it has
	// requests or connections, so Drain and InFlight can still see them.
	stats map[string]*addrStats
}

// table is an immutable routing table. Only the atomic counters of its
// appStates and their targets' stats change after it is published.
type table struct {
	hosts map[string]*appState // canonical host -> app
	apps  map[string]*appState // app name -> app
	// ports routes the extra listeners of port mappings: host port -> the
	// app's targets on the mapping's container port.
	ports map[int]*appState
}

// appState is one app's routes within one table.
type appState struct {
	name string
	// port is the host port of a port route (SetPort), 0 for host routes.
	port    int
	hosts   []string
	targets []*target
	// rr is the round-robin counter.
	rr atomic.Uint32
	// retired is set once a newer table no longer contains this appState;
	// a request that picked one of its targets re-reads the table (see
	// Router.acquire).
	retired atomic.Bool
	// noTargetsPage and badGatewayPage are pre-rendered 502 pages.
	noTargetsPage  []byte
	badGatewayPage []byte
}

// target is one upstream of one appState. It owns the ReverseProxy for that
// upstream so the hot path needs no per-request closure or context value.
type target struct {
	addr   string
	url    *url.URL
	app    *appState
	stats  *addrStats
	router *Router
	proxy  *httputil.ReverseProxy
}

// New returns a Router with no routes: every request gets 404 until
// [Router.Set] is called.
func New(opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Router{
		logger: opts.Logger,
		stats:  make(map[string]*addrStats),
	}
	// ReverseProxy logs body-copy read errors (e.g. the upstream resetting
	// mid-response) through ErrorLog; route them to slog.
	r.errorLog = slog.NewLogLogger(r.logger.Handler(), slog.LevelWarn)
	r.dialer = net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
	r.transport = newTransport(r.dialContext)
	r.table.Store(&table{
		hosts: map[string]*appState{},
		apps:  map[string]*appState{},
		ports: map[int]*appState{},
	})
	return r
}

// newTransport returns the transport shared by all upstreams: HTTP/1.1 only,
// keep-alive with a large idle pool per upstream, no proxy from the
// environment and no transparent compression (the proxy must pass bodies
// through untouched).
func newTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		MaxIdleConns:          0, // no global limit; bounded per host below
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		Protocols:             &protocols,
	}
}

// Set replaces the routes of app: every host in hosts (already validated,
// lowercase, no port) now routes to targets ("ip:port"), round robin. Hosts
// previously owned by app and not in hosts stop routing. An empty targets
// slice means the app is known but has nothing running: its requests get 502.
//
// A host currently owned by another app is taken over by app (and a warning
// is logged). Set is safe for concurrent use with ServeHTTP; readers never
// block. Requests already in flight to targets that are no longer routed
// complete normally; use [Router.Drain] to wait for them.
func (r *Router) Set(app string, hosts []string, targets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.table.Load()
	next := &table{
		hosts: make(map[string]*appState, len(old.hosts)+len(hosts)),
		apps:  make(map[string]*appState, len(old.apps)+1),
		ports: old.ports,
	}
	var retired []*appState
	if prev := old.apps[app]; prev != nil {
		retired = append(retired, prev)
	}

	st := r.newAppState(app, dedup(hosts), targets)
	next.apps[app] = st
	for _, h := range st.hosts {
		next.hosts[h] = st
	}

	// Carry the other apps over. One that loses a host to app gets a new
	// appState without it.
	for name, other := range old.apps {
		if name == app {
			continue
		}
		lost := false
		for _, h := range other.hosts {
			if next.hosts[h] == st {
				lost = true
				r.logger.Warn("proxy: host moved to another app",
					"host", h, "from", name, "to", app)
			}
		}
		if lost {
			kept := make([]string, 0, len(other.hosts))
			for _, h := range other.hosts {
				if next.hosts[h] != st {
					kept = append(kept, h)
				}
			}
			retired = append(retired, other)
			other = r.newAppState(name, kept, other.targetAddrs())
		}
		next.apps[name] = other
		for _, h := range other.hosts {
			next.hosts[h] = other
		}
	}

	r.publish(next, retired)
}

// Remove drops every route of app: its hosts then get 404. Requests already
// in flight complete normally; use [Router.Drain] to wait for them.
func (r *Router) Remove(app string) {
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.table.Load()
	prev := old.apps[app]
	if prev == nil {
		return
	}
	next := &table{
		hosts: make(map[string]*appState, len(old.hosts)),
		apps:  make(map[string]*appState, len(old.apps)),
		ports: old.ports,
	}
	for name, st := range old.apps {
		if name == app {
			continue
		}
		next.apps[name] = st
		for _, h := range st.hosts {
			next.hosts[h] = st
		}
	}
	r.publish(next, []*appState{prev})
}

// SetPort routes the extra listener on host port port to targets ("ip:port")
// of app, round robin, replacing what port routed before. Like Set it is
// atomic for readers, and requests or connections already in flight to
// targets no longer routed go on; use [Router.Drain] to wait for them.
func (r *Router) SetPort(port int, app string, targets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	next := &table{hosts: old.hosts, apps: old.apps, ports: make(map[int]*appState, len(old.ports)+1)}
	for p, st := range old.ports {
		next.ports[p] = st
	}
	var retired []*appState
	if prev := old.ports[port]; prev != nil {
		retired = append(retired, prev)
	}
	st := r.newAppState(app, nil, targets)
	st.port = port
	next.ports[port] = st
	r.publish(next, retired)
}

// RemovePort drops the route of host port port.
func (r *Router) RemovePort(port int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	prev := old.ports[port]
	if prev == nil {
		return
	}
	next := &table{hosts: old.hosts, apps: old.apps, ports: make(map[int]*appState, len(old.ports))}
	for p, st := range old.ports {
		if p != port {
			next.ports[p] = st
		}
	}
	r.publish(next, []*appState{prev})
}

// PortRoutes returns a snapshot of the port routes: host port -> the app and
// its targets (Route.Hosts holds the app name).
func (r *Router) PortRoutes() map[int]Route {
	t := r.table.Load()
	out := make(map[int]Route, len(t.ports))
	for port, st := range t.ports {
		out[port] = Route{Hosts: []string{st.name}, Targets: st.targetAddrs()}
	}
	return out
}

// Routes returns a snapshot of the routing table: app name -> its hosts and
// targets. The slices are copies the caller may keep.
func (r *Router) Routes() map[string]Route {
	t := r.table.Load()
	out := make(map[string]Route, len(t.apps))
	for name, st := range t.apps {
		out[name] = Route{Hosts: slices.Clone(st.hosts), Targets: st.targetAddrs()}
	}
	return out
}

// publish swaps in next and then marks the replaced appStates retired. The
// order matters: a request that sees retired == true re-reads the table and
// is then guaranteed to get next (or newer). Must be called with r.mu held.
func (r *Router) publish(next *table, retired []*appState) {
	r.table.Store(next)
	for _, st := range retired {
		st.retired.Store(true)
	}
	r.gcStatsLocked(next)
}

// newAppState builds the routes of one app, with a ReverseProxy per target.
// Must be called with r.mu held (it registers the targets' stats).
func (r *Router) newAppState(name string, hosts, addrs []string) *appState {
	esc := html.EscapeString(name)
	st := &appState{
		name:           name,
		hosts:          hosts,
		targets:        make([]*target, 0, len(addrs)),
		noTargetsPage:  errorPage("502 Bad Gateway", "No running web process for <code>"+esc+"</code>."),
		badGatewayPage: errorPage("502 Bad Gateway", "The web process of <code>"+esc+"</code> is not responding."),
	}
	for _, addr := range addrs {
		t := &target{
			addr:   addr,
			url:    &url.URL{Scheme: "http", Host: addr},
			app:    st,
			stats:  r.statsLocked(addr),
			router: r,
		}
		t.proxy = &httputil.ReverseProxy{
			Rewrite:      t.rewrite,
			Transport:    t,
			ErrorHandler: t.errorHandler,
			BufferPool:   &r.buffers,
			ErrorLog:     r.errorLog,
		}
		st.targets = append(st.targets, t)
	}
	return st
}

// targetAddrs returns a copy of the target addresses of st.
func (st *appState) targetAddrs() []string {
	out := make([]string, len(st.targets))
	for i, t := range st.targets {
		out[i] = t.addr
	}
	return out
}

// pick returns the next target round robin. st must have targets.
func (st *appState) pick() *target {
	n := st.rr.Add(1) - 1
	return st.targets[n%uint32(len(st.targets))]
}

// dedup returns a copy of hosts in canonical form (a no-op for validated
// hosts), without empty strings and duplicates, keeping the first occurrence
// order.
func dedup(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = canonicalHost(h)
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
