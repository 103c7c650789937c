package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"

	"github.com/berth-paas/berth/internal/dns"
	"github.com/berth-paas/berth/internal/store"
)

// profile is what an ACME certificate is obtained with.
type profile struct {
	ca        string
	email     string
	challenge string // http-01, tls-alpn-01, dns-01 or "" (both non-DNS)
	dnsConfig *dns.Config
	resolvers []string
	roots     *x509.CertPool
	rootsPEM  string
}

func (p profile) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", p.ca, p.email, p.challenge, strings.Join(p.resolvers, ","), p.rootsPEM)
	if p.dnsConfig != nil {
		fmt.Fprintf(h, "\x00%s", p.dnsConfig.Name)
		keys := make([]string, 0, len(p.dnsConfig.Settings))
		for k := range p.dnsConfig.Settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "\x00%s=%s", k, p.dnsConfig.Settings[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (m *Manager) acmeEnabled(ctx context.Context, app string) (bool, error) {
	v, _, err := m.st.Setting(ctx, app, SettingEnabled)
	return v == "true", err
}

// acmeNames returns the hosts of app an ACME CA can issue for (not
// localhost, .local, .internal or IP addresses).
func (m *Manager) acmeNames(ctx context.Context, app string) ([]string, error) {
	hosts, err := m.hosts(ctx, app)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hosts {
		if certmagic.SubjectQualifiesForPublicCert(h) && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out, nil
}

// ACMENames is acmeNames for commands.
func (m *Manager) ACMENames(ctx context.Context, app string) ([]string, error) {
	return m.acmeNames(ctx, app)
}

// profileFor reads the settings an ACME name of app is obtained with.
func (m *Manager) profileFor(ctx context.Context, app, name string) (profile, error) {
	var p profile
	server, err := setting(ctx, m.st, app, SettingServer, "")
	if err != nil {
		return p, err
	}
	if p.ca, err = NormalizeServer(server); err != nil {
		return p, err
	}
	if p.email, err = setting(ctx, m.st, app, SettingEmail, ""); err != nil {
		return p, err
	}
	if p.challenge, err = setting(ctx, m.st, app, SettingChallenge, ChallengeAuto); err != nil {
		return p, err
	}
	provider, err := setting(ctx, m.st, app, SettingDNSProvider, "")
	if err != nil {
		return p, err
	}
	if provider != "" {
		p.challenge = ChallengeDNS
	}
	if strings.HasPrefix(name, "*.") {
		p.challenge = ChallengeDNS
	}
	if p.challenge == ChallengeTLSALPN && m.opts.HTTPSPort == 0 {
		return p, errors.New("the tls-alpn-01 challenge needs the HTTPS listener (--https-addr)")
	}
	if p.challenge == ChallengeDNS {
		c, ok, err := dns.LoadConfig(ctx, m.st)
		if err != nil {
			return p, err
		}
		if !ok {
			if strings.HasPrefix(name, "*.") {
				return p, fmt.Errorf("the wildcard domain %s needs the dns-01 challenge, but no DNS provider is configured: run dns:provider:set first", name)
			}
			return p, errors.New("the dns-01 challenge needs a DNS provider: run dns:provider:set first")
		}
		if provider != "" && provider != c.Name {
			return p, fmt.Errorf("letsencrypt dns-provider is %s but the configured DNS provider is %s", provider, c.Name)
		}
		p.dnsConfig = &c
		res, err := setting(ctx, m.st, "", SettingDNSResolvers, "")
		if err != nil {
			return p, err
		}
		p.resolvers = strings.FieldsFunc(res, func(r rune) bool { return r == ',' || r == ' ' })
		if len(p.resolvers) == 0 && c.Resolver() != "" {
			p.resolvers = []string{c.Resolver()}
		}
	}
	if p.rootsPEM, err = setting(ctx, m.st, "", SettingCARoot, ""); err != nil {
		return p, err
	}
	if p.rootsPEM != "" {
		if p.roots, _, err = ParseRoots([]byte(p.rootsPEM)); err != nil {
			return p, fmt.Errorf("letsencrypt ca-root: %w", err)
		}
	}
	return p, nil
}

// configFor returns the certmagic config (and its profile key) name of
// app is managed with. Must be called with m.mu held.
func (m *Manager) configFor(ctx context.Context, app, name string) (*certmagic.Config, string, error) {
	p, err := m.profileFor(ctx, app, name)
	if err != nil {
		return nil, "", err
	}
	key := p.key()
	if cfg := m.configs[key]; cfg != nil {
		return cfg, key, nil
	}
	cfg, err := m.newConfig(p)
	if err != nil {
		return nil, "", err
	}
	m.configs[key] = cfg
	return cfg, key, nil
}

// newConfig builds a certmagic config for p.
func (m *Manager) newConfig(p profile) (*certmagic.Config, error) {
	cfg := certmagic.New(m.cache, certmagic.Config{
		Storage: m.storage,
		Logger:  m.zap,
		OnEvent: m.onEvent,
		// No OCSP: it would reach the CA's responder on its own, and
		// Let's Encrypt no longer runs one.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	})
	tmpl := certmagic.ACMEIssuer{
		CA:     p.ca,
		Email:  p.email,
		Agreed: true,
		// Challenge listeners are berth's own: point certmagic at the
		// ports berth holds so it never binds one itself.
		ListenHost:              m.opts.ListenHost,
		AltHTTPPort:             m.opts.HTTPPort,
		AltTLSALPNPort:          m.opts.HTTPSPort,
		DisableHTTPChallenge:    p.challenge == ChallengeTLSALPN,
		DisableTLSALPNChallenge: p.challenge == ChallengeHTTP || m.opts.HTTPSPort == 0,
		TrustedRoots:            p.roots,
		Logger:                  m.zap,
	}
	if p.challenge == ChallengeDNS {
		prov, err := p.dnsConfig.New()
		if err != nil {
			return nil, err
		}
		tmpl.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        prov,
			TTL:                time.Minute,
			PropagationTimeout: 2 * time.Minute,
			Resolvers:          p.resolvers,
			Logger:             m.zap,
		}}
	}
	if p.ca != LetsEncryptProduction {
		tmpl.TestCA = p.ca // never fall back to Let's Encrypt's staging
	}
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, tmpl)}
	return cfg, nil
}

// configForCert is the cache's GetConfigForCert: the config managing the
// certificate's names (renewals). certmagic calls it holding its cache
// lock, so it reads the published state and never takes m.mu.
func (m *Manager) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	st := m.state.Load()
	for _, n := range c.Names {
		for _, names := range st.acme {
			if cfg := names[n]; cfg != nil {
				return cfg, nil
			}
		}
	}
	return nil, fmt.Errorf("no app manages the certificate for %v", c.Names)
}

