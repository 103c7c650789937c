package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"

	"github.com/berth-paas/berth/internal/store"
)

// Setting keys.
const (
	// SettingEnabled (per app) is "true" when berth keeps the app's records.
	SettingEnabled = "dns-enabled"
	// SettingIP (global) lists the server's public addresses,
	// comma-separated.
	SettingIP = "dns-ip"
	// SettingTTL (global) is the records' TTL in seconds.
	SettingTTL = "dns-ttl"
	// SettingLastError (per app) is the last sync error, "" when it worked.
	SettingLastError = "dns-last-error"
)

// DefaultTTL is the TTL of records when dns-ttl is not set.
const DefaultTTL = 300

// ErrNoProvider means no DNS provider is configured.
var ErrNoProvider = errors.New("no DNS provider is configured: set one with dns:provider:set")

// Manager creates and removes the DNS records of apps.
type Manager struct {
	st    *store.Store
	hosts func(ctx context.Context, app string) ([]string, error)
	log   *slog.Logger
	// mu serialises changes, so two syncs never race on one app's records.
	mu sync.Mutex
}

// NewManager returns a Manager; hosts returns every host an app answers to.
func NewManager(st *store.Store, hosts func(ctx context.Context, app string) ([]string, error), log *slog.Logger) *Manager {
	if log == nil {
		log = slog.Default()
	}
	return &Manager{st: st, hosts: hosts, log: log}
}

// Enabled reports whether app opted in.
func (m *Manager) Enabled(ctx context.Context, app string) (bool, error) {
	v, _, err := m.st.Setting(ctx, app, SettingEnabled)
	return v == "true", err
}

// Addresses returns the server's public addresses (dns-ip).
func (m *Manager) Addresses(ctx context.Context) ([]netip.Addr, error) {
	v, _, err := m.st.Setting(ctx, "", SettingIP)
	if err != nil {
		return nil, err
	}
	return ParseAddresses(v)
}

// ParseAddresses parses a comma- or space-separated list of IP addresses.
func ParseAddresses(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("invalid IP address %q", f)
		}
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// TTL returns the records' TTL.
func (m *Manager) TTL(ctx context.Context) (int, error) {
	v, ok, err := m.st.Setting(ctx, "", SettingTTL)
	if err != nil || !ok {
		return DefaultTTL, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return DefaultTTL, nil
	}
	return n, nil
}

// Plan is what app's records should be.
type Plan struct {
	Records []store.DNSRecord
	// Skipped are hosts outside the provider's zone.
	Skipped []string
}

// Desired computes app's records: one per host in the provider's zone and
// per server address.
func (m *Manager) Desired(ctx context.Context, app string, c Config) (Plan, error) {
	hosts, err := m.hosts(ctx, app)
	if err != nil {
		return Plan{}, err
	}
	addrs, err := m.Addresses(ctx)
	if err != nil {
		return Plan{}, err
	}
	if len(addrs) == 0 {
		return Plan{}, errors.New("the server's public address is not set: run dns:set --global ip ADDRESS")
	}
	ttl, err := m.TTL(ctx)
	if err != nil {
		return Plan{}, err
	}
	zone := c.Zone()
	var p Plan
	for _, h := range hosts {
		if h != zone && !strings.HasSuffix(h, "."+zone) {
			p.Skipped = append(p.Skipped, h)
			continue
		}
		for _, a := range addrs {
			typ := "A"
			if a.Is6() {
				typ = "AAAA"
			}
			p.Records = append(p.Records, store.DNSRecord{App: app, Zone: zone, Name: h, Type: typ, Value: a.String(), TTL: ttl})
		}
	}
	return p, nil
}

// Result says what a sync changed.
type Result struct {
	Added, Removed []store.DNSRecord
	Skipped        []string
}

// Sync makes app's records at the provider what they should be: created
// for an enabled app's hosts, removed for hosts it lost and for a disabled
// app. The outcome is recorded as the app's last error.
func (m *Manager) Sync(ctx context.Context, app string) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	res, err := m.sync(ctx, app)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if serr := m.st.SetSetting(context.WithoutCancel(ctx), app, SettingLastError, msg); serr != nil && !errors.Is(serr, store.ErrNotFound) {
		m.log.Debug("record DNS sync outcome", "app", app, "err", serr)
	}
	return res, err
}

