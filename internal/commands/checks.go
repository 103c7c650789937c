package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-paas/berth/internal/checks"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// checkSettingKeys maps checks:set keys to stored settings.
var checkSettingKeys = map[string]string{
	"wait-to-retire": pipeline.SettingWaitToRetire,
	"attempts":       pipeline.SettingAttempts,
	"timeout":        pipeline.SettingTimeout,
	"wait":           pipeline.SettingWait,
}

func (h *handlers) registerChecks(r *Registry) {
	r.AddNamespace("checks", "Manage the health checks that gate deploys")
	procs := "[<process-types>]"
	r.Add(&Command{Name: "checks:enable", Usage: "<app> " + procs, Help: "Enable zero-downtime checks for all (or the comma-separated) process types", MinArgs: 1, MaxArgs: 2, Run: h.checksEnable})
	r.Add(&Command{Name: "checks:disable", Usage: "<app> " + procs, Help: "Disable checks: deploy stop-then-start, with downtime", MinArgs: 1, MaxArgs: 2, Run: h.checksDisable})
	r.Add(&Command{Name: "checks:skip", Usage: "<app> " + procs, Help: "Skip checks: switch as soon as containers run", MinArgs: 1, MaxArgs: 2, Run: h.checksSkip})
	r.Add(&Command{Name: "checks:run", Usage: "<app> " + procs, Help: "Run the checks against the running containers", MinArgs: 1, MaxArgs: 2, Run: h.checksRun})
	r.Add(&Command{Name: "checks:set", Usage: "[--global|<app>] wait-to-retire|attempts|timeout|wait [<seconds>]", Help: "Set a checks setting (no value: back to the default)",
		MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.checksSet})
	r.Add(&Command{Name: "checks:report", Usage: "[<app>] [--format json]", Help: "Display the checks settings of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.checksReport})
}

// processArg parses an optional comma-separated process list.
func processArg(args []string) ([]string, error) {
	if len(args) < 2 || args[1] == "" {
		return []string{pipeline.AllProcesses}, nil
	}
	var out []string
	for _, p := range strings.Split(args[1], ",") {
		p = strings.TrimSpace(p)
		if p == pipeline.AllProcesses {
			return []string{pipeline.AllProcesses}, nil
		}
		if err := validate.ProcessType(p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// updateList adds or removes procs in the stored process list key of app.
// Removing some processes from "_all_" keeps the app's other process types.
func (h *handlers) updateList(ctx context.Context, app, key string, procs []string, add bool) error {
	v, _, err := h.Store.Setting(ctx, app, key)
	if err != nil {
		return err
	}
	cur := pipeline.ProcessList(v)
	if !add && contains(cur, pipeline.AllProcesses) && !contains(procs, pipeline.AllProcesses) {
		if cur, err = h.processTypes(ctx, app); err != nil {
			return err
		}
	}
	var next []string
	switch {
	case add && contains(procs, pipeline.AllProcesses):
		next = []string{pipeline.AllProcesses}
	case add:
		next = cur
		for _, p := range procs {
			if !contains(next, p) {
				next = append(next, p)
			}
		}
	case contains(procs, pipeline.AllProcesses):
		next = nil
	default:
		for _, p := range cur {
			if !contains(procs, p) {
				next = append(next, p)
			}
		}
	}
	return h.Store.SetSetting(ctx, app, key, strings.Join(next, ","))
}

// processTypes lists the process types of app's current release (the
// release task aside).
func (h *handlers) processTypes(ctx context.Context, app string) ([]string, error) {
	a, err := h.Store.App(ctx, app)
	if err != nil || a.CurrentRelease == 0 {
		return nil, err
	}
	rel, err := h.Store.Release(ctx, app, a.CurrentRelease)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ui.SortedKeys(rel.Processes) {
		if p != pipeline.ReleaseProcess {
			out = append(out, p)
		}
	}
	return out, nil
}

func describe(procs []string) string {
	if contains(procs, pipeline.AllProcesses) {
		return "all processes"
	}
	return strings.Join(procs, ", ")
}

// setChecks puts the given processes of an app in one checks mode: add is
// the list they join (none for enabled), the other lists lose them.
func (h *handlers) setChecks(ctx context.Context, c *Call, add string, done string) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	procs, err := processArg(c.Args)
	if err != nil {
		return err
	}
	for _, key := range []string{pipeline.SettingChecksDisabled, pipeline.SettingChecksSkipped} {
		if key != add {
			if err := h.updateList(ctx, a.Name, key, procs, false); err != nil {
				return err
			}
		}
	}
	if add != "" {
		if err := h.updateList(ctx, a.Name, add, procs, true); err != nil {
			return err
		}
	}
	ui.Step(c.Stdout, "Zero downtime checks %s for %s (%s)", done, a.Name, describe(procs))
	return nil
}

func (h *handlers) checksEnable(ctx context.Context, c *Call) error {
	return h.setChecks(ctx, c, "", "enabled")
}

func (h *handlers) checksDisable(ctx context.Context, c *Call) error {
	return h.setChecks(ctx, c, pipeline.SettingChecksDisabled, "disabled: deploys stop the old containers first")
}

func (h *handlers) checksSkip(ctx context.Context, c *Call) error {
	return h.setChecks(ctx, c, pipeline.SettingChecksSkipped, "skipped")
}

func (h *handlers) checksSet(ctx context.Context, c *Call) error {
	props := map[string]property{}
	for name, key := range checkSettingKeys {
		props[name] = property{key, intIn(1, 3600)}
	}
	return h.setCommand(ctx, c, props)
}

type checksReport struct {
	App          string   `json:"app"`
	Disabled     []string `json:"disabled"`
	Skipped      []string `json:"skipped"`
	WaitToRetire int      `json:"wait-to-retire"`
	Attempts     int      `json:"attempts"`
	Timeout      int      `json:"timeout"`
	Wait         int      `json:"wait"`
	// Checks lists the checks of the current release per process type.
	Checks map[string][]string `json:"checks"`
}

func (h *handlers) checksReport(ctx context.Context, c *Call) error {
	return report(ctx, h, c, func(a store.App) (checksReport, error) {
		pol, err := h.Pipeline.Policy(ctx, a.Name)
		if err != nil {
			return checksReport{}, err
		}
		r := checksReport{App: a.Name, Disabled: nonNil(pol.Disabled), Skipped: nonNil(pol.Skipped), WaitToRetire: int(pol.WaitToRetire.Seconds()),
			Attempts: pick(pol.Settings.Attempts, checks.DefaultAttempts), Timeout: pick(pol.Settings.Timeout, checks.DefaultTimeout),
			Wait: pick(pol.Settings.Wait, checks.DefaultWait), Checks: map[string][]string{}}
		if a.CurrentRelease > 0 {
			rel, err := h.Store.Release(ctx, a.Name, a.CurrentRelease)
			if err != nil {
				return checksReport{}, err
			}
			aj, err := pipeline.AppJSONOf(rel)
			if err != nil {
				return checksReport{}, err
			}
			for proc, list := range aj.Healthchecks {
				for _, ch := range list {
					typ := ch.Type
					if typ == "" {
						typ = "startup"
					}
					r.Checks[proc] = append(r.Checks[proc], typ+": "+checks.Name(ch))
				}
			}
		}
		return r, nil
	}, func(r checksReport) {
		ui.Section(c.Stdout, "%s checks information", r.App)
		fields := []ui.Field{
			{Key: "Checks disabled list", Value: listOrNone(r.Disabled)},
			{Key: "Checks skipped list", Value: listOrNone(r.Skipped)},
			{Key: "Checks wait to retire", Value: strconv.Itoa(r.WaitToRetire)},
			{Key: "Checks attempts", Value: strconv.Itoa(r.Attempts)},
			{Key: "Checks timeout", Value: strconv.Itoa(r.Timeout)},
			{Key: "Checks wait", Value: strconv.Itoa(r.Wait)},
		}
		for _, proc := range ui.SortedKeys(r.Checks) {
			fields = append(fields, ui.Field{Key: "Checks " + proc, Value: strings.Join(r.Checks[proc], "; ")})
		}
		ui.Fields(c.Stdout, fields)
	})
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func (h *handlers) checksRun(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	procs, err := processArg(c.Args)
	if err != nil {
		return err
	}
	rel, err := h.Store.Release(ctx, a.Name, a.CurrentRelease)
	if err != nil {
		return err
	}
	aj, err := pipeline.AppJSONOf(rel)
	if err != nil {
		return err
	}
	pol, err := h.Pipeline.Policy(ctx, a.Name)
	if err != nil {
		return err
	}
	cs, err := h.Pipeline.Scheduler().List(ctx, a.Name)
	if err != nil {
		return err
	}
	runner := checks.NewRunner(h.Pipeline.Scheduler())
	say := func(format string, args ...any) { ui.Detail(c.Stdout, format, args...) }
	failed, ran := 0, 0
	for _, ct := range cs {
		if ct.Release != a.CurrentRelease || !(contains(procs, pipeline.AllProcesses) || contains(procs, ct.Process)) {
			continue
		}
		ran++
		list := checks.Deploy(aj.Healthchecks[ct.Process])
		ui.Step(c.Stdout, "Running checks for %s", ct.Name)
		t := checks.Target{ID: ct.ID, Process: ct.Process, Index: ct.Index, Port: ct.Port}
		if _, err := runner.Run(ctx, t, list, pol.Settings, say); err != nil {
			ui.Warn(c.Stdout, "%s", err)
			failed++
		}
	}
	if ran == 0 {
		return fmt.Errorf("app %s has no running container to check", a.Name)
	}
	if failed > 0 {
		return Exit(1, "%d of %d containers failed their checks", failed, ran)
	}
	ui.Step(c.Stdout, "All checks passed")
	return nil
}