// refreshChallenge (re)builds the issuer that answers HTTP-01 and
// TLS-ALPN-01 challenges, with the global ACME settings.
func (m *Manager) refreshChallenge(ctx context.Context) error {
	p, err := m.profileFor(ctx, "", "challenge.invalid")
	if err != nil {
		// Still answer challenges from process memory.
		p = profile{ca: LetsEncryptProduction}
	}
	p.challenge = ChallengeAuto
	p.dnsConfig = nil
	cfg, err := m.newConfig(p)
	if err != nil {
		return err
	}
	m.challengeCfg.Store(cfg)
	m.challenge.Store(cfg.Issuers[0].(*certmagic.ACMEIssuer))
	return nil
}

// SettingsChanged re-reads the ACME settings: configs are rebuilt and
// every app re-synced.
func (m *Manager) SettingsChanged(ctx context.Context) {
	if err := m.refreshChallenge(ctx); err != nil {
		m.log.Warn("prepare ACME challenge solver", "err", err)
	}
	m.SyncAll(ctx)
	// Forget configs no name uses any more.
	m.mu.Lock()
	defer m.mu.Unlock()
	used := map[string]bool{}
	for _, mn := range m.managed {
		used[mn.key] = true
	}
	for k := range m.configs {
		if !used[k] {
			delete(m.configs, k)
		}
	}
}

