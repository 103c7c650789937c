package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// Port mapping schemes (Dokku's).
const (
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
	SchemeTCP   = "tcp"
)

// Dokku's public ports of the HTTP and HTTPS proxy: mappings on them always
// mean berth's own proxy listeners, whatever --http-addr says.
const (
	publicHTTPPort  = 80
	publicHTTPSPort = 443
)

// portsState is the pipeline's share of port mappings: the extra listeners
// and the lock that makes checking a host port free and taking it one step
// across apps.
type portsState struct {
	once      sync.Once
	listeners *proxy.Listeners
	mu        sync.Mutex
}

// listeners returns the manager of the extra listeners, made on first use.
func (p *Pipeline) listeners() *proxy.Listeners {
	p.ports.once.Do(func() {
		p.ports.listeners = proxy.NewListeners(p.router, p.opts.PortsHost)
	})
	return p.ports.listeners
}

// ClosePorts closes every extra listener of port mappings (at shutdown);
// HTTP requests in flight may finish until ctx is done.
func (p *Pipeline) ClosePorts(ctx context.Context) { p.listeners().CloseAll(ctx) }

// ParsePortMapping parses SCHEME:HOST_PORT:CONTAINER_PORT (scheme http,
// https or tcp; ports 1 to 65535).
func ParsePortMapping(s string) (store.PortMapping, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return store.PortMapping{}, fmt.Errorf("invalid port mapping %q: use SCHEME:HOST_PORT:CONTAINER_PORT (e.g. http:80:5000)", s)
	}
	scheme, err := parseScheme(parts[0], s)
	if err != nil {
		return store.PortMapping{}, err
	}
	host, err := parsePort(parts[1], s)
	if err != nil {
		return store.PortMapping{}, err
	}
	container, err := parsePort(parts[2], s)
	if err != nil {
		return store.PortMapping{}, err
	}
	return store.PortMapping{Scheme: scheme, HostPort: host, ContainerPort: container}, nil
}

