package commands

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/certs"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// certSettingKeys maps certs:set keys to stored settings.
var certSettingKeys = map[string]string{
	"redirect":                certs.SettingRedirect,
	"hsts":                    certs.SettingHSTS,
	"hsts-max-age":            certs.SettingHSTSMaxAge,
	"hsts-include-subdomains": certs.SettingHSTSSubdomain,
	"hsts-preload":            certs.SettingHSTSPreload,
}

func (h *handlers) registerCerts(r *Registry) {
	r.AddNamespace("certs", "Manage the TLS certificates of apps")
	r.Add(&Command{Name: "certs:add", Usage: "<app> [<crt-file> <key-file>]", Help: "Add a certificate and key to an app (files on the server, or a tar holding server.crt and server.key, or PEM, on stdin)", MinArgs: 1, MaxArgs: 3, Run: h.certsAdd})
	r.Add(&Command{Name: "certs:update", Usage: "<app> [<crt-file> <key-file>]", Help: "Replace an app's certificate (same input as certs:add)", MinArgs: 1, MaxArgs: 3, Run: h.certsAdd})
	r.Add(&Command{Name: "certs:generate", Usage: "<app> [<domain>...]", Help: "Give an app a self-signed certificate for its domains (or the given ones)", MinArgs: 1, MaxArgs: -1, Run: h.certsGenerate})
	r.Add(&Command{Name: "certs:remove", Usage: "<app>", Help: "Remove an app's certificate", MinArgs: 1, MaxArgs: 1, Run: h.certsRemove})
	r.Add(&Command{Name: "certs:report", Usage: "[<app>] [--format json]", Help: "Display the certificates and HTTPS settings of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.certsReport})
	r.Add(&Command{Name: "certs:set", Usage: "(<app>|--global) <key> [<value>]", Help: "Set redirect, hsts, hsts-max-age, hsts-include-subdomains or hsts-preload (no value: the default)",
		MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.certsSet})
}

func (h *handlers) certsAdd(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	var crt, key []byte
	switch len(c.Args) {
	case 3:
		if !c.Caller.Local {
			return errors.New("over SSH, pipe a tar holding server.crt and server.key (or the PEM certificate and key) on stdin instead of naming files on the server")
		}
		if crt, err = readServerFile(c.Args[1], "certificate"); err != nil {
			return err
		}
		if key, err = readServerFile(c.Args[2], "key"); err != nil {
			return err
		}
	case 2:
		return &UsageError{Msg: "give both the certificate and the key file, or neither (and the input on stdin)"}
	default:
		if crt, key, err = certs.ReadBundle(c.Stdin); err != nil {
			return fmt.Errorf("certificate refused: %w", err)
		}
	}
	p, err := h.Certs.SetManual(ctx, a.Name, "manual", crt, key)
	if err != nil {
		return fmt.Errorf("certificate refused: %w", err)
	}
	ui.Step(c.Stdout, "Added a certificate to %s", a.Name)
	ui.Detail(c.Stdout, "Hostnames:  %s", strings.Join(p.Names(), " "))
	ui.Detail(c.Stdout, "Expires:    %s", p.Leaf.NotAfter.UTC().Format(time.RFC3339))
	h.warnUncovered(ctx, c, a.Name, p)
	return nil
}

// readServerFile reads a certificate or key file named on the local CLI;
// the server reads it, so the path must be absolute.
func readServerFile(path, what string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("the %s file %s must be an absolute path (the server reads it): use $PWD/%s", what, path, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the %s file: %w", what, err)
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, 1<<20)); err != nil {
		return nil, fmt.Errorf("read the %s file: %w", what, err)
	}
	return b.Bytes(), nil
}

// warnUncovered warns when the certificate covers none of the app's hosts.
func (h *handlers) warnUncovered(ctx context.Context, c *Call, app string, p *certs.Parsed) {
	hosts, err := h.Pipeline.Hosts(ctx, app)
	if err != nil {
		return
	}
	var covered []string
	for _, host := range hosts {
		if !strings.HasPrefix(host, "*.") && p.Covers(host) {
			covered = append(covered, host)
		}
	}
	if len(covered) == 0 {
		ui.Warn(c.Stderr, "the certificate covers none of %s's domains (%s): HTTPS answers only for names it covers", app, strings.Join(hosts, " "))
	}
}

func (h *handlers) certsGenerate(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	var hosts []string
	if len(c.Args) > 1 {
		if hosts, err = parseDomains(c.Args[1:]); err != nil {
			return err
		}
	} else if hosts, err = h.Pipeline.Hosts(ctx, a.Name); err != nil {
		return err
	}
	if len(hosts) == 0 {
		return fmt.Errorf("%s has no domain: name one, or add one with domains:add", a.Name)
	}
	crt, key, err := certs.SelfSigned(hosts, time.Now())
	if err != nil {
		return err
	}
	if _, err := h.Certs.SetManual(ctx, a.Name, "self-signed", crt, key); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Generated a self-signed certificate for %s", a.Name)
	ui.Detail(c.Stdout, "Hostnames:  %s", strings.Join(hosts, " "))
	return nil
}

func (h *handlers) certsRemove(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := h.Certs.RemoveManual(ctx, a.Name); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Removed the certificate of %s", a.Name)
	return nil
}

type certsReport struct {
	App         string   `json:"app"`
	Enabled     bool     `json:"enabled"`
	Source      string   `json:"source"`
	Hostnames   []string `json:"hostnames"`
	SecureHosts []string `json:"secure-hosts"`
	StartsAt    string   `json:"starts-at"`
	ExpiresAt   string   `json:"expires-at"`
	Issuer      string   `json:"issuer"`
	Subject     string   `json:"subject"`
	Verified    string   `json:"verified"`
	Redirect    bool     `json:"redirect"`
	HSTS        bool     `json:"hsts"`
	HSTSHeader  string   `json:"hsts-header"`
	HTTPSPort   int      `json:"https-port"`
}

func (h *handlers) certsReport(ctx context.Context, c *Call) error {
	return report(ctx, h, c, func(a store.App) (certsReport, error) {
		return h.certsReportOf(ctx, a)
	}, func(r certsReport) {
		ui.Section(c.Stdout, "%s ssl information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Ssl enabled", Value: strconv.FormatBool(r.Enabled)},
			{Key: "Ssl source", Value: r.Source},
			{Key: "Ssl hostnames", Value: strings.Join(r.Hostnames, " ")},
			{Key: "Ssl secure hosts", Value: strings.Join(r.SecureHosts, " ")},
			{Key: "Ssl starts at", Value: r.StartsAt},
			{Key: "Ssl expires at", Value: r.ExpiresAt},
			{Key: "Ssl issuer", Value: r.Issuer},
			{Key: "Ssl subject", Value: r.Subject},
			{Key: "Ssl verified", Value: r.Verified},
			{Key: "Ssl redirect", Value: strconv.FormatBool(r.Redirect)},
			{Key: "Ssl hsts", Value: r.HSTSHeader},
		})
	})
}