func (m *Manager) sync(ctx context.Context, app string) (Result, error) {
	enabled, err := m.Enabled(ctx, app)
	if err != nil {
		return Result{}, err
	}
	have, err := m.st.DNSRecords(ctx, app)
	if err != nil {
		return Result{}, err
	}
	if !enabled {
		return m.remove(ctx, have)
	}
	c, ok, err := LoadConfig(ctx, m.st)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, ErrNoProvider
	}
	plan, err := m.Desired(ctx, app, c)
	if err != nil {
		return Result{}, err
	}
	prov, err := c.New()
	if err != nil {
		return Result{}, err
	}
	res := Result{Skipped: plan.Skipped}
	same := func(a, b store.DNSRecord) bool {
		return a.Name == b.Name && a.Type == b.Type && a.Value == b.Value && a.Zone == b.Zone && a.TTL == b.TTL
	}
	// RRsets (name, type) to (re)write: any with a record missing.
	type rrset struct{ name, typ string }
	var order []rrset
	sets := map[rrset][]store.DNSRecord{}
	for _, r := range plan.Records {
		k := rrset{r.Name, r.Type}
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], r)
	}
	for _, k := range order {
		want := sets[k]
		missing := false
		for _, r := range want {
			if !slices.ContainsFunc(have, func(h store.DNSRecord) bool { return same(h, r) }) {
				missing = true
			}
		}
		if !missing {
			continue
		}
		recs := make([]libdns.Record, 0, len(want))
		for _, r := range want {
			recs = append(recs, toLibdns(r))
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := prov.SetRecords(cctx, fqdn(c.Zone()), recs)
		cancel()
		if err != nil {
			return res, fmt.Errorf("set DNS records %s %s in zone %s: %w", k.name, k.typ, c.Zone(), err)
		}
		for _, r := range want {
			if err := m.st.AddDNSRecord(ctx, r); err != nil {
				return res, err
			}
			if !slices.ContainsFunc(have, func(h store.DNSRecord) bool { return same(h, r) }) {
				res.Added = append(res.Added, r)
			}
		}
	}
	// Records we made that are no longer wanted.
	var stale []store.DNSRecord
	for _, h := range have {
		wanted := slices.ContainsFunc(plan.Records, func(r store.DNSRecord) bool {
			return r.Name == h.Name && r.Type == h.Type && r.Value == h.Value && r.Zone == h.Zone
		})
		if !wanted {
			stale = append(stale, h)
		}
	}
	rm, err := m.removeWith(ctx, prov, stale, plan.Records)
	res.Removed = rm.Removed
	return res, err
}

// Remove deletes every record berth made for app (on apps:destroy).
func (m *Manager) Remove(ctx context.Context, app string) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	have, err := m.st.DNSRecords(ctx, app)
	if err != nil {
		return Result{}, err
	}
	return m.remove(ctx, have)
}

func (m *Manager) remove(ctx context.Context, rs []store.DNSRecord) (Result, error) {
	if len(rs) == 0 {
		return Result{}, nil
	}
	c, ok, err := LoadConfig(ctx, m.st)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, fmt.Errorf("cannot remove %d DNS records: %w", len(rs), ErrNoProvider)
	}
	prov, err := c.New()
	if err != nil {
		return Result{}, err
	}
	return m.removeWith(ctx, prov, rs, nil)
}

// removeWith deletes rs at the provider and forgets them. A record whose
// RRset was just rewritten (it shares name and type with one in kept) is
// already gone at the provider and is only forgotten.
func (m *Manager) removeWith(ctx context.Context, prov Provider, rs, kept []store.DNSRecord) (Result, error) {
	var res Result
	for _, r := range rs {
		rewritten := slices.ContainsFunc(kept, func(k store.DNSRecord) bool { return k.Name == r.Name && k.Type == r.Type && k.Zone == r.Zone })
		if !rewritten {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := prov.DeleteRecords(cctx, fqdn(r.Zone), []libdns.Record{toLibdns(r)})
			cancel()
			if err != nil {
				return res, fmt.Errorf("delete DNS record %s %s %s in zone %s: %w", r.Name, r.Type, r.Value, r.Zone, err)
			}
		}
		if err := m.st.DeleteDNSRecord(ctx, r); err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, r)
	}
	return res, nil
}

// Live returns the records of the provider's zone whose names are among
// names (fully qualified, no trailing dot), as "NAME TYPE VALUE" lines.
func Live(ctx context.Context, c Config, names []string) ([]string, error) {
	prov, err := c.New()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	recs, err := prov.GetRecords(ctx, fqdn(c.Zone()))
	if err != nil {
		return nil, fmt.Errorf("list records of zone %s: %w", c.Zone(), err)
	}
	var out []string
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "A" && rr.Type != "AAAA" {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(libdns.AbsoluteName(rr.Name, fqdn(c.Zone()))), ".")
		if slices.Contains(names, name) {
			out = append(out, name+" "+rr.Type+" "+rr.Data)
		}
	}
	slices.Sort(out)
	return out, nil
}

func fqdn(zone string) string { return strings.TrimSuffix(zone, ".") + "." }

func toLibdns(r store.DNSRecord) libdns.Record {
	ip, _ := netip.ParseAddr(r.Value)
	return libdns.Address{
		Name: libdns.RelativeName(r.Name+".", fqdn(r.Zone)),
		TTL:  time.Duration(r.TTL) * time.Second,
		IP:   ip,
	}
}
