package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/certs"
	"github.com/berth-paas/berth/internal/dns"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// letsencryptKeys maps letsencrypt:set keys to stored settings; globalOnly
// keys take --global only.
var (
	letsencryptKeys = map[string]string{
		"email":         certs.SettingEmail,
		"server":        certs.SettingServer,
		"dns-provider":  certs.SettingDNSProvider,
		"challenge":     certs.SettingChallenge,
		"dns-resolvers": certs.SettingDNSResolvers,
		"ca-root":       certs.SettingCARoot,
	}
	globalOnly = map[string]bool{"dns-resolvers": true, "ca-root": true}
)

func (h *handlers) registerLetsencrypt(r *Registry) {
	r.AddNamespace("letsencrypt", "Get and renew certificates from an ACME CA (Let's Encrypt)")
	r.Add(&Command{Name: "letsencrypt:enable", Usage: "<app>", Help: "Get certificates for an app's domains and keep them renewed", MinArgs: 1, MaxArgs: 1, Run: h.letsencryptEnable})
	r.Add(&Command{Name: "letsencrypt:disable", Usage: "<app>", Help: "Stop managing an app's certificates and delete them", MinArgs: 1, MaxArgs: 1, Run: h.letsencryptDisable})
	r.Add(&Command{Name: "letsencrypt:list", Usage: "[--format json]", Help: "List apps with letsencrypt, their certificates' expiry and last error", Flags: []Flag{formatFlag}, Run: h.letsencryptList})
	r.Add(&Command{Name: "letsencrypt:report", Usage: "[<app>] [--format json]", Help: "Display the letsencrypt settings of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.letsencryptReport})
	r.Add(&Command{Name: "letsencrypt:revoke", Usage: "<app>", Help: "Revoke an app's certificates and turn letsencrypt off for it", MinArgs: 1, MaxArgs: 1, Run: h.letsencryptRevoke})
	r.Add(&Command{Name: "letsencrypt:auto-renew", Usage: "[<app>] [--force]", Help: "Renew the certificates that are due now (all of them with --force)", MaxArgs: 1,
		Flags: []Flag{{Name: "force", Help: "renew even certificates that are not due"}}, Run: h.letsencryptAutoRenew})
	r.Add(&Command{Name: "letsencrypt:set", Usage: "(<app>|--global) <key> [<value>]", Help: "Set email, server, challenge, dns-provider, dns-resolvers or ca-root (no value: the default)",
		MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.letsencryptSet})
}

func (h *handlers) stepper(c *Call) func(string, ...any) {
	return func(format string, args ...any) { ui.Step(c.Stdout, format, args...) }
}

func (h *handlers) letsencryptEnable(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Enabling letsencrypt for %s", a.Name)
	if err := h.Certs.Enable(ctx, a.Name, c.Stdout, h.stepper(c)); err != nil {
		return err
	}
	st, err := h.Certs.Status(ctx, a.Name)
	if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Certificates ready for %s", a.Name)
	ui.Detail(c.Stdout, "Domains:  %s", strings.Join(st.Domains, " "))
	if !st.Expiry.IsZero() {
		ui.Detail(c.Stdout, "Expires:  %s", st.Expiry.Format(time.RFC3339))
	}
	return nil
}

func (h *handlers) letsencryptDisable(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := h.Certs.Disable(ctx, a.Name); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Disabled letsencrypt for %s", a.Name)
	return nil
}

func (h *handlers) letsencryptRevoke(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := h.Certs.Revoke(ctx, a.Name, h.stepper(c)); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Disabled letsencrypt for %s", a.Name)
	return nil
}

func (h *handlers) letsencryptAutoRenew(ctx context.Context, c *Call) error {
	apps, err := h.appsArg(ctx, c)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, a := range apps {
		on, _, err := h.Store.Setting(ctx, a.Name, certs.SettingEnabled)
		if err != nil {
			return err
		}
		if on != "true" {
			if len(c.Args) > 0 {
				return fmt.Errorf("letsencrypt is not enabled for %s", a.Name)
			}
			continue
		}
		n++
		ui.Step(c.Stdout, "Renewing the certificates of %s", a.Name)
		if err := h.Certs.Renew(ctx, a.Name, c.Bool("force"), func(f string, args ...any) { ui.Detail(c.Stdout, f, args...) }); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
		}
	}
	if n == 0 && len(c.Args) == 0 {
		ui.Step(c.Stdout, "No app has letsencrypt enabled")
	}
	return errors.Join(errs...)
}

type letsencryptEntry struct {
	App         string   `json:"app"`
	Domains     []string `json:"domains"`
	Expiry      string   `json:"expiry"`
	DaysLeft    *int     `json:"days-left"`
	Missing     []string `json:"missing"`
	LastError   string   `json:"last-error"`
	LastErrorAt string   `json:"last-error-at"`
}

func (h *handlers) letsencryptList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	apps, err := h.Store.Apps(ctx)
	if err != nil {
		return err
	}
	entries := []letsencryptEntry{}
	for _, a := range apps {
		st, err := h.Certs.Status(ctx, a.Name)
		if err != nil {
			return err
		}
		if !st.Enabled {
			continue
		}
		e := letsencryptEntry{App: a.Name, Domains: append([]string{}, st.Domains...), Missing: append([]string{}, st.Missing...), LastError: st.LastError, LastErrorAt: st.LastErrorAt}
		if !st.Expiry.IsZero() {
			e.Expiry = st.Expiry.Format(time.RFC3339)
			d := int(time.Until(st.Expiry).Hours() / 24)
			e.DaysLeft = &d
		}
		entries = append(entries, e)
	}
	if asJSON {
		return ui.JSON(c.Stdout, entries)
	}
	ui.Section(c.Stdout, "Letsencrypt apps")
	if len(entries) == 0 {
		ui.Detail(c.Stdout, "none")
		return nil
	}
	for _, e := range entries {
		exp := "no certificate yet"
		if e.Expiry != "" {
			exp = fmt.Sprintf("%s (%d days left)", e.Expiry, *e.DaysLeft)
		}
		fmt.Fprintf(c.Stdout, "%s\n", e.App)
		fields := []ui.Field{
			{Key: "Domains", Value: strings.Join(e.Domains, " ")},
			{Key: "Expiry", Value: exp},
		}
		if len(e.Missing) > 0 {
			fields = append(fields, ui.Field{Key: "Waiting for", Value: strings.Join(e.Missing, " ")})
		}
		if e.LastError != "" {
			fields = append(fields, ui.Field{Key: "Last error", Value: e.LastErrorAt + " " + e.LastError})
		}
		ui.Fields(c.Stdout, fields)
	}
	return nil
}