// ParsePortMappings parses mapping arguments, refusing duplicates.
func ParsePortMappings(args []string) ([]store.PortMapping, error) {
	out := make([]store.PortMapping, 0, len(args))
	for _, a := range args {
		m, err := ParsePortMapping(a)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.HostPort == m.HostPort {
				if o == m {
					return nil, fmt.Errorf("port mapping %s is given twice", m)
				}
				return nil, fmt.Errorf("port mappings %s and %s use the same host port", o, m)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func parseScheme(s, arg string) (string, error) {
	switch s {
	case SchemeHTTP, SchemeHTTPS, SchemeTCP:
		return s, nil
	}
	return "", fmt.Errorf("invalid port mapping %q: scheme must be http, https or tcp", arg)
}

func parsePort(s, arg string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("invalid port mapping %q: %q is not a port number", arg, s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port mapping %q: port %d is not between 1 and 65535", arg, n)
	}
	return n, nil
}

// PortSelector picks mappings for ports:remove: HOST_PORT, SCHEME:HOST_PORT
// or SCHEME:HOST_PORT:CONTAINER_PORT.
type PortSelector struct {
	Scheme        string // "" matches any
	HostPort      int
	ContainerPort int // 0 matches any
}

// ParsePortSelector parses a ports:remove argument.
func ParsePortSelector(s string) (PortSelector, error) {
	parts := strings.Split(s, ":")
	var sel PortSelector
	var err error
	switch len(parts) {
	case 1:
		sel.HostPort, err = parsePort(parts[0], s)
	case 2, 3:
		if sel.Scheme, err = parseScheme(parts[0], s); err != nil {
			return sel, err
		}
		if sel.HostPort, err = parsePort(parts[1], s); err != nil {
			return sel, err
		}
		if len(parts) == 3 {
			sel.ContainerPort, err = parsePort(parts[2], s)
		}
	default:
		err = fmt.Errorf("invalid port %q: use HOST_PORT, SCHEME:HOST_PORT or SCHEME:HOST_PORT:CONTAINER_PORT", s)
	}
	return sel, err
}

// Matches reports whether m is selected.
func (sel PortSelector) Matches(m store.PortMapping) bool {
	return m.HostPort == sel.HostPort && (sel.Scheme == "" || sel.Scheme == m.Scheme) &&
		(sel.ContainerPort == 0 || sel.ContainerPort == m.ContainerPort)
}

// isMainHTTP reports whether m maps the HTTP proxy's own listener.
func (p *Pipeline) isMainHTTP(m store.PortMapping) bool {
	return m.Scheme == SchemeHTTP && (m.HostPort == publicHTTPPort || m.HostPort == p.opts.HTTPPort)
}

// isMainHTTPS reports whether m maps the HTTPS proxy's own listener.
func (p *Pipeline) isMainHTTPS(m store.PortMapping) bool {
	return m.Scheme == SchemeHTTPS && (m.HostPort == publicHTTPSPort || (p.opts.HTTPSPort != 0 && m.HostPort == p.opts.HTTPSPort))
}

// exclusive reports whether m needs a listener of its own (an extra HTTP
// port or a TCP port), which only one app may have.
func (p *Pipeline) exclusive(m store.PortMapping) bool {
	return !p.isMainHTTP(m) && !p.isMainHTTPS(m)
}

// webPort returns the container port web processes serve on under ms: the
// mapping of the HTTP proxy, else of the HTTPS proxy, else the first http or
// https mapping. ok is false when ms sets none (the default applies).
func (p *Pipeline) webPort(ms []store.PortMapping) (port int, ok bool) {
	for _, pick := range []func(store.PortMapping) bool{
		p.isMainHTTP, p.isMainHTTPS,
		func(m store.PortMapping) bool { return m.Scheme != SchemeTCP },
	} {
		for _, m := range ms {
			if pick(m) {
				return m.ContainerPort, true
			}
		}
	}
	return 0, false
}

// servesMain reports whether the app's hosts are routed by the HTTP(S)
// proxy under ms: by default (no mappings) and with an http:80 or https:443
// mapping.
func (p *Pipeline) servesMain(ms []store.PortMapping) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if p.isMainHTTP(m) || p.isMainHTTPS(m) {
			return true
		}
	}
	return false
}

// withMappedPort returns rel with PORT set to the container port its app's
// port mappings give web processes (unchanged without mappings).
func (p *Pipeline) withMappedPort(ctx context.Context, rel store.Release) (store.Release, error) {
	ms, err := p.store.PortMappings(ctx, rel.App)
	if err != nil {
		return rel, err
	}
	port, ok := p.webPort(ms)
	if !ok || releasePort(rel) == port {
		return rel, nil
	}
	rel.Env = maps.Clone(rel.Env)
	if rel.Env == nil {
		rel.Env = map[string]string{}
	}
	rel.Env["PORT"] = strconv.Itoa(port)
	return rel, nil
}

// DetectedPortMappings returns the mapping an app gets when it sets none:
// http:80:PORT, PORT being the app's PORT config var or 5000.
func (p *Pipeline) DetectedPortMappings(ctx context.Context, app string) ([]store.PortMapping, error) {
	env, err := p.store.MergedConfig(ctx, app)
	if err != nil {
		return nil, err
	}
	port := releasePort(store.Release{Env: env})
	return []store.PortMapping{{App: app, Scheme: SchemeHTTP, HostPort: publicHTTPPort, ContainerPort: port}}, nil
}

// PortMappings returns app's port mappings and whether they are the
// detected default (none set).
func (p *Pipeline) PortMappings(ctx context.Context, app string) ([]store.PortMapping, bool, error) {
	ms, err := p.store.PortMappings(ctx, app)
	if err != nil {
		return nil, false, err
	}
	if len(ms) > 0 {
		return ms, false, nil
	}
	ms, err = p.DetectedPortMappings(ctx, app)
	return ms, true, err
}

// ListeningPorts returns the host ports open for app's extra listeners.
func (p *Pipeline) ListeningPorts(app string) []int { return p.listeners().Ports(app) }

// PortsHost returns the address extra listeners bind ("" for all).
func (p *Pipeline) PortsHost() string { return p.opts.PortsHost }

// checkPortMappings refuses mappings that cannot work, or that would take a
// port from berth itself or from another app. It reads other apps'
// mappings, so the caller holds p.ports.mu.
func (p *Pipeline) checkPortMappings(ctx context.Context, app string, ms []store.PortMapping) error {
	var mainHTTP, mainHTTPS *store.PortMapping
	for i, m := range ms {
		switch {
		case p.isMainHTTP(m):
			mainHTTP = &ms[i]
		case p.isMainHTTPS(m):
			mainHTTPS = &ms[i]
		case m.Scheme == SchemeHTTPS:
			return fmt.Errorf("cannot map %s: https is only served on the HTTPS proxy's port (%s); for TLS handled by the app use tcp:%d:%d",
				m, p.httpsPortsText(), m.HostPort, m.ContainerPort)
		}
		if !p.exclusive(m) {
			continue
		}
		if what := p.reservedPort(m.HostPort); what != "" {
			return fmt.Errorf("cannot map %s: port %d is %s", m, m.HostPort, what)
		}
	}
	if mainHTTP != nil && mainHTTPS != nil && mainHTTP.ContainerPort != mainHTTPS.ContainerPort {
		return fmt.Errorf("cannot map %s and %s: berth's proxy sends HTTP and HTTPS to the same container port", *mainHTTP, *mainHTTPS)
	}
	all, err := p.store.AllPortMappings(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if !p.exclusive(m) {
			continue
		}
		for _, o := range all {
			if o.App != app && o.HostPort == m.HostPort && p.exclusive(o) {
				return fmt.Errorf("cannot map %s: host port %d is already used by app %s (%s)", m, m.HostPort, o.App, o)
			}
		}
	}
	return nil
}

func (p *Pipeline) httpsPortsText() string {
	if p.opts.HTTPSPort != 0 && p.opts.HTTPSPort != publicHTTPSPort {
		return fmt.Sprintf("%d or %d", publicHTTPSPort, p.opts.HTTPSPort)
	}
	return strconv.Itoa(publicHTTPSPort)
}

// reservedPort says what berth itself uses host port for, "" if nothing.
func (p *Pipeline) reservedPort(port int) string {
	switch {
	case port == publicHTTPPort || port == p.opts.HTTPPort:
		return "the HTTP proxy's port (map it with http)"
	case port == publicHTTPSPort || (p.opts.HTTPSPort != 0 && port == p.opts.HTTPSPort):
		return "the HTTPS proxy's port (map it with https)"
	}
	if what, ok := p.opts.ReservedPorts[port]; ok {
		return "used by " + what
	}
	return ""
}

// schemeOf is the listener scheme of an exclusive mapping.
func schemeOf(m store.PortMapping) string {
	if m.Scheme == SchemeTCP {
		return proxy.SchemeTCP
	}
	return proxy.SchemeHTTP
}

// SetPortMappings replaces app's port mappings (none: back to the default)
// and applies them at once: listeners for new host ports open (a port that
// cannot be opened refuses the whole change), routes follow, listeners of
// removed mappings close. When the container port of web processes
// changes, a deployed app is restarted (health-gated) so $PORT follows.
func (p *Pipeline) SetPortMappings(ctx context.Context, app string, ms []store.PortMapping, by string, out io.Writer) error {
	restart, err := p.setPortMappings(ctx, app, ms, by, out)
	if err != nil || !restart {
		return err
	}
	ui.Step(out, "Restarting %s so its web processes serve on the new container port", app)
	if err := p.Restart(ctx, app, by, out); err != nil {
		return fmt.Errorf("restart %s on its new container port: %w", app, err)
	}
	return nil
}

func (p *Pipeline) setPortMappings(ctx context.Context, app string, ms []store.PortMapping, by string, out io.Writer) (bool, error) {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return false, err
	}
	defer release()
	for i := range ms {
		ms[i].App = app
	}
	p.ports.mu.Lock()
	defer p.ports.mu.Unlock()
	if err := p.checkPortMappings(ctx, app, ms); err != nil {
		return false, err
	}
	oldMs, err := p.store.PortMappings(ctx, app)
	if err != nil {
		return false, err
	}
	var rel store.Release
	if a.CurrentRelease != 0 {
		if rel, err = p.currentRelease(ctx, a); err != nil {
			return false, err
		}
	}
	before, err := p.withMappedPort(ctx, rel)
	if err != nil {
		return false, err
	}

	// Open the new listeners first: a port that cannot be opened leaves
	// everything as it was.
	l := p.listeners()
	var opened []int
	for _, m := range ms {
		if !p.exclusive(m) || slices.Contains(l.Ports(app), m.HostPort) && l.Scheme(m.HostPort) == schemeOf(m) {
			continue
		}
		if l.Scheme(m.HostPort) == "" {
			opened = append(opened, m.HostPort)
		}
		if err := l.Open(app, schemeOf(m), m.HostPort); err != nil {
			for _, port := range opened {
				l.Close(port)
			}
			return false, fmt.Errorf("cannot map %s: %w", m, err)
		}
	}
	if err := p.store.SetPortMappings(ctx, app, ms); err != nil {
		for _, port := range opened {
			l.Close(port)
		}
		return false, err
	}
	p.event(ctx, app, "ports", "port mappings set to %s (were %s) by %s", formatMappings(ms), formatMappings(oldMs), by)
	if err := p.RefreshRoutesLocked(ctx, app); err != nil {
		return false, err
	}
	for _, m := range ms {
		if p.exclusive(m) {
			ui.Detail(out, "%s listening on %s", m, l.Addr(m.HostPort))
		}
	}
	if a.CurrentRelease == 0 || a.Stopped {
		return false, nil
	}
	after, err := p.withMappedPort(ctx, rel)
	if err != nil {
		return false, err
	}
	return releasePort(before) != releasePort(after), nil
}

