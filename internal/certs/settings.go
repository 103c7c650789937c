package certs

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/berth-paas/berth/internal/store"
)

// ACME directories of Let's Encrypt.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Setting keys. letsencrypt-* keys are global settings with per-app
// overrides (email, server, dns-provider, challenge); certs-* keys are
// per-app settings with global defaults.
const (
	SettingEnabled       = "letsencrypt-enabled" // per app: "true"
	SettingEmail         = "letsencrypt-email"
	SettingServer        = "letsencrypt-server"
	SettingDNSProvider   = "letsencrypt-dns-provider"
	SettingChallenge     = "letsencrypt-challenge"
	SettingDNSResolvers  = "letsencrypt-dns-resolvers" // global
	SettingCARoot        = "letsencrypt-ca-root"       // global: PEM
	SettingLastError     = "letsencrypt-last-error"    // per app
	SettingLastErrorAt   = "letsencrypt-last-error-at" // per app
	SettingRedirect      = "certs-redirect"
	SettingHSTS          = "certs-hsts"
	SettingHSTSMaxAge    = "certs-hsts-max-age"
	SettingHSTSSubdomain = "certs-hsts-include-subdomains"
	SettingHSTSPreload   = "certs-hsts-preload"
)

// Challenge modes (letsencrypt:set challenge).
const (
	ChallengeAuto    = ""            // http-01 and tls-alpn-01; dns-01 for wildcards
	ChallengeHTTP    = "http-01"     // http-01 only (dns-01 for wildcards)
	ChallengeTLSALPN = "tls-alpn-01" // tls-alpn-01 only (dns-01 for wildcards)
	ChallengeDNS     = "dns-01"      // dns-01 for every name
)

// DefaultHSTSMaxAge is Dokku's default max-age (about six months).
const DefaultHSTSMaxAge = 15724800

// setting returns app's value of key, else the global one, else def.
func setting(ctx context.Context, st *store.Store, app, key, def string) (string, error) {
	v, ok, err := st.EffectiveSetting(ctx, app, key)
	if err != nil || !ok {
		return def, err
	}
	return v, nil
}

// NormalizeServer turns a letsencrypt:set server value into a directory
// URL: "production" and "staging" name Let's Encrypt's; anything else must
// be an https URL.
func NormalizeServer(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", "production", "prod", "default":
		return LetsEncryptProduction, nil
	case "staging", "stage":
		return LetsEncryptStaging, nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("invalid ACME server %q: use an https:// directory URL, production or staging", v)
	}
	return u.String(), nil
}

// Policy is the HTTPS behaviour settings of an app.
type Policy struct {
	Redirect          bool
	HSTS              bool
	MaxAge            int
	IncludeSubdomains bool
	Preload           bool
}

// Header returns the Strict-Transport-Security value, "" when off.
func (p Policy) Header() string {
	if !p.HSTS {
		return ""
	}
	h := "max-age=" + strconv.Itoa(p.MaxAge)
	if p.IncludeSubdomains {
		h += "; includeSubDomains"
	}
	if p.Preload {
		h += "; preload"
	}
	return h
}

// LoadPolicy reads app's HTTPS settings (app, else global, else default).
func LoadPolicy(ctx context.Context, st *store.Store, app string) (Policy, error) {
	var p Policy
	var err error
	b := func(key string, def bool) bool {
		if err != nil {
			return def
		}
		var v string
		v, err = setting(ctx, st, app, key, strconv.FormatBool(def))
		return v == "true"
	}
	p.Redirect = b(SettingRedirect, true)
	p.HSTS = b(SettingHSTS, true)
	p.IncludeSubdomains = b(SettingHSTSSubdomain, false)
	p.Preload = b(SettingHSTSPreload, false)
	if err != nil {
		return p, err
	}
	v, err := setting(ctx, st, app, SettingHSTSMaxAge, strconv.Itoa(DefaultHSTSMaxAge))
	if err != nil {
		return p, err
	}
	if p.MaxAge, err = strconv.Atoi(v); err != nil || p.MaxAge < 0 {
		p.MaxAge = DefaultHSTSMaxAge
	}
	return p, nil
}