type letsencryptReport struct {
	App         string   `json:"app"`
	Enabled     bool     `json:"enabled"`
	Email       string   `json:"email"`
	Server      string   `json:"server"`
	DNSProvider string   `json:"dns-provider"`
	Challenge   string   `json:"challenge"`
	Domains     []string `json:"domains"`
	Expiry      string   `json:"expiry"`
	LastError   string   `json:"last-error"`
}

func (h *handlers) letsencryptReport(ctx context.Context, c *Call) error {
	return report(ctx, h, c, func(a store.App) (letsencryptReport, error) {
		st, err := h.Certs.Status(ctx, a.Name)
		if err != nil {
			return letsencryptReport{}, err
		}
		r := letsencryptReport{App: a.Name, Enabled: st.Enabled, Domains: nonNil(st.Domains), LastError: st.LastError}
		if !st.Expiry.IsZero() {
			r.Expiry = st.Expiry.Format(time.RFC3339)
		}
		var server, challenge string
		for key, dst := range map[string]*string{certs.SettingEmail: &r.Email, certs.SettingServer: &server,
			certs.SettingDNSProvider: &r.DNSProvider, certs.SettingChallenge: &challenge} {
			if *dst, _, err = h.Store.EffectiveSetting(ctx, a.Name, key); err != nil {
				return letsencryptReport{}, err
			}
		}
		r.Server, _ = certs.NormalizeServer(server)
		r.Challenge = orDefault(challenge, "auto")
		return r, nil
	}, func(r letsencryptReport) {
		ui.Section(c.Stdout, "%s letsencrypt information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Letsencrypt enabled", Value: fmt.Sprint(r.Enabled)},
			{Key: "Letsencrypt email", Value: r.Email},
			{Key: "Letsencrypt server", Value: r.Server},
			{Key: "Letsencrypt dns provider", Value: r.DNSProvider},
			{Key: "Letsencrypt challenge", Value: r.Challenge},
			{Key: "Letsencrypt domains", Value: strings.Join(r.Domains, " ")},
			{Key: "Letsencrypt expiry", Value: r.Expiry},
			{Key: "Letsencrypt last error", Value: r.LastError},
		})
	})
}

