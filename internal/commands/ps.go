package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// maxScale bounds one process type's quantity.
const maxScale = 100

func (h *handlers) registerPs(r *Registry) {
	r.AddNamespace("ps", "Manage an app's processes")
	r.Add(&Command{Name: "ps:report", Usage: "[<app>] [--format json]", Help: "Display the processes of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.psReport})
	r.Add(&Command{Name: "ps:scale", Usage: "[--skip-deploy] <app> [<proc>=<count>...]", Help: "Set how many containers of each process type run (no pairs: show the scale)",
		MinArgs: 1, MaxArgs: -1, Flags: []Flag{{Name: "skip-deploy", Help: "record the scale without starting or stopping containers"}}, Run: h.psScale})
	r.Add(&Command{Name: "ps:start", Usage: "<app>", Help: "Start an app's processes", MinArgs: 1, MaxArgs: 1, Run: h.psStart})
	r.Add(&Command{Name: "ps:stop", Usage: "<app>", Help: "Stop an app's processes (its hosts answer 502)", MinArgs: 1, MaxArgs: 1, Run: h.psStop})
	r.Add(&Command{Name: "ps:restart", Usage: "<app>", Help: "Replace an app's containers with fresh ones, health-gated", MinArgs: 1, MaxArgs: 1, Run: h.psRestart})
	r.Add(&Command{Name: "ps:set", Usage: "[--global|<app>] stop-timeout-seconds|procfile-path [<value>]", Help: "Set the stop timeout (seconds between SIGTERM and SIGKILL, default 10) or the Procfile's path",
		MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.psSet})
	r.Add(&Command{Name: "ps:rebuild", Usage: "<app>", Help: "Rebuild an app from its deployed git revision and deploy it", MinArgs: 1, MaxArgs: 1, Run: h.psRebuild})
}

// deployed returns the app if it has a release, or a clear error.
func (h *handlers) deployed(ctx context.Context, name string) (store.App, error) {
	a, err := h.app(ctx, name)
	if err != nil {
		return a, err
	}
	if a.CurrentRelease == 0 {
		return a, fmt.Errorf("app %s has not been deployed", a.Name)
	}
	return a, nil
}

func (h *handlers) psScale(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if len(c.Args) == 1 {
		f, err := h.Store.Formation(ctx, a.Name)
		if err != nil {
			return err
		}
		ui.Step(c.Stdout, "Scaling for %s", a.Name)
		fmt.Fprintln(c.Stdout, "proctype: qty")
		fmt.Fprintln(c.Stdout, "--------: ---")
		for _, k := range ui.SortedKeys(f) {
			fmt.Fprintf(c.Stdout, "%s:  %d\n", k, f[k])
		}
		return nil
	}
	want := map[string]int{}
	for _, pair := range c.Args[1:] {
		proc, count, ok := strings.Cut(pair, "=")
		if !ok || count == "" {
			return fmt.Errorf("missing count for process type %s: use <proc>=<count>", quoteArg(pair))
		}
		if err := validate.ProcessType(proc); err != nil {
			return err
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 0 || n > maxScale {
			return fmt.Errorf("invalid count %s for process type %s: use a whole number from 0 to %d", quoteArg(count), proc, maxScale)
		}
		if _, dup := want[proc]; dup {
			return fmt.Errorf("process type %s is given twice", proc)
		}
		want[proc] = n
	}
	if err := h.Pipeline.CheckScale(ctx, a, want); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Scaling %s processes: %s", a.Name, pipeline.FormatFormation(want))
	if c.Bool("skip-deploy") {
		return h.Store.SetFormation(ctx, a.Name, want)
	}
	return h.Pipeline.Scale(ctx, a.Name, want, c.Stdout)
}

func (h *handlers) psStart(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	return h.Pipeline.Start(ctx, a.Name, c.Stdout)
}

func (h *handlers) psStop(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	return h.Pipeline.Stop(ctx, a.Name, c.Stdout)
}

func (h *handlers) psRestart(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	return h.Pipeline.Restart(ctx, a.Name, c.Caller.Name, c.Stdout)
}

func (h *handlers) psRebuild(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	return h.Pipeline.Rebuild(ctx, a.Name, c.Caller.Name, c.Stdout)
}

func (h *handlers) psSet(ctx context.Context, c *Call) error {
	return h.setCommand(ctx, c, map[string]property{
		"stop-timeout-seconds": {pipeline.SettingStopTimeout, intIn(1, 3600)},
		"procfile-path":        {pipeline.SettingProcfilePath, pathIn},
	})
}

type psContainer struct {
	Process string `json:"process"`
	Index   int    `json:"index"`
	Name    string `json:"name"`
	ID      string `json:"id"`
	State   string `json:"state"`
	Release int    `json:"release"`
}

type psReport struct {
	App           string         `json:"app"`
	Deployed      bool           `json:"deployed"`
	Release       int            `json:"release"`
	Running       string         `json:"running"`
	Stopped       bool           `json:"stopped"`
	Processes     int            `json:"processes"`
	Formation     map[string]int `json:"formation"`
	RestartPolicy string         `json:"restart-policy"`
	StopTimeout   int            `json:"stop-timeout-seconds"`
	Containers    []psContainer  `json:"containers"`
}

func (h *handlers) psReport(ctx context.Context, c *Call) error {
	all, err := h.Pipeline.Scheduler().List(ctx, "")
	if err != nil {
		return err
	}
	byApp := map[string][]scheduler.Container{}
	for _, ct := range all {
		byApp[ct.App] = append(byApp[ct.App], ct)
	}
	return report(ctx, h, c, func(a store.App) (psReport, error) {
		f, err := h.Store.Formation(ctx, a.Name)
		if err != nil {
			return psReport{}, err
		}
		pol, err := h.Pipeline.Policy(ctx, a.Name)
		if err != nil {
			return psReport{}, err
		}
		r := psReport{App: a.Name, Deployed: a.CurrentRelease > 0, Release: a.CurrentRelease, Stopped: a.Stopped,
			Formation: f, RestartPolicy: "unless-stopped", StopTimeout: int(pol.StopTimeout.Seconds()), Containers: []psContainer{}}
		running, total := 0, 0
		for _, ct := range byApp[a.Name] {
			if ct.Release != a.CurrentRelease {
				continue
			}
			total++
			if ct.Running() {
				running++
			}
			r.Containers = append(r.Containers, psContainer{Process: ct.Process, Index: ct.Index, Name: ct.Name, ID: ct.ID[:12], State: ct.State, Release: ct.Release})
		}
		r.Processes = total
		switch {
		case total == 0:
			r.Running = "false"
		case running == total:
			r.Running = "true"
		case running == 0:
			r.Running = "false"
		default:
			r.Running = "mixed"
		}
		return r, nil
	}, func(r psReport) {
		ui.Section(c.Stdout, "%s ps information", r.App)
		rel := ""
		if r.Release > 0 {
			rel = "v" + strconv.Itoa(r.Release)
		}
		fields := []ui.Field{
			{Key: "Deployed", Value: strconv.FormatBool(r.Deployed)},
			{Key: "Current release", Value: rel},
			{Key: "Processes", Value: strconv.Itoa(r.Processes)},
			{Key: "Ps can scale", Value: "true"},
			{Key: "Ps restart policy", Value: r.RestartPolicy},
			{Key: "Ps stop timeout seconds", Value: strconv.Itoa(r.StopTimeout)},
			{Key: "Process type scale", Value: pipeline.FormatFormation(r.Formation)},
			{Key: "Running", Value: r.Running},
			{Key: "Stopped", Value: strconv.FormatBool(r.Stopped)},
		}
		for _, ct := range r.Containers {
			fields = append(fields, ui.Field{Key: fmt.Sprintf("Status %s %d", ct.Process, ct.Index), Value: fmt.Sprintf("%s (CID: %s)", ct.State, ct.ID)})
		}
		ui.Fields(c.Stdout, fields)
	})
}
