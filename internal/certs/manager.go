// Package certs owns berth's TLS certificates: apps' manual and
// self-signed certificates, ACME certificates obtained and renewed through
// certmagic (HTTP-01, TLS-ALPN-01, DNS-01 via the DNS provider of
// internal/dns), the certificate choice in each TLS handshake, and the
// HTTPS policy (redirect, HSTS) the proxy applies per app. Everything lives
// in the store, so servers sharing it share certificates.
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"

	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/store"
)

// Options configure a Manager.
type Options struct {
	Store  *store.Store
	Router *proxy.Router
	// Hosts returns every host an app answers to.
	Hosts func(ctx context.Context, app string) ([]string, error)
	// ListenHost is the host part of the HTTP listener ("" for all), where
	// certmagic would otherwise try to bind challenge listeners itself.
	ListenHost string
	// HTTPPort and HTTPSPort are the bound proxy ports; HTTPSPort 0 means
	// HTTPS is off (no TLS-ALPN-01, no redirects).
	HTTPPort, HTTPSPort int
	Logger              *slog.Logger
}

// Manager keeps the certificates of every app and answers TLS handshakes.
type Manager struct {
	st     *store.Store
	router *proxy.Router
	hosts  func(ctx context.Context, app string) ([]string, error)
	log    *slog.Logger
	zap    *zap.Logger
	opts   Options

	storage *Storage
	cache   *certmagic.Cache
	edge    *proxy.Edge

	// ctx lives as long as the server: background ACME work stops with it.
	ctx context.Context

	// mu serialises changes to the fields below and to state.
	mu sync.Mutex
	// configs are the certmagic configs by profile key.
	configs map[string]*certmagic.Config
	// managed maps each ACME-managed name to its app and config.
	managed map[string]managedName
	// appCtx is the context of each app's background obtains.
	appCtx map[string]appWork
	// challenge answers HTTP-01 requests (any issuer can: challenges are
	// looked up in process memory and then in storage).
	challenge atomic.Pointer[certmagic.ACMEIssuer]
	// challengeCfg answers TLS-ALPN-01 handshakes.
	challengeCfg atomic.Pointer[certmagic.Config]

	state atomic.Pointer[tlsState]
}

type appWork struct {
	ctx    context.Context
	cancel context.CancelFunc
}

type managedName struct {
	app string
	cfg *certmagic.Config
	key string // profile key
}

// tlsState is what handshakes read, published atomically.
type tlsState struct {
	manual map[string]*Parsed                      // app -> its certificate
	acme   map[string]map[string]*certmagic.Config // app -> name -> config
	secure map[string][]string                     // app -> hosts with a certificate
}

// New returns a Manager. Call [Manager.Start] once routes are set.
func New(ctx context.Context, o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Manager{
		st: o.Store, router: o.Router, hosts: o.Hosts, log: o.Logger, opts: o, ctx: ctx,
		zap:     zapLogger(o.Logger),
		configs: map[string]*certmagic.Config{},
		managed: map[string]managedName{},
		appCtx:  map[string]appWork{},
	}
	m.storage = NewStorage(o.Store, o.Logger)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: m.configForCert,
		Logger:           m.zap,
	})
	m.state.Store(&tlsState{manual: map[string]*Parsed{}, acme: map[string]map[string]*certmagic.Config{}, secure: map[string][]string{}})
	return m
}

// SetEdge connects the proxy's front doors, which get every app's HTTPS
// policy from now on.
func (m *Manager) SetEdge(e *proxy.Edge) { m.edge = e }

// Storage returns the certmagic storage.
func (m *Manager) Storage() *Storage { return m.storage }

// Stop stops background certificate maintenance.
func (m *Manager) Stop() { m.cache.Stop() }

// Start loads every app's certificates, starts managing the ACME ones and
// keeps them in sync with the apps' hosts (every minute, and on
// [Manager.Sync]).
func (m *Manager) Start(ctx context.Context) {
	if err := m.refreshChallenge(ctx); err != nil {
		m.log.Warn("prepare ACME challenge solver", "err", err)
	}
	m.SyncAll(ctx)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.SyncAll(ctx)
			}
		}
	}()
}