// Enable turns ACME on for app and obtains its certificates now, one name
// at a time, printing each; if one cannot be obtained, ACME is turned off
// again and the error returned. A manual certificate is replaced.
func (m *Manager) Enable(ctx context.Context, app string, out io.Writer, step func(string, ...any)) error {
	names, err := m.acmeNames(ctx, app)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%s has no domain a certificate authority can issue for (localhost, .local and IP addresses cannot have one): add one with domains:add", app)
	}
	// Check every name's settings first, so nothing is half done.
	for _, n := range names {
		if _, err := m.profileFor(ctx, app, n); err != nil {
			return err
		}
	}
	if err := m.st.SetSetting(ctx, app, SettingEnabled, "true"); err != nil {
		return err
	}
	m.mu.Lock()
	err = m.syncLocked(ctx, app, true)
	cfgs := map[string]*certmagic.Config{}
	for _, n := range names {
		if mn, ok := m.managed[n]; ok {
			cfgs[n] = mn.cfg
		}
	}
	m.mu.Unlock()
	if err != nil {
		return m.rollback(ctx, app, err)
	}
	for _, n := range names {
		cfg := cfgs[n]
		if cfg == nil {
			return m.rollback(ctx, app, fmt.Errorf("no ACME configuration for %s", n))
		}
		step("Getting a certificate for %s", n)
		if err := cfg.ManageSync(ctx, []string{n}); err != nil {
			return m.rollback(ctx, app, fmt.Errorf("get a certificate for %s: %w", n, acmeError(err)))
		}
	}
	m.recordError(ctx, app, nil)
	if _, err := m.st.DeleteAppCert(ctx, app); err != nil {
		return err
	}
	return m.Sync(ctx, app)
}

func (m *Manager) rollback(ctx context.Context, app string, cause error) error {
	ctx = context.WithoutCancel(ctx)
	m.st.SetSetting(ctx, app, SettingEnabled, "")
	m.recordError(ctx, app, cause)
	if err := m.Sync(ctx, app); err != nil {
		m.log.Warn("turn letsencrypt off after a failure", "app", app, "err", err)
	}
	return cause
}

// Disable turns ACME off for app; its ACME certificates are deleted.
func (m *Manager) Disable(ctx context.Context, app string) error {
	if err := m.st.SetSetting(ctx, app, SettingEnabled, ""); err != nil {
		return err
	}
	m.mu.Lock()
	var names []string
	for n, mn := range m.managed {
		if mn.app == app {
			names = append(names, n)
		}
	}
	err := m.syncLocked(ctx, app, false)
	m.mu.Unlock()
	m.deleteStored(ctx, names)
	m.st.SetSetting(ctx, app, SettingLastError, "")
	m.st.SetSetting(ctx, app, SettingLastErrorAt, "")
	return err
}

// Revoke revokes app's ACME certificates at the CA, deletes them and
// turns ACME off for app.
func (m *Manager) Revoke(ctx context.Context, app string, step func(string, ...any)) error {
	m.mu.Lock()
	type nc struct {
		name string
		cfg  *certmagic.Config
	}
	var todo []nc
	for n, mn := range m.managed {
		if mn.app == app {
			todo = append(todo, nc{n, mn.cfg})
		}
	}
	m.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i].name < todo[j].name })
	if len(todo) == 0 {
		return fmt.Errorf("%s has no letsencrypt certificate", app)
	}
	var errs []error
	for _, t := range todo {
		if err := t.cfg.RevokeCert(ctx, t.name, acme.ReasonUnspecified, true); err != nil {
			errs = append(errs, fmt.Errorf("revoke the certificate of %s: %w", t.name, acmeError(err)))
			continue
		}
		step("Revoked the certificate of %s", t.name)
	}
	if err := m.Disable(ctx, app); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Renew renews app's ACME certificates that are due (all of them with
// force), now, printing each.
func (m *Manager) Renew(ctx context.Context, app string, force bool, step func(string, ...any)) error {
	m.mu.Lock()
	type nc struct {
		name string
		cfg  *certmagic.Config
	}
	var todo []nc
	for n, mn := range m.managed {
		if mn.app == app {
			todo = append(todo, nc{n, mn.cfg})
		}
	}
	m.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i].name < todo[j].name })
	var errs []error
	for _, t := range todo {
		cur, ok := m.cached(t.name)
		if ok && !force && !cur.NeedsRenewal(t.cfg) {
			step("%s: not due for renewal (expires %s)", t.name, cur.Leaf.NotAfter.UTC().Format(time.RFC3339))
			continue
		}
		if !ok {
			if err := t.cfg.ManageSync(ctx, []string{t.name}); err != nil {
				err = fmt.Errorf("obtain the certificate of %s: %w", t.name, acmeError(err))
				m.recordError(ctx, app, err)
				errs = append(errs, err)
				continue
			}
			step("Obtained the certificate of %s", t.name)
			continue
		}
		if err := t.cfg.RenewCertSync(ctx, t.name, true); err != nil {
			err = fmt.Errorf("renew the certificate of %s: %w", t.name, acmeError(err))
			m.recordError(ctx, app, err)
			errs = append(errs, err)
			continue
		}
		// Swap the renewed certificate into the cache.
		m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: t.name}})
		if _, err := t.cfg.CacheManagedCertificate(ctx, t.name); err != nil {
			errs = append(errs, fmt.Errorf("load the renewed certificate of %s: %w", t.name, err))
			continue
		}
		step("Renewed the certificate of %s", t.name)
	}
	if len(errs) == 0 {
		m.recordError(ctx, app, nil)
	}
	m.republish(app)
	return errors.Join(errs...)
}