func (h *handlers) certsReportOf(ctx context.Context, a store.App) (certsReport, error) {
	r := certsReport{App: a.Name, Source: "none", Hostnames: []string{}, SecureHosts: []string{}, HTTPSPort: h.Certs.HTTPSPort()}
	pol, err := certs.LoadPolicy(ctx, h.Store, a.Name)
	if err != nil {
		return r, err
	}
	r.Redirect, r.HSTS, r.HSTSHeader = pol.Redirect, pol.HSTS, pol.Header()
	hosts, err := h.Pipeline.Hosts(ctx, a.Name)
	if err != nil {
		return r, err
	}
	var leaf *x509.Certificate
	if p := h.Certs.ManualCert(a.Name); p != nil {
		leaf = p.Leaf
		r.Source = "manual"
		if mc, err := h.Store.AppCertOf(ctx, a.Name); err == nil {
			r.Source = mc.Kind
		}
	} else if st, err := h.Certs.Status(ctx, a.Name); err != nil {
		return r, err
	} else if st.Enabled {
		r.Source = "letsencrypt"
		for _, n := range st.Domains {
			if l, _ := h.Certs.CertificateOf(a.Name, n); l != nil {
				leaf = l
				break
			}
		}
	}
	for _, host := range hosts {
		if h.Certs.SecureHost(a.Name, host) {
			r.SecureHosts = append(r.SecureHosts, host)
		}
	}
	if leaf == nil {
		return r, nil
	}
	r.Enabled = true
	if r.Source == "letsencrypt" {
		st, _ := h.Certs.Status(ctx, a.Name)
		r.Hostnames = append(r.Hostnames, st.Domains...)
	} else {
		r.Hostnames = append(r.Hostnames, (&certs.Parsed{Leaf: leaf}).Names()...)
	}
	r.StartsAt = leaf.NotBefore.UTC().Format(time.RFC3339)
	r.ExpiresAt = leaf.NotAfter.UTC().Format(time.RFC3339)
	r.Issuer = leaf.Issuer.String()
	r.Subject = leaf.Subject.String()
	switch {
	case r.Source == "letsencrypt":
		r.Verified = "issued by the ACME server"
	case leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil:
		r.Verified = "self signed"
	default:
		if _, err := leaf.Verify(x509.VerifyOptions{}); err == nil {
			r.Verified = "verified by a certificate authority"
		} else {
			r.Verified = "not verified by the system's certificate authorities"
		}
	}
	return r, nil
}

func (h *handlers) certsSet(ctx context.Context, c *Call) error {
	app, rest, err := h.settingTarget(ctx, c)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return &UsageError{Msg: "name a setting: redirect, hsts, hsts-max-age, hsts-include-subdomains or hsts-preload"}
	}
	key, ok := certSettingKeys[rest[0]]
	if !ok {
		return &UsageError{Msg: fmt.Sprintf("unknown setting %q: use redirect, hsts, hsts-max-age, hsts-include-subdomains or hsts-preload", rest[0])}
	}
	value := ""
	if len(rest) > 1 {
		value = rest[1]
		if rest[0] == "hsts-max-age" {
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 2<<30 {
				return fmt.Errorf("invalid hsts-max-age %q: use a number of seconds", value)
			}
		} else if value != "true" && value != "false" {
			return fmt.Errorf("invalid %s value %q: use true or false", rest[0], value)
		}
	}
	if err := h.Store.SetSetting(ctx, app, key, value); err != nil {
		return err
	}
	target := app
	if app == "" {
		target = "global"
		h.Certs.SyncAll(ctx)
	} else if err := h.Certs.Sync(ctx, app); err != nil {
		return err
	}
	if value == "" {
		ui.Step(c.Stdout, "Unset %s for %s", rest[0], target)
	} else {
		ui.Step(c.Stdout, "Set %s to %s for %s", rest[0], value, target)
	}
	return nil
}

// settingTarget reads "(<app>|--global) KEY [VALUE]": it returns the app
// ("" for --global) and the remaining arguments.
func (h *handlers) settingTarget(ctx context.Context, c *Call) (string, []string, error) {
	if c.Bool("global") {
		return "", c.Args, nil
	}
	if len(c.Args) == 0 {
		return "", nil, &UsageError{Msg: "name an app or pass --global"}
	}
	if err := validate.AppName(c.Args[0]); err != nil {
		return "", nil, err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return "", nil, err
	}
	return a.Name, c.Args[1:], nil
}