// SyncAll syncs every app.
func (m *Manager) SyncAll(ctx context.Context) {
	apps, err := m.st.Apps(ctx)
	if err != nil {
		m.log.Warn("list apps for certificates", "err", err)
		return
	}
	names := make([]string, 0, len(apps))
	for _, a := range apps {
		names = append(names, a.Name)
		if err := m.Sync(ctx, a.Name); err != nil {
			m.log.Warn("sync certificates", "app", a.Name, "err", err)
		}
	}
	// Forget apps that no longer exist.
	m.mu.Lock()
	var gone []string
	for app := range m.state.Load().manual {
		if !slices.Contains(names, app) {
			gone = append(gone, app)
		}
	}
	for _, mn := range m.managed {
		if !slices.Contains(names, mn.app) && !slices.Contains(gone, mn.app) {
			gone = append(gone, mn.app)
		}
	}
	m.mu.Unlock()
	for _, app := range gone {
		m.Forget(ctx, app, false)
	}
}

// Sync brings app's certificates in line with its settings and hosts: it
// loads its manual certificate, manages ACME certificates for the hosts it
// has (obtaining missing ones in the background, with retries) and stops
// managing those of hosts it lost, then publishes its HTTPS policy.
func (m *Manager) Sync(ctx context.Context, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncLocked(ctx, app, false)
}

func (m *Manager) syncLocked(ctx context.Context, app string, interactive bool) error {
	st := m.state.Load().clone()
	defer func() { m.state.Store(st); m.publish(ctx, app, st) }()

	delete(st.manual, app)
	c, err := m.st.AppCertOf(ctx, app)
	switch {
	case err == nil:
		p, perr := ParsePair(c.CertPEM, c.KeyPEM, time.Time{})
		if perr != nil {
			m.log.Warn("the stored certificate of an app cannot be used", "app", app, "err", perr)
		} else {
			st.manual[app] = p
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}

	want := map[string]managedName{}
	enabled, err := m.acmeEnabled(ctx, app)
	if err != nil {
		return err
	}
	if enabled {
		names, err := m.acmeNames(ctx, app)
		if err != nil {
			return err
		}
		for _, n := range names {
			cfg, key, err := m.configFor(ctx, app, n)
			if err != nil {
				m.recordError(ctx, app, err)
				continue
			}
			want[n] = managedName{app: app, cfg: cfg, key: key}
		}
	}
	// Stop managing names the app lost (or whose config changed).
	for n, mn := range m.managed {
		if mn.app != app {
			continue
		}
		if w, ok := want[n]; !ok || w.key != mn.key {
			m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: n}})
			delete(m.managed, n)
		}
	}
	if !enabled {
		m.stopApp(app)
	}
	acme := map[string]*certmagic.Config{}
	var newNames []string
	for n, w := range want {
		acme[n] = w.cfg
		if _, ok := m.managed[n]; ok {
			continue
		}
		m.managed[n] = w
		newNames = append(newNames, n)
	}
	sort.Strings(newNames)
	if len(acme) > 0 {
		st.acme[app] = acme
	} else {
		delete(st.acme, app)
	}
	if interactive || len(newNames) == 0 {
		return nil
	}
	actx := m.appContext(app)
	m.state.Store(st) // so events of the new names find their app
	for _, n := range newNames {
		if err := m.managed[n].cfg.ManageAsync(actx, []string{n}); err != nil {
			m.recordError(ctx, app, err)
		}
	}
	return nil
}

