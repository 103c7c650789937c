package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerDomains(r *Registry) {
	r.AddNamespace("domains", "Manage the host names apps answer to")
	r.Add(&Command{Name: "domains:add", Usage: "<app> <domain>...", Help: "Add custom domains to an app", MinArgs: 2, MaxArgs: -1, Run: h.domainsAdd})
	r.Add(&Command{Name: "domains:remove", Usage: "<app> <domain>...", Help: "Remove custom domains from an app", MinArgs: 2, MaxArgs: -1, Run: h.domainsRemove})
	r.Add(&Command{Name: "domains:set", Usage: "<app> <domain>...", Help: "Replace an app's custom domains", MinArgs: 2, MaxArgs: -1, Run: h.domainsSet})
	r.Add(&Command{Name: "domains:clear", Usage: "<app>", Help: "Remove every custom domain of an app", MinArgs: 1, MaxArgs: 1, Run: h.domainsClear})
	r.Add(&Command{Name: "domains:report", Usage: "[<app>|--global] [--format json]", Help: "Display the domains of apps", MaxArgs: 1, Flags: []Flag{formatFlag, globalFlag}, Run: h.domainsReport})
	r.Add(&Command{Name: "domains:set-global", Usage: "<domain>...", Help: "Replace the global domains (apps answer at APP.DOMAIN)", MinArgs: 1, MaxArgs: -1, Run: h.domainsSetGlobal})
	r.Add(&Command{Name: "domains:add-global", Usage: "<domain>...", Help: "Add global domains", MinArgs: 1, MaxArgs: -1, Run: h.domainsAddGlobal})
	r.Add(&Command{Name: "domains:remove-global", Usage: "<domain>...", Help: "Remove global domains", MinArgs: 1, MaxArgs: -1, Run: h.domainsRemoveGlobal})
	r.Add(&Command{Name: "domains:clear-global", Help: "Remove every global domain (apps then answer only at custom domains)", Run: h.domainsClearGlobal})
}

// parseDomains validates and normalises domain arguments.
func parseDomains(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	seen := map[string]bool{}
	for _, a := range args {
		d, err := validate.Domain(a)
		if err != nil {
			return nil, err
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}

func (h *handlers) changeDomains(ctx context.Context, c *Call, action string, clear bool, add, remove []string) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if len(remove) > 0 {
		cur, err := h.Store.Domains(ctx, a.Name)
		if err != nil {
			return err
		}
		for _, d := range remove {
			if !contains(cur, d) {
				return fmt.Errorf("%s is not a domain of %s", d, a.Name)
			}
		}
	}
	if err := h.checkNotGlobalVhost(ctx, a.Name, add); err != nil {
		return err
	}
	err = h.Store.UpdateDomains(ctx, a.Name, add, remove, clear)
	var conflict *store.DomainConflictError
	if errors.As(err, &conflict) {
		return conflict
	}
	if err != nil {
		return err
	}
	switch action {
	case "add":
		for _, d := range add {
			ui.Step(c.Stdout, "Added %s to %s", d, a.Name)
		}
	case "remove":
		for _, d := range remove {
			ui.Step(c.Stdout, "Removed %s from %s", d, a.Name)
		}
	case "set":
		ui.Step(c.Stdout, "Set %s for %s", strings.Join(add, " "), a.Name)
	case "clear":
		ui.Step(c.Stdout, "Cleared domains in %s", a.Name)
	}
	if err := h.Pipeline.RefreshRoutes(ctx, a.Name, true); err != nil {
		return err
	}
	args := append([]string{a.Name, action}, add...)
	args = append(args, remove...)
	if out, err := h.Pipeline.Triggers().Fire(ctx, "post-domains-update", args...); err != nil {
		ui.Warn(c.Stderr, "post-domains-update: %v", err)
	} else if out != "" {
		io.WriteString(ui.NewIndentWriter(c.Stdout, ui.Indentation), strings.TrimRight(out, "\n")+"\n")
	}
	return nil
}

// checkNotGlobalVhost refuses a custom domain that is another app's default
// APP.DOMAIN host, so no app can take another's traffic.
func (h *handlers) checkNotGlobalVhost(ctx context.Context, app string, ds []string) error {
	globals, err := h.Pipeline.GlobalDomains(ctx)
	if err != nil {
		return err
	}
	for _, d := range ds {
		for _, g := range globals {
			sub, ok := strings.CutSuffix(d, "."+g)
			if !ok || sub == app || strings.Contains(sub, ".") {
				continue
			}
			if _, err := h.Store.App(ctx, sub); err == nil {
				return fmt.Errorf("domain %s is the default host of app %s", d, sub)
			}
		}
	}
	return nil
}

func (h *handlers) domainsAdd(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args[1:])
	if err != nil {
		return err
	}
	return h.changeDomains(ctx, c, "add", false, ds, nil)
}