func (h *handlers) letsencryptSet(ctx context.Context, c *Call) error {
	app, rest, err := h.settingTarget(ctx, c)
	if err != nil {
		return err
	}
	names := "email, server, dns-provider, challenge, dns-resolvers or ca-root"
	if len(rest) == 0 {
		return &UsageError{Msg: "name a setting: " + names}
	}
	name := rest[0]
	key, ok := letsencryptKeys[name]
	if !ok {
		return &UsageError{Msg: fmt.Sprintf("unknown setting %q: use %s", name, names)}
	}
	if globalOnly[name] && app != "" {
		return &UsageError{Msg: name + " is a global setting: pass --global"}
	}
	value := ""
	if len(rest) > 1 {
		if value, err = h.letsencryptValue(ctx, c, name, rest[1]); err != nil {
			return err
		}
	}
	if err := h.Store.SetSetting(ctx, app, key, value); err != nil {
		return err
	}
	h.Certs.SettingsChanged(ctx)
	target := app
	if app == "" {
		target = "global"
	}
	switch {
	case value == "":
		ui.Step(c.Stdout, "Unset %s for %s", name, target)
	case name == "ca-root":
		ui.Step(c.Stdout, "Set ca-root for %s", target)
	default:
		ui.Step(c.Stdout, "Set %s to %s for %s", name, value, target)
	}
	return nil
}

// letsencryptValue validates and normalises a letsencrypt:set value.
func (h *handlers) letsencryptValue(ctx context.Context, c *Call, name, v string) (string, error) {
	switch name {
	case "email":
		a, err := mail.ParseAddress(v)
		if err != nil || a.Address != v {
			return "", fmt.Errorf("invalid email %q", v)
		}
		return v, nil
	case "server":
		return certs.NormalizeServer(v)
	case "dns-provider":
		if !contains(dns.Names(), v) {
			return "", fmt.Errorf("unknown DNS provider %q: use one of %s", v, strings.Join(dns.Names(), ", "))
		}
		cfg, ok, err := dns.LoadConfig(ctx, h.Store)
		if err != nil {
			return "", err
		}
		if !ok || cfg.Name != v {
			return "", fmt.Errorf("configure the %s provider first with dns:provider:set %s KEY=VALUE", v, v)
		}
		return v, nil
	case "challenge":
		switch v {
		case "auto":
			return "", nil
		case certs.ChallengeHTTP, certs.ChallengeTLSALPN, certs.ChallengeDNS:
			return v, nil
		}
		return "", fmt.Errorf("invalid challenge %q: use auto, http-01, tls-alpn-01 or dns-01", v)
	case "dns-resolvers":
		var out []string
		for _, r := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			if _, err := dns.ParseConfig("rfc2136", []string{"server=" + r, "zone=x.invalid", "key-name=x", "key-secret=eA=="}); err != nil {
				return "", fmt.Errorf("invalid resolver %q: use HOST or HOST:PORT", r)
			}
			out = append(out, r)
		}
		return strings.Join(out, ","), nil
	case "ca-root":
		var data []byte
		switch {
		case v == "-":
			b, err := io.ReadAll(io.LimitReader(c.Stdin, 1<<20))
			if err != nil {
				return "", fmt.Errorf("read ca-root from stdin: %w", err)
			}
			data = b
		case strings.Contains(v, "-----BEGIN"):
			data = []byte(v)
		default:
			if !c.Caller.Local {
				return "", errors.New("over SSH, pass the PEM itself or - and the PEM on stdin")
			}
			b, err := readServerFile(v, "CA certificate")
			if err != nil {
				return "", err
			}
			data = b
		}
		_, n, err := certs.ParseRoots(data)
		if err != nil {
			return "", fmt.Errorf("invalid ca-root: %w", err)
		}
		ui.Detail(c.Stdout, "%d CA certificate(s) trusted for the ACME server", n)
		return string(data), nil
	}
	return v, nil
}