// appContext returns the context of app's background ACME work, which
// [Manager.Forget] and disabling cancel. Must be called with m.mu held.
func (m *Manager) appContext(app string) context.Context {
	if w, ok := m.appCtx[app]; ok {
		return w.ctx
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.appCtx[app] = appWork{ctx: ctx, cancel: cancel}
	return ctx
}

// stopApp cancels app's background ACME work. Must be called with m.mu
// held.
func (m *Manager) stopApp(app string) {
	if w, ok := m.appCtx[app]; ok {
		w.cancel()
		delete(m.appCtx, app)
	}
}

// clone copies the maps of a state (the values are immutable).
func (s *tlsState) clone() *tlsState {
	n := &tlsState{
		manual: make(map[string]*Parsed, len(s.manual)),
		acme:   make(map[string]map[string]*certmagic.Config, len(s.acme)),
		secure: make(map[string][]string, len(s.secure)),
	}
	for k, v := range s.manual {
		n.manual[k] = v
	}
	for k, v := range s.acme {
		n.acme[k] = v
	}
	for k, v := range s.secure {
		n.secure[k] = v
	}
	return n
}

// publish computes which of app's hosts have a certificate and hands the
// app's HTTPS policy to the proxy. It updates st.secure.
func (m *Manager) publish(ctx context.Context, app string, st *tlsState) {
	hosts, err := m.hosts(ctx, app)
	if err != nil {
		hosts = nil
	}
	var secure []string
	for _, h := range hosts {
		if m.hasCert(st, app, h) {
			secure = append(secure, h)
		}
	}
	if len(secure) > 0 {
		st.secure[app] = secure
	} else {
		delete(st.secure, app)
	}
	if m.edge == nil {
		return
	}
	if _, err := m.st.App(ctx, app); errors.Is(err, store.ErrNotFound) {
		m.edge.RemovePolicy(app)
		return
	}
	pol, err := LoadPolicy(ctx, m.st, app)
	if err != nil {
		m.log.Warn("read HTTPS settings", "app", app, "err", err)
	}
	m.edge.SetPolicy(app, proxy.HTTPSPolicy{
		Secure:   secure,
		Redirect: pol.Redirect && m.opts.HTTPSPort != 0,
		HSTS:     pol.Header(),
	})
}

// hasCert reports whether app has a usable certificate for host.
func (m *Manager) hasCert(st *tlsState, app, host string) bool {
	if p := st.manual[app]; p != nil && coversHost(p.Leaf.DNSNames, p, host) {
		return true
	}
	if cfg := st.acme[app][host]; cfg != nil {
		for _, c := range m.cache.AllMatchingCertificates(host) {
			if slices.Contains(c.Names, host) && !c.Expired() {
				return true
			}
		}
	}
	return false
}

// coversHost reports whether a certificate covers an app host; a wildcard
// host needs the same wildcard name in the certificate.
func coversHost(dnsNames []string, p *Parsed, host string) bool {
	if strings.HasPrefix(host, "*.") {
		for _, n := range dnsNames {
			if strings.EqualFold(n, host) {
				return true
			}
		}
		return false
	}
	return p.Covers(host)
}

// SecureHost reports whether host of app has a certificate (its URL is
// https://).
func (m *Manager) SecureHost(app, host string) bool {
	if m.opts.HTTPSPort == 0 {
		return false
	}
	return slices.Contains(m.state.Load().secure[app], host)
}

// HTTPSPort is the public HTTPS port (0: HTTPS is off).
func (m *Manager) HTTPSPort() int { return m.opts.HTTPSPort }

// errNoCert is the handshake error for names without a certificate.
type errNoCert struct{ name string }

func (e errNoCert) Error() string { return "no certificate for " + e.name }

// GetCertificate is the tls.Config callback of the HTTPS listener. It
// answers TLS-ALPN-01 challenges, then serves the certificate of the app
// the server name routes to: its manual one, else its ACME one. A name no
// app answers to, or one its app has no certificate for, fails the
// handshake: no app's certificate is ever served for another app's name.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol {
		cfg := m.challengeCfg.Load()
		if cfg == nil {
			return nil, errors.New("no ACME challenge in progress")
		}
		return cfg.GetCertificate(hello)
	}
	name := proxy.CanonicalHost(hello.ServerName)
	if name == "" {
		return nil, errNoCert{name: "a handshake without a server name"}
	}
	app := m.router.AppOf(name)
	if app == "" {
		return nil, errNoCert{name: name}
	}
	st := m.state.Load()
	if p := st.manual[app]; p != nil && p.Covers(name) {
		return &p.TLS, nil
	}
	if names := st.acme[app]; names != nil {
		cfg := names[name]
		if cfg == nil {
			if i := strings.IndexByte(name, '.'); i > 0 {
				cfg = names["*"+name[i:]]
			}
		}
		if cfg != nil {
			c, err := cfg.GetCertificate(hello)
			if err != nil {
				return nil, err
			}
			if c != nil && c.Leaf != nil && ownsAll(names, c.Leaf.DNSNames) {
				return c, nil
			}
		}
	}
	return nil, errNoCert{name: name}
}

