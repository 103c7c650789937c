package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-paas/berth/internal/dns"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

func (h *handlers) registerDNS(r *Registry) {
	r.AddNamespace("dns", "Keep DNS records of app domains at a DNS provider")
	r.Add(&Command{Name: "dns:provider:set", Usage: "<provider> <key>=<value>...", Help: "Configure the DNS provider (" + strings.Join(dns.Names(), ", ") + "); secrets are sealed at rest", MinArgs: 1, MaxArgs: -1, Run: h.dnsProviderSet})
	r.Add(&Command{Name: "dns:provider:clear", Help: "Remove the DNS provider configuration", Run: h.dnsProviderClear})
	r.Add(&Command{Name: "dns:set", Usage: "--global ip|ttl [<value>]", Help: "Set a DNS setting: the server's public addresses (ip) or the records' TTL", MinArgs: 1, MaxArgs: 2, Flags: []Flag{globalFlag}, Run: h.dnsSet})
	r.Add(&Command{Name: "dns:enable", Usage: "<app>", Help: "Create A/AAAA records for an app's domains (and keep them in sync)", MinArgs: 1, MaxArgs: 1, Run: h.dnsEnable})
	r.Add(&Command{Name: "dns:disable", Usage: "<app>", Help: "Remove the records berth created for an app", MinArgs: 1, MaxArgs: 1, Run: h.dnsDisable})
	r.Add(&Command{Name: "dns:sync", Usage: "[<app>]", Help: "Bring the records of apps in line with their domains now", MaxArgs: 1, Run: h.dnsSync})
	r.Add(&Command{Name: "dns:report", Usage: "[<app>|--global] [--format json]", Help: "Display the DNS provider and the records of apps", MaxArgs: 1, Flags: []Flag{formatFlag, globalFlag}, Run: h.dnsReport})
}

func (h *handlers) dnsProviderSet(ctx context.Context, c *Call) error {
	cfg, err := dns.ParseConfig(c.Args[0], c.Args[1:])
	if err != nil {
		return err
	}
	if err := dns.SaveConfig(ctx, h.Store, cfg); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Set the DNS provider to %s", cfg.Name)
	pub := cfg.Public()
	for _, k := range ui.SortedKeys(pub) {
		ui.Detail(c.Stdout, "%s: %s", k, pub[k])
	}
	h.Certs.SettingsChanged(ctx)
	return nil
}

func (h *handlers) dnsProviderClear(ctx context.Context, c *Call) error {
	if err := dns.SaveConfig(ctx, h.Store, dns.Config{}); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Removed the DNS provider configuration")
	h.Certs.SettingsChanged(ctx)
	return nil
}

func (h *handlers) dnsSet(ctx context.Context, c *Call) error {
	if !c.Bool("global") {
		return &UsageError{Msg: "DNS settings are global: pass --global"}
	}
	name := c.Args[0]
	value := ""
	if len(c.Args) > 1 {
		value = c.Args[1]
	}
	var key string
	switch name {
	case "ip":
		key = dns.SettingIP
		if value != "" {
			addrs, err := dns.ParseAddresses(value)
			if err != nil {
				return err
			}
			parts := make([]string, len(addrs))
			for i, a := range addrs {
				parts[i] = a.String()
			}
			value = strings.Join(parts, ",")
		}
	case "ttl":
		key = dns.SettingTTL
		if value != "" {
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > 604800 {
				return fmt.Errorf("invalid ttl %q: use 1 to 604800 seconds", value)
			}
		}
	default:
		return &UsageError{Msg: fmt.Sprintf("unknown setting %q: use ip or ttl", name)}
	}
	if err := h.Store.SetSetting(ctx, "", key, value); err != nil {
		return err
	}
	if value == "" {
		ui.Step(c.Stdout, "Unset %s", name)
	} else {
		ui.Step(c.Stdout, "Set %s to %s", name, value)
	}
	return nil
}

func (h *handlers) dnsEnable(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if _, ok, err := dns.LoadConfig(ctx, h.Store); err != nil {
		return err
	} else if !ok {
		return dns.ErrNoProvider
	}
	if addrs, err := h.DNS.Addresses(ctx); err != nil {
		return err
	} else if len(addrs) == 0 {
		return fmt.Errorf("the server's public address is not set: run dns:set --global ip ADDRESS first")
	}
	if err := h.Store.SetSetting(ctx, a.Name, dns.SettingEnabled, "true"); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Enabled DNS records for %s", a.Name)
	res, err := h.DNS.Sync(ctx, a.Name)
	printDNSResult(c, res)
	return err
}

func (h *handlers) dnsDisable(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := h.Store.SetSetting(ctx, a.Name, dns.SettingEnabled, ""); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Disabled DNS records for %s", a.Name)
	res, err := h.DNS.Sync(ctx, a.Name)
	printDNSResult(c, res)
	return err
}

func (h *handlers) dnsSync(ctx context.Context, c *Call) error {
	apps, err := h.appsArg(ctx, c)
	if err != nil {
		return err
	}
	var firstErr error
	for _, a := range apps {
		res, err := h.DNS.Sync(ctx, a.Name)
		printDNSResult(c, res)
		if err != nil {
			ui.Warn(c.Stderr, "%s: %v", a.Name, err)
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", a.Name, err)
			}
		}
	}
	return firstErr
}

