package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

func (h *handlers) registerReleases(r *Registry) {
	r.AddNamespace("releases", "List releases and roll back")
	r.Add(&Command{Name: "releases:list", Usage: "<app> [--format json]", Help: "List an app's releases, newest first", MinArgs: 1, MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.releasesList})
	r.Add(&Command{Name: "releases:info", Usage: "<app> <version> [--format json]", Help: "Show one release", MinArgs: 2, MaxArgs: 2, Flags: []Flag{formatFlag}, Run: h.releasesInfo})
	r.Add(&Command{Name: "releases:rollback", Usage: "<app> [<version>]", Help: "Deploy a previous release again (default: the previous good one) as a new release", MinArgs: 1, MaxArgs: 2, Run: h.releasesRollback})
	r.Add(&Command{Name: "releases:set", Usage: "[--global|<app>] keep [<count>]", Help: "Set how many release images are kept (default 5)", MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.releasesSet})
}

// parseVersion reads "3" or "v3".
func parseVersion(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "v"))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("invalid release %s: use a number such as 3 or v3", quoteArg(s))
	}
	return n, nil
}

type releaseReport struct {
	Version    int               `json:"version"`
	Status     string            `json:"status"`
	Current    bool              `json:"current"`
	Image      string            `json:"image"`
	ImageID    string            `json:"image-id"`
	GitRev     string            `json:"git-rev"`
	Reason     string            `json:"reason"`
	CreatedBy  string            `json:"created-by"`
	CreatedAt  time.Time         `json:"created-at"`
	FinishedAt *time.Time        `json:"finished-at,omitempty"`
	Error      string            `json:"error,omitempty"`
	Processes  map[string]string `json:"processes"`
	Formation  map[string]int    `json:"formation"`
	ConfigKeys []string          `json:"config-keys"`
}

func toReport(a store.App, r store.Release) releaseReport {
	rep := releaseReport{Version: r.Version, Status: r.Status, Current: r.Version == a.CurrentRelease, Image: pipeline.ImageTag(r.App, r.Version),
		ImageID: r.ImageID, GitRev: r.GitRev, Reason: r.Reason, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, Error: r.Error,
		Processes: r.Processes, Formation: r.Formation, ConfigKeys: ui.SortedKeys(r.Env), FinishedAt: optTime(r.FinishedAt)}
	return rep
}

func (h *handlers) releasesList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	rels, err := h.Store.Releases(ctx, a.Name)
	if err != nil {
		return err
	}
	reports := make([]releaseReport, 0, len(rels))
	for _, r := range rels {
		reports = append(reports, toReport(a, r))
	}
	if asJSON {
		return ui.JSON(c.Stdout, reports)
	}
	ui.Section(c.Stdout, "%s releases", a.Name)
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Version\tStatus\tRev\tBy\tCreated\tDescription")
	for _, r := range reports {
		ver := "v" + strconv.Itoa(r.Version)
		if r.Current {
			ver += "*"
		}
		rev := r.GitRev
		if len(rev) > 7 {
			rev = rev[:7]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ver, r.Status, dash(rev), dash(r.CreatedBy), r.CreatedAt.Format("2006-01-02 15:04:05"), r.Reason)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// optTime is t, or nil when t is unset, so JSON leaves the field out.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (h *handlers) releasesInfo(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	v, err := parseVersion(c.Args[1])
	if err != nil {
		return err
	}
	r, err := h.Store.Release(ctx, a.Name, v)
	if err == store.ErrNotFound {
		return fmt.Errorf("app %s has no release v%d", a.Name, v)
	}
	if err != nil {
		return err
	}
	rep := toReport(a, r)
	if asJSON {
		return ui.JSON(c.Stdout, rep)
	}
	ui.Section(c.Stdout, "%s release v%d", a.Name, v)
	procs := make([]string, 0, len(rep.Processes))
	for _, p := range ui.SortedKeys(rep.Processes) {
		cmd := rep.Processes[p]
		if cmd == "" {
			cmd = "(image CMD)"
		}
		procs = append(procs, p+": "+cmd)
	}
	fields := []ui.Field{
		{Key: "Status", Value: rep.Status},
		{Key: "Current", Value: strconv.FormatBool(rep.Current)},
		{Key: "Description", Value: rep.Reason},
		{Key: "Created by", Value: dash(rep.CreatedBy)},
		{Key: "Created at", Value: rep.CreatedAt.Format(time.RFC3339)},
		{Key: "Git revision", Value: dash(rep.GitRev)},
		{Key: "Image", Value: rep.Image + " (" + shortImage(rep.ImageID) + ")"},
		{Key: "Processes", Value: strings.Join(procs, "; ")},
		{Key: "Formation", Value: pipeline.FormatFormation(rep.Formation)},
		{Key: "Config keys", Value: strings.Join(rep.ConfigKeys, " ")},
	}
	if rep.Error != "" {
		fields = append(fields, ui.Field{Key: "Error", Value: rep.Error})
	}
	ui.Fields(c.Stdout, fields)
	return nil
}

func shortImage(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (h *handlers) releasesRollback(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	v := 0
	if len(c.Args) == 2 {
		if v, err = parseVersion(c.Args[1]); err != nil {
			return err
		}
	}
	return h.Pipeline.Rollback(ctx, a.Name, v, c.Caller.Name, c.Stdout)
}

func (h *handlers) releasesSet(ctx context.Context, c *Call) error {
	return h.setCommand(ctx, c, map[string]property{"keep": {pipeline.SettingKeepReleases, intIn(1, 1000)}})
}
