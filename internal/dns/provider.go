// Package dns keeps DNS records of apps at a DNS provider: for apps that
// opt in (dns:enable), an A or AAAA record per app host pointing at the
// server's public addresses. Providers are libdns implementations (RFC 2136
// dynamic updates, Cloudflare); the same provider answers ACME DNS-01
// challenges (see internal/certs).
package dns

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"

	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/validate"
)

// Provider is what berth needs from a libdns provider.
type Provider interface {
	libdns.RecordGetter
	libdns.RecordAppender
	libdns.RecordSetter
	libdns.RecordDeleter
}

// Config is the configured DNS provider: its name and settings.
type Config struct {
	Name     string            `json:"name"`
	Settings map[string]string `json:"settings"`
}

// setting describes one provider setting.
type setting struct {
	key      string
	required bool
	secret   bool
	help     string
}

// providers lists the supported providers and their settings.
var providers = map[string][]setting{
	"rfc2136": {
		{key: "server", required: true, help: "the authoritative server taking dynamic updates, HOST[:PORT] (port 53 by default)"},
		{key: "zone", required: true, help: "the zone records are created in"},
		{key: "key-name", required: true, help: "the TSIG key name"},
		{key: "key-alg", help: "the TSIG algorithm: hmac-sha256 (default), hmac-sha224, hmac-sha384, hmac-sha512, hmac-sha1 or hmac-md5"},
		{key: "key-secret", required: true, secret: true, help: "the TSIG secret, base64"},
	},
	"cloudflare": {
		{key: "api-token", required: true, secret: true, help: "an API token with Zone.DNS:Edit"},
		{key: "zone-token", secret: true, help: "an optional Zone:Read token"},
		{key: "zone", required: true, help: "the zone records are created in"},
	},
}

// Names returns the supported provider names, sorted.
func Names() []string {
	out := make([]string, 0, len(providers))
	for n := range providers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SettingHelp returns "key: help" lines of provider name.
func SettingHelp(name string) []string {
	var out []string
	for _, s := range providers[name] {
		req := ""
		if s.required {
			req = " (required)"
		}
		out = append(out, s.key+req+": "+s.help)
	}
	return out
}

var tsigAlgs = []string{"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}

// ParseConfig validates a provider name and KEY=VALUE settings and returns
// the normalised config. The error is one sentence naming the bad setting.
func ParseConfig(name string, args []string) (Config, error) {
	specs, ok := providers[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown DNS provider %q: use one of %s", name, strings.Join(Names(), ", "))
	}
	c := Config{Name: name, Settings: map[string]string{}}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return Config{}, fmt.Errorf("invalid setting %q: use KEY=VALUE", a)
		}
		if !slices.ContainsFunc(specs, func(s setting) bool { return s.key == k }) {
			return Config{}, fmt.Errorf("unknown setting %q for provider %s: it takes %s", k, name, keysOf(specs))
		}
		c.Settings[k] = strings.TrimSpace(v)
	}
	for _, s := range specs {
		if s.required && c.Settings[s.key] == "" {
			return Config{}, fmt.Errorf("setting %s is required for provider %s (%s)", s.key, name, s.help)
		}
	}
	if z := c.Settings["zone"]; z != "" {
		zn, err := validate.Domain(z)
		if err != nil || strings.HasPrefix(zn, "*.") {
			return Config{}, fmt.Errorf("invalid zone %q: use a domain name", z)
		}
		c.Settings["zone"] = zn
	}
	switch name {
	case "rfc2136":
		srv := c.Settings["server"]
		if _, _, err := net.SplitHostPort(srv); err != nil {
			srv = net.JoinHostPort(srv, "53")
		}
		host, port, err := net.SplitHostPort(srv)
		if err != nil || host == "" {
			return Config{}, fmt.Errorf("invalid server %q: use HOST or HOST:PORT", c.Settings["server"])
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return Config{}, fmt.Errorf("invalid server %q: the port must be 1 to 65535", c.Settings["server"])
		}
		if net.ParseIP(host) == nil {
			if _, err := validate.Domain(host); err != nil {
				return Config{}, fmt.Errorf("invalid server %q: use an IP address or a host name", c.Settings["server"])
			}
		}
		c.Settings["server"] = srv
		alg := strings.TrimSuffix(strings.ToLower(c.Settings["key-alg"]), ".")
		if alg == "" {
			alg = "hmac-sha256"
		}
		if !slices.Contains(tsigAlgs, alg) {
			return Config{}, fmt.Errorf("invalid key-alg %q: use one of %s", c.Settings["key-alg"], strings.Join(tsigAlgs, ", "))
		}
		c.Settings["key-alg"] = alg
		kn, err := validate.Domain(c.Settings["key-name"])
		if err != nil {
			return Config{}, fmt.Errorf("invalid key-name %q: use a DNS name", c.Settings["key-name"])
		}
		c.Settings["key-name"] = kn
		if _, err := base64.StdEncoding.DecodeString(c.Settings["key-secret"]); err != nil {
			return Config{}, errors.New("invalid key-secret: it must be base64")
		}
	case "cloudflare":
		for _, k := range []string{"api-token", "zone-token"} {
			if strings.ContainsAny(c.Settings[k], " \t\r\n") {
				return Config{}, fmt.Errorf("invalid %s: it must not contain spaces", k)
			}
		}
	}
	return c, nil
}

func keysOf(specs []setting) string {
	ks := make([]string, len(specs))
	for i, s := range specs {
		ks[i] = s.key
	}
	return strings.Join(ks, ", ")
}

// Zone returns the zone of the config, as a domain without a trailing dot.
func (c Config) Zone() string { return c.Settings["zone"] }

// Public returns the settings with secrets masked, for reports.
func (c Config) Public() map[string]string {
	out := map[string]string{}
	for _, s := range providers[c.Name] {
		v, ok := c.Settings[s.key]
		if !ok {
			continue
		}
		if s.secret && v != "" {
			v = "********"
		}
		out[s.key] = v
	}
	return out
}

// Resolver is the DNS server to check challenge records against (the
// rfc2136 server), "" to use the system's resolvers.
func (c Config) Resolver() string {
	if c.Name == "rfc2136" {
		return c.Settings["server"]
	}
	return ""
}

// New builds the libdns provider of c.
func (c Config) New() (Provider, error) {
	switch c.Name {
	case "rfc2136":
		return &rfc2136.Provider{
			Server:  c.Settings["server"],
			KeyName: c.Settings["key-name"],
			KeyAlg:  c.Settings["key-alg"],
			Key:     c.Settings["key-secret"],
		}, nil
	case "cloudflare":
		return &cloudflare.Provider{APIToken: c.Settings["api-token"], ZoneToken: c.Settings["zone-token"]}, nil
	}
	return nil, fmt.Errorf("unknown DNS provider %q", c.Name)
}

// settingKey is where the provider config lives, sealed.
const settingKey = "dns-provider"

// LoadConfig returns the configured provider; ok is false when there is none.
func LoadConfig(ctx context.Context, st *store.Store) (Config, bool, error) {
	v, ok, err := st.SecretSetting(ctx, settingKey)
	if err != nil || !ok {
		return Config{}, false, err
	}
	var c Config
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return Config{}, false, fmt.Errorf("read the DNS provider config: %w", err)
	}
	return c, true, nil
}

// SaveConfig stores c (sealed); a zero Config removes it.
func SaveConfig(ctx context.Context, st *store.Store, c Config) error {
	if c.Name == "" {
		return st.DeleteSecretSetting(ctx, settingKey)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode the DNS provider config: %w", err)
	}
	return st.SetSecretSetting(ctx, settingKey, string(b))
}