func (h *handlers) domainsRemove(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args[1:])
	if err != nil {
		return err
	}
	return h.changeDomains(ctx, c, "remove", false, nil, ds)
}

func (h *handlers) domainsSet(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args[1:])
	if err != nil {
		return err
	}
	return h.changeDomains(ctx, c, "set", true, ds, nil)
}

func (h *handlers) domainsClear(ctx context.Context, c *Call) error {
	return h.changeDomains(ctx, c, "clear", true, nil, nil)
}

type domainsReport struct {
	App           string   `json:"app,omitempty"`
	AppVhosts     []string `json:"app-vhosts"`
	GlobalVhosts  []string `json:"global-vhosts"`
	Hosts         []string `json:"hosts"`
	GlobalEnabled bool     `json:"global-enabled"`
}

func (h *handlers) domainsReport(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	globals, err := h.Pipeline.GlobalDomains(ctx)
	if err != nil {
		return err
	}
	globals = append([]string{}, globals...)
	if c.Bool("global") {
		if asJSON {
			return ui.JSON(c.Stdout, map[string]any{"global-vhosts": globals, "global-enabled": len(globals) > 0})
		}
		ui.Section(c.Stdout, "Global domains information")
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Domains global enabled", Value: fmt.Sprint(len(globals) > 0)},
			{Key: "Domains global vhosts", Value: strings.Join(globals, " ")},
		})
		return nil
	}
	apps, err := h.appsArg(ctx, c)
	if err != nil {
		return err
	}
	var reports []domainsReport
	for _, a := range apps {
		custom, err := h.Store.Domains(ctx, a.Name)
		if err != nil {
			return err
		}
		hosts, err := h.Pipeline.Hosts(ctx, a.Name)
		if err != nil {
			return err
		}
		reports = append(reports, domainsReport{App: a.Name, AppVhosts: append([]string{}, custom...), GlobalVhosts: globals, Hosts: hosts, GlobalEnabled: len(globals) > 0})
	}
	if asJSON {
		return emitJSON(c, reports)
	}
	for _, r := range reports {
		ui.Section(c.Stdout, "%s domains information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Domains app enabled", Value: "true"},
			{Key: "Domains app vhosts", Value: strings.Join(r.AppVhosts, " ")},
			{Key: "Domains global enabled", Value: fmt.Sprint(r.GlobalEnabled)},
			{Key: "Domains global vhosts", Value: strings.Join(r.GlobalVhosts, " ")},
			{Key: "Domains hosts", Value: strings.Join(r.Hosts, " ")},
		})
	}
	return nil
}

func (h *handlers) updateGlobal(ctx context.Context, c *Call, fn func(cur []string) ([]string, error)) error {
	cur, err := h.Pipeline.GlobalDomains(ctx)
	if err != nil {
		return err
	}
	next, err := fn(append([]string{}, cur...))
	if err != nil {
		return err
	}
	return h.Pipeline.SetGlobalDomains(ctx, next)
}

func (h *handlers) domainsSetGlobal(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args)
	if err != nil {
		return err
	}
	if err := h.updateGlobal(ctx, c, func([]string) ([]string, error) { return ds, nil }); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Set %s", strings.Join(ds, " "))
	return nil
}

func (h *handlers) domainsAddGlobal(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args)
	if err != nil {
		return err
	}
	return h.updateGlobal(ctx, c, func(cur []string) ([]string, error) {
		for _, d := range ds {
			if contains(cur, d) {
				ui.Step(c.Stdout, "Skipping %s: already added", d)
				continue
			}
			cur = append(cur, d)
			ui.Step(c.Stdout, "Added %s", d)
		}
		return cur, nil
	})
}

func (h *handlers) domainsRemoveGlobal(ctx context.Context, c *Call) error {
	ds, err := parseDomains(c.Args)
	if err != nil {
		return err
	}
	return h.updateGlobal(ctx, c, func(cur []string) ([]string, error) {
		for _, d := range ds {
			if !contains(cur, d) {
				return nil, fmt.Errorf("%s is not a global domain", d)
			}
		}
		var next []string
		for _, d := range cur {
			if !contains(ds, d) {
				next = append(next, d)
			}
		}
		for _, d := range ds {
			ui.Step(c.Stdout, "Removed %s", d)
		}
		return next, nil
	})
}

func (h *handlers) domainsClearGlobal(ctx context.Context, c *Call) error {
	if err := h.updateGlobal(ctx, c, func([]string) ([]string, error) { return nil, nil }); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Cleared global domains")
	return nil
}
