package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// Global app settings apps:set --global accepts, with their allowed values.
var globalAppSettings = map[string][]string{
	"disable-autocreation": {"true", "false"},
}

// AutocreationDisabled reports whether pushing to an unknown app is refused.
func AutocreationDisabled(ctx context.Context, st *store.Store) (bool, error) {
	v, _, err := st.Setting(ctx, "", "disable-autocreation")
	return v == "true", err
}

func (h *handlers) registerApps(r *Registry) {
	r.AddNamespace("apps", "Manage apps")
	r.Add(&Command{Name: "apps:create", Usage: "<app>", Help: "Create a new app", MinArgs: 1, MaxArgs: 1, Run: h.appsCreate})
	r.Add(&Command{Name: "apps:list", Help: "List your apps", Flags: []Flag{formatFlag}, Run: h.appsList})
	r.Add(&Command{Name: "apps:destroy", Usage: "<app> [--force]", Help: "Permanently destroy an app, its containers, images and repository",
		MinArgs: 1, MaxArgs: 1, Flags: []Flag{{Name: "force", Help: "do not ask for confirmation"}}, Run: h.appsDestroy})
	r.Add(&Command{Name: "apps:rename", Usage: "<old-app> <new-app>", Help: "Rename an app (its current release is redeployed under the new name)", MinArgs: 2, MaxArgs: 2, Run: h.appsRename})
	r.Add(&Command{Name: "apps:exists", Usage: "<app>", Help: "Exit 0 if the app exists, 1 if not", MinArgs: 1, MaxArgs: 1, Run: h.appsExists})
	r.Add(&Command{Name: "apps:report", Usage: "[<app>] [--format json]", Help: "Display information about apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.appsReport})
	r.Add(&Command{Name: "apps:set", Usage: "--global <key> [<value>]", Help: "Set an apps setting (disable-autocreation true|false); no value resets it",
		MinArgs: 1, MaxArgs: 2, Flags: []Flag{{Name: "global", Help: "set a global setting"}}, Run: h.appsSet})
}

func (h *handlers) appsCreate(ctx context.Context, c *Call) error {
	name := c.Args[0]
	if err := validate.AppName(name); err != nil {
		return err
	}
	if _, err := h.Store.App(ctx, name); err == nil {
		return fmt.Errorf("name %s is already taken", name)
	}
	ui.Step(c.Stdout, "Creating %s...", name)
	err := h.Pipeline.CreateApp(ctx, name, c.Stdout)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("name %s is already taken", name)
	}
	return err
}

func (h *handlers) appsList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	apps, err := h.Store.Apps(ctx)
	if err != nil {
		return err
	}
	if apps, err = h.visibleApps(ctx, c, apps); err != nil {
		return err
	}
	if asJSON {
		names := make([]string, 0, len(apps))
		for _, a := range apps {
			names = append(names, a.Name)
		}
		return ui.JSON(c.Stdout, names)
	}
	ui.Section(c.Stdout, "My Apps")
	for _, a := range apps {
		fmt.Fprintln(c.Stdout, a.Name)
	}
	return nil
}

func (h *handlers) appsDestroy(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if !c.Bool("force") {
		if err := confirm(c, "app "+a.Name, a.Name); err != nil {
			return err
		}
	}
	return h.Pipeline.Destroy(ctx, a.Name, c.Stdout)
}

func (h *handlers) appsRename(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	to := c.Args[1]
	if err := validate.AppName(to); err != nil {
		return err
	}
	if to == a.Name {
		return fmt.Errorf("app %s already has that name", to)
	}
	err = h.Pipeline.Rename(ctx, a.Name, to, c.Stdout)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("name %s is already taken", to)
	}
	return err
}

func (h *handlers) appsExists(ctx context.Context, c *Call) error {
	_, err := h.app(ctx, c.Args[0])
	return err
}

func (h *handlers) appsSet(ctx context.Context, c *Call) error {
	if !c.Bool("global") {
		return &UsageError{Msg: "apps:set only has global settings for now: use --global"}
	}
	key, value := c.Args[0], ""
	if len(c.Args) > 1 {
		value = c.Args[1]
	}
	allowed, ok := globalAppSettings[key]
	if !ok {
		return fmt.Errorf("unknown apps setting %q (known: disable-autocreation)", key)
	}
	if value != "" && !contains(allowed, value) {
		return fmt.Errorf("invalid value %q for %s (use %s)", value, key, strings.Join(allowed, " or "))
	}
	if err := h.Store.SetSetting(ctx, "", key, value); err != nil {
		return err
	}
	if value == "" {
		ui.Step(c.Stdout, "Unsetting %s", key)
	} else {
		ui.Step(c.Stdout, "Setting %s to %s", key, value)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// appReport is what apps:report shows for one app.
type appReport struct {
	Name                 string    `json:"name"`
	CreatedAt            time.Time `json:"created-at"`
	DeploySource         string    `json:"deploy-source"`
	DeploySourceMetadata string    `json:"deploy-source-metadata"`
	Dir                  string    `json:"dir"`
	Locked               bool      `json:"locked"`
	CurrentRelease       string    `json:"current-release"`
	Stopped              bool      `json:"stopped"`
}

func (h *handlers) appsReport(ctx context.Context, c *Call) error {
	return report(ctx, h, c, func(a store.App) (appReport, error) {
		rel := ""
		if a.CurrentRelease > 0 {
			rel = "v" + strconv.Itoa(a.CurrentRelease)
		}
		return appReport{
			Name: a.Name, CreatedAt: a.CreatedAt, DeploySource: a.DeploySource,
			DeploySourceMetadata: a.SourceMeta, Dir: h.Pipeline.RepoPath(a.Name), Locked: h.Pipeline.Locked(a.Name),
			CurrentRelease: rel, Stopped: a.Stopped,
		}, nil
	}, func(r appReport) {
		ui.Section(c.Stdout, "%s app information", r.Name)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "App created at", Value: r.CreatedAt.Format(time.RFC3339)},
			{Key: "App current release", Value: r.CurrentRelease},
			{Key: "App deploy source", Value: r.DeploySource},
			{Key: "App deploy source metadata", Value: r.DeploySourceMetadata},
			{Key: "App dir", Value: r.Dir},
			{Key: "App locked", Value: strconv.FormatBool(r.Locked)},
			{Key: "App stopped", Value: strconv.FormatBool(r.Stopped)},
		})
	})
}