// formatMappings renders mappings as Dokku's DOKKU_PROXY_PORT_MAP does.
func formatMappings(ms []store.PortMapping) string {
	if len(ms) == 0 {
		return "the default"
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, " ")
}

// portRouting returns app's mappings and the hosts the HTTP(S) proxy routes
// for it: hosts, or none when its mappings leave out the proxy's ports.
func (p *Pipeline) portRouting(ctx context.Context, app string, hosts []string) ([]store.PortMapping, []string, error) {
	ms, err := p.store.PortMappings(ctx, app)
	if err != nil {
		return nil, nil, err
	}
	if !p.servesMain(ms) {
		hosts = nil
	}
	return ms, hosts, nil
}

// routePorts points the extra listeners of app's mappings at the web
// containers among cs (on each mapping's container port), opening listeners
// that are missing (after a server restart) and closing those of mappings
// that are gone. A listener that cannot be opened is logged.
func (p *Pipeline) routePorts(app string, ms []store.PortMapping, cs []scheduler.Container) {
	l := p.listeners()
	want := map[int]bool{}
	for _, m := range ms {
		if !p.exclusive(m) {
			continue
		}
		want[m.HostPort] = true
		var targets []string
		for _, c := range cs {
			if c.Process == "web" && c.IP != "" {
				targets = append(targets, net.JoinHostPort(c.IP, strconv.Itoa(m.ContainerPort)))
			}
		}
		p.router.SetPort(m.HostPort, app, targets)
		if err := l.Open(app, schemeOf(m), m.HostPort); err != nil {
			p.log.Warn("open port mapping", "app", app, "mapping", m.String(), "err", err)
		}
	}
	for _, port := range l.Ports(app) {
		if !want[port] {
			l.Close(port)
			p.router.RemovePort(port)
		}
	}
}

// closePorts closes every extra listener of app (it is destroyed).
func (p *Pipeline) closePorts(app string) {
	l := p.listeners()
	for _, port := range l.Ports(app) {
		l.Close(port)
		p.router.RemovePort(port)
	}
}

// drainAddrs returns the proxy targets of web container c: its web port and
// the container port of each of its app's extra mappings.
func (p *Pipeline) drainAddrs(ctx context.Context, c scheduler.Container) []string {
	addrs := []string{webAddr(c)}
	ms, err := p.store.PortMappings(ctx, c.App)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.log.Warn("read port mappings", "app", c.App, "err", err)
		}
		return addrs
	}
	for _, m := range ms {
		if a := net.JoinHostPort(c.IP, strconv.Itoa(m.ContainerPort)); p.exclusive(m) && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}