// cached returns the managed certificate in the cache for exactly name.
func (m *Manager) cached(name string) (certmagic.Certificate, bool) {
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			return c, true
		}
	}
	return certmagic.Certificate{}, false
}

// ACMEStatus is one app's ACME state, for letsencrypt:list.
type ACMEStatus struct {
	App     string
	Enabled bool
	Domains []string
	// Expiry is the earliest expiry of its certificates (zero: none yet).
	Expiry      time.Time
	Missing     []string // names without a certificate yet
	LastError   string
	LastErrorAt string
}

// Status reports app's ACME state.
func (m *Manager) Status(ctx context.Context, app string) (ACMEStatus, error) {
	s := ACMEStatus{App: app}
	var err error
	if s.Enabled, err = m.acmeEnabled(ctx, app); err != nil {
		return s, err
	}
	if s.LastError, _, err = m.st.Setting(ctx, app, SettingLastError); err != nil {
		return s, err
	}
	if s.LastErrorAt, _, err = m.st.Setting(ctx, app, SettingLastErrorAt); err != nil {
		return s, err
	}
	if !s.Enabled {
		return s, nil
	}
	m.mu.Lock()
	for n, mn := range m.managed {
		if mn.app == app {
			s.Domains = append(s.Domains, n)
		}
	}
	m.mu.Unlock()
	sort.Strings(s.Domains)
	for _, n := range s.Domains {
		c, ok := m.cached(n)
		if !ok {
			s.Missing = append(s.Missing, n)
			continue
		}
		if s.Expiry.IsZero() || c.Leaf.NotAfter.Before(s.Expiry) {
			s.Expiry = c.Leaf.NotAfter.UTC()
		}
	}
	return s, nil
}

// CertificateOf returns the leaf certificate serving name of app (manual
// or ACME), for reports.
func (m *Manager) CertificateOf(app, name string) (*x509.Certificate, string) {
	st := m.state.Load()
	if p := st.manual[app]; p != nil && coversHost(p.Leaf.DNSNames, p, name) {
		return p.Leaf, "manual"
	}
	if st.acme[app][name] != nil {
		if c, ok := m.cached(name); ok {
			return c.Leaf, "letsencrypt"
		}
	}
	return nil, ""
}

// SetManual validates and stores app's certificate and starts serving it.
// A certificate that does not parse, whose key does not match, or that
// has expired is refused and changes nothing.
func (m *Manager) SetManual(ctx context.Context, app, kind string, certPEM, keyPEM []byte) (*Parsed, error) {
	enabled, err := m.acmeEnabled(ctx, app)
	if err != nil {
		return nil, err
	}
	if enabled {
		return nil, fmt.Errorf("letsencrypt is enabled for %s: run letsencrypt:disable %s first", app, app)
	}
	p, err := ParsePair(certPEM, keyPEM, time.Now())
	if err != nil {
		return nil, err
	}
	if err := m.st.SetAppCert(ctx, store.AppCert{App: app, Kind: kind, CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		return nil, err
	}
	return p, m.Sync(ctx, app)
}

// RemoveManual removes app's certificate.
func (m *Manager) RemoveManual(ctx context.Context, app string) error {
	ok, err := m.st.DeleteAppCert(ctx, app)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s has no certificate", app)
	}
	return m.Sync(ctx, app)
}

// acmeError shortens certmagic's nested errors to the ACME server's
// problem, when there is one.
func acmeError(err error) error {
	var p acme.Problem
	if errors.As(err, &p) {
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		if msg == "" {
			msg = p.Type
		}
		return fmt.Errorf("the ACME server said: %s", msg)
	}
	return err
}