// ownsAll reports whether every certificate name is one the app manages.
func ownsAll(names map[string]*certmagic.Config, certNames []string) bool {
	if len(certNames) == 0 {
		return false
	}
	for _, n := range certNames {
		if names[strings.ToLower(n)] == nil {
			return false
		}
	}
	return true
}

// HandleHTTPChallenge answers an ACME HTTP-01 request; it reports whether
// it did.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	iss := m.challenge.Load()
	return iss != nil && iss.HandleHTTPChallenge(w, r)
}

// TLSConfig returns the configuration of the HTTPS listener: certificates
// by SNI, HTTP/2 and HTTP/1.1, and TLS-ALPN-01 challenges.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1", acmez.ACMETLS1Protocol},
	}
}

// ManualCert returns app's manual certificate, if any.
func (m *Manager) ManualCert(app string) *Parsed { return m.state.Load().manual[app] }

// Forget stops everything about app (on apps:destroy): its ACME names are
// no longer managed and, with purge, their certificates are deleted from
// storage; its policy is dropped.
func (m *Manager) Forget(ctx context.Context, app string, purge bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state.Load().clone()
	var names []string
	for n, mn := range m.managed {
		if mn.app == app {
			names = append(names, n)
			m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: n}})
			delete(m.managed, n)
		}
	}
	m.stopApp(app)
	delete(st.manual, app)
	delete(st.acme, app)
	delete(st.secure, app)
	m.state.Store(st)
	if m.edge != nil {
		m.edge.RemovePolicy(app)
	}
	if purge {
		m.deleteStored(ctx, names)
	}
}

// deleteStored removes the stored ACME certificates of names, for every
// issuer.
func (m *Manager) deleteStored(ctx context.Context, names []string) {
	issuers, err := m.storage.List(ctx, "certificates", false)
	if err != nil {
		return
	}
	for _, dir := range issuers {
		issuer := strings.TrimPrefix(dir, "certificates/")
		for _, n := range names {
			if err := m.storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(issuer, n)); err != nil {
				m.log.Warn("delete stored certificate", "name", n, "err", err)
			}
		}
	}
}

// recordError remembers the last ACME error of app (shown by
// letsencrypt:list).
func (m *Manager) recordError(ctx context.Context, app string, err error) {
	ctx = context.WithoutCancel(ctx)
	msg := ""
	at := ""
	if err != nil {
		msg = strings.ReplaceAll(err.Error(), "\n", " ")
		at = time.Now().UTC().Format(time.RFC3339)
	}
	if _, aerr := m.st.App(ctx, app); aerr != nil {
		return
	}
	if cur, _, _ := m.st.Setting(ctx, app, SettingLastError); cur == msg {
		return // the same error again (a sync every minute): said already
	}
	if err != nil {
		m.log.Warn("ACME certificate error", "app", app, "err", err)
	}
	m.st.SetSetting(ctx, app, SettingLastError, msg)
	m.st.SetSetting(ctx, app, SettingLastErrorAt, at)
}

// appOfName returns the app managing an ACME name. It reads the published
// state, so certmagic's events never wait for m.mu.
func (m *Manager) appOfName(name string) string {
	for app, names := range m.state.Load().acme {
		if names[name] != nil {
			return app
		}
	}
	return ""
}

// onEvent follows certmagic's events: failures and successes are recorded
// per app, and a newly cached certificate republishes its app's policy.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_failed":
		name, _ := data["identifier"].(string)
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("certificate could not be obtained")
		}
		if app := m.appOfName(name); app != "" {
			renewal, _ := data["renewal"].(bool)
			what := "obtain"
			if renewal {
				what = "renew"
			}
			m.recordError(ctx, app, fmt.Errorf("%s %s: %w", what, name, acmeError(err)))
		}
	case "cert_obtained":
		name, _ := data["identifier"].(string)
		if app := m.appOfName(name); app != "" {
			m.recordError(ctx, app, nil)
		}
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		apps := map[string]bool{}
		for _, n := range sans {
			if app := m.appOfName(n); app != "" {
				apps[app] = true
			}
		}
		for app := range apps {
			go m.republish(app)
		}
	}
	return nil
}

// republish recomputes app's secure hosts and policy (after a certificate
// arrived in the cache).
func (m *Manager) republish(app string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state.Load().clone()
	m.publish(m.ctx, app, st)
	m.state.Store(st)
}