func printDNSResult(c *Call, res dns.Result) {
	for _, r := range res.Added {
		ui.Detail(c.Stdout, "Created %s %s %s", r.Name, r.Type, r.Value)
	}
	for _, r := range res.Removed {
		ui.Detail(c.Stdout, "Removed %s %s %s", r.Name, r.Type, r.Value)
	}
}

type dnsRecordJSON struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	TTL   int    `json:"ttl"`
	Zone  string `json:"zone"`
}

type dnsReport struct {
	App       string          `json:"app"`
	Enabled   bool            `json:"enabled"`
	Provider  string          `json:"provider"`
	Zone      string          `json:"zone"`
	Addresses []string        `json:"addresses"`
	Records   []dnsRecordJSON `json:"records"`
	Skipped   []string        `json:"skipped"`
	Live      []string        `json:"live,omitempty"`
	LiveError string          `json:"live-error,omitempty"`
	LastError string          `json:"last-error"`
}

func (h *handlers) dnsReport(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	cfg, hasProvider, err := dns.LoadConfig(ctx, h.Store)
	if err != nil {
		return err
	}
	addrs, err := h.DNS.Addresses(ctx)
	if err != nil {
		return err
	}
	addrStrs := []string{}
	for _, a := range addrs {
		addrStrs = append(addrStrs, a.String())
	}
	if c.Bool("global") {
		ttl, _ := h.DNS.TTL(ctx)
		g := map[string]any{"provider": cfg.Name, "settings": cfg.Public(), "addresses": addrStrs, "ttl": ttl}
		if asJSON {
			return ui.JSON(c.Stdout, g)
		}
		ui.Section(c.Stdout, "Global DNS information")
		pub := cfg.Public()
		fields := []ui.Field{{Key: "Dns provider", Value: cfg.Name}}
		for _, k := range ui.SortedKeys(pub) {
			fields = append(fields, ui.Field{Key: "Dns " + k, Value: pub[k]})
		}
		fields = append(fields, ui.Field{Key: "Dns ip", Value: strings.Join(addrStrs, " ")}, ui.Field{Key: "Dns ttl", Value: strconv.Itoa(ttl)})
		ui.Fields(c.Stdout, fields)
		return nil
	}
	apps, err := h.appsArg(ctx, c)
	if err != nil {
		return err
	}
	var reports []dnsReport
	for _, a := range apps {
		r, err := h.dnsReportOf(ctx, a, cfg, hasProvider, addrStrs, len(c.Args) == 1)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	if asJSON {
		return emitJSON(c, reports)
	}
	for _, r := range reports {
		var recs []string
		for _, rec := range r.Records {
			recs = append(recs, rec.Name+" "+rec.Type+" "+rec.Value)
		}
		ui.Section(c.Stdout, "%s dns information", r.App)
		fields := []ui.Field{
			{Key: "Dns enabled", Value: strconv.FormatBool(r.Enabled)},
			{Key: "Dns provider", Value: r.Provider},
			{Key: "Dns zone", Value: r.Zone},
			{Key: "Dns addresses", Value: strings.Join(r.Addresses, " ")},
			{Key: "Dns records", Value: strings.Join(recs, ", ")},
			{Key: "Dns skipped", Value: strings.Join(r.Skipped, " ")},
		}
		if r.Live != nil || r.LiveError != "" {
			live := strings.Join(r.Live, ", ")
			if r.LiveError != "" {
				live = "unknown: " + r.LiveError
			}
			fields = append(fields, ui.Field{Key: "Dns at provider", Value: live})
		}
		fields = append(fields, ui.Field{Key: "Dns last error", Value: r.LastError})
		ui.Fields(c.Stdout, fields)
	}
	return nil
}

func (h *handlers) dnsReportOf(ctx context.Context, a store.App, cfg dns.Config, hasProvider bool, addrs []string, live bool) (dnsReport, error) {
	r := dnsReport{App: a.Name, Provider: cfg.Name, Zone: cfg.Zone(), Addresses: addrs, Records: []dnsRecordJSON{}, Skipped: []string{}}
	var err error
	if r.Enabled, err = h.DNS.Enabled(ctx, a.Name); err != nil {
		return r, err
	}
	if r.LastError, _, err = h.Store.Setting(ctx, a.Name, dns.SettingLastError); err != nil {
		return r, err
	}
	recs, err := h.Store.DNSRecords(ctx, a.Name)
	if err != nil {
		return r, err
	}
	var names []string
	for _, rec := range recs {
		r.Records = append(r.Records, dnsRecordJSON{Name: rec.Name, Type: rec.Type, Value: rec.Value, TTL: rec.TTL, Zone: rec.Zone})
		if !contains(names, rec.Name) {
			names = append(names, rec.Name)
		}
	}
	if hasProvider && r.Enabled {
		if plan, err := h.DNS.Desired(ctx, a.Name, cfg); err == nil {
			r.Skipped = append(r.Skipped, plan.Skipped...)
		}
	}
	if live && hasProvider && len(names) > 0 {
		got, err := dns.Live(ctx, cfg, names)
		if err != nil {
			r.LiveError = err.Error()
		} else {
			r.Live = append([]string{}, got...)
		}
	}
	return r, nil
}
