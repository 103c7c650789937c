package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/kballard/go-shellquote"

	"github.com/berth-paas/berth/internal/builder/buildpack"
	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/images"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerBuilders(r *Registry) {
	r.AddNamespace("builder", "Choose how apps are built")
	r.Add(&Command{Name: "builder:set", Usage: "[--global|<app>] selected|build-dir [<value>]", Help: "Set the builder (dockerfile, herokuish) or the build directory of a monorepo; no value resets it",
		MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.builderSet})
	r.Add(&Command{Name: "builder:report", Usage: "[<app>] [--format json]", Help: "Display the builder settings of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.builderReport})
	r.AddNamespace("app-json", "Where app.json is read from")
	r.Add(&Command{Name: "app-json:set", Usage: "[--global|<app>] appjson-path [<path>]", Help: "Read app.json from another path of the tree", MinArgs: 1, MaxArgs: 3, Flags: []Flag{globalFlag}, Run: h.appJSONSet})

	r.AddNamespace("buildpacks", "Manage the buildpacks that build an app without a Dockerfile")
	idx := Flag{Name: "index", Value: true, Help: "1-based position in the list"}
	r.Add(&Command{Name: "buildpacks:add", Usage: "[--index N] (<app>|--global) <buildpack>", Help: "Add a buildpack (git URL#ref, tarball URL or server path)", MinArgs: 1, MaxArgs: 2, Flags: []Flag{globalFlag, idx}, Run: h.buildpacksAdd})
	r.Add(&Command{Name: "buildpacks:set", Usage: "[--index N] (<app>|--global) <buildpack>", Help: "Replace the buildpack at an index (default: the first)", MinArgs: 1, MaxArgs: 2, Flags: []Flag{globalFlag, idx}, Run: h.buildpacksSetOne})
	r.Add(&Command{Name: "buildpacks:remove", Usage: "(<app>|--global) (<buildpack>|--index N)", Help: "Remove a buildpack", MinArgs: 0, MaxArgs: 2, Flags: []Flag{globalFlag, idx}, Run: h.buildpacksRemove})
	r.Add(&Command{Name: "buildpacks:clear", Usage: "(<app>|--global)", Help: "Remove every buildpack", MaxArgs: 1, Flags: []Flag{globalFlag}, Run: h.buildpacksClear})
	r.Add(&Command{Name: "buildpacks:list", Usage: "(<app>|--global) [--format json]", Help: "List buildpacks in order", MaxArgs: 1, Flags: []Flag{globalFlag, formatFlag}, Run: h.buildpacksList})
	r.Add(&Command{Name: "buildpacks:set-property", Usage: "--global stack|runtime [<image>]", Help: "Set the build stack or runtime image of buildpack builds", MinArgs: 1, MaxArgs: 2, Flags: []Flag{globalFlag}, Run: h.buildpacksSetProperty})
	r.AddNamespace("repo", "Manage an app's build cache")
	r.Add(&Command{Name: "repo:purge-cache", Usage: "<app>", Help: "Empty the app's buildpack cache", MinArgs: 1, MaxArgs: 1, Run: h.repoPurgeCache})

	r.AddNamespace("images", "Make the base images berth needs, from the host's Debian mirror")
	r.Add(&Command{Name: "images:bootstrap", Usage: "[--suite S] [--mirror URL] [--force] [--set-default]", Help: "Make the runtime base and buildpack stack images with debootstrap (no registry needed)",
		Flags: []Flag{{Name: "suite", Value: true, Help: "Debian suite (default: the host's)"}, {Name: "mirror", Value: true, Help: "Debian mirror (default: the host's apt mirror)"},
			{Name: "force", Help: "remake images that exist"}, {Name: "set-default", Help: "use them as the buildpack stack and runtime"}}, Run: h.imagesBootstrap})

	r.AddNamespace("builds", "Build logs")
	r.Add(&Command{Name: "builds:list", Usage: "<app> [--format json]", Help: "List an app's builds", MinArgs: 1, MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.buildsList})
	r.Add(&Command{Name: "builds:output", Usage: "<app> [<id>]", Help: "Print a build's output (default: the last build)", MinArgs: 1, MaxArgs: 2, Run: h.buildsOutput})

	r.AddNamespace("docker-options", "Pass docker options to an app's build, deploy or run containers")
	r.Add(&Command{Name: "docker-options:add", Usage: "<app> <phase(s)> <option>", Help: "Add an option for build, deploy and/or run (comma-separated phases)", MinArgs: 3, MaxArgs: -1, FlagsFirst: true, Run: h.dockerOptionsAdd})
	r.Add(&Command{Name: "docker-options:remove", Usage: "<app> <phase(s)> <option>", Help: "Remove an option", MinArgs: 3, MaxArgs: -1, FlagsFirst: true, Run: h.dockerOptionsRemove})
	r.Add(&Command{Name: "docker-options:clear", Usage: "<app> [<phase(s)>]", Help: "Remove every option (of the phases)", MinArgs: 1, MaxArgs: 2, Run: h.dockerOptionsClear})
	r.Add(&Command{Name: "docker-options:report", Usage: "[<app>] [--format json]", Help: "Display the docker options of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.dockerOptionsReport})

	r.AddNamespace("resource", "Limit the CPU and memory of an app's containers")
	procFlag := Flag{Name: "process-type", Value: true, Help: "a process type, or build for the build container (default: every process type)"}
	r.Add(&Command{Name: "resource:limit", Usage: "[--process-type P] <app> [--cpu N] [--memory SIZE] [--memory-swap SIZE] [--pids N]", Help: "Set resource limits",
		MinArgs: 1, MaxArgs: 1, Flags: []Flag{procFlag, {Name: "cpu", Value: true, Help: "CPUs (1.5)"}, {Name: "memory", Value: true, Help: "memory (512m, 1g)"},
			{Name: "memory-swap", Value: true, Help: "memory+swap (-1: unlimited)"}, {Name: "pids", Value: true, Help: "max processes"}}, Run: h.resourceLimit})
	r.Add(&Command{Name: "resource:limit-clear", Usage: "[--process-type P] <app>", Help: "Remove resource limits", MinArgs: 1, MaxArgs: 1, Flags: []Flag{procFlag}, Run: h.resourceLimitClear})
	r.Add(&Command{Name: "resource:report", Usage: "[<app>] [--format json]", Help: "Display resource limits", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.resourceReport})

	r.Add(&Command{Name: "git:from-image", Usage: "<app> <image[:tag]>", Help: "Deploy a prebuilt image (local, or pulled with registry:login credentials)", MinArgs: 2, MaxArgs: 2, Run: h.gitFromImage})
	r.Add(&Command{Name: "git:from-archive", Usage: "<app> <url|->", Help: "Build and deploy a tarball from a URL or stdin", MinArgs: 2, MaxArgs: 2, Run: h.gitFromArchive})
	r.Add(&Command{Name: "git:sync", Usage: "[--build] <app> <repository> [<ref>]", Help: "Fetch a remote repository into the app (and deploy it with --build)",
		MinArgs: 2, MaxArgs: 3, Flags: []Flag{{Name: "build", Help: "deploy what was fetched"}}, Run: h.gitSync})
	r.AddNamespace("registry", "Log in to image registries for git:from-image")
	r.Add(&Command{Name: "registry:login", Usage: "<server> <user> [--password-stdin]", Help: "Store a registry login (checked with the registry)", MinArgs: 2, MaxArgs: 2,
		Flags: []Flag{{Name: "password-stdin", Help: "read the password from stdin (the default)"}}, Run: h.registryLogin})
	r.Add(&Command{Name: "registry:logout", Usage: "<server>", Help: "Forget a registry login", MinArgs: 1, MaxArgs: 1, Run: h.registryLogout})
}

// settingScope resolves (--global|<app>) for set commands and returns the
// app ("" for global) and the remaining arguments.
func (h *handlers) settingScope(ctx context.Context, c *Call) (string, []string, error) {
	if c.Bool("global") {
		return "", c.Args, nil
	}
	if len(c.Args) == 0 {
		return "", nil, &UsageError{Msg: "name an app or pass --global"}
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return "", nil, err
	}
	return a.Name, c.Args[1:], nil
}

// setProperty stores key=value for app (or globally), "" resetting it.
func (h *handlers) setProperty(ctx context.Context, c *Call, app, name, key, value string) error {
	if err := h.Store.SetSetting(ctx, app, key, value); err != nil {
		return err
	}
	if value == "" {
		ui.Step(c.Stdout, "Unset %s for %s", name, scopeLabel(app))
	} else {
		ui.Step(c.Stdout, "Set %s to %s for %s", name, value, scopeLabel(app))
	}
	return nil
}

// property is a setting a *:set command changes.
type property struct {
	key string // the stored setting
	// check validates and normalises a value.
	check func(name, value string) (string, error)
}

// setCommand runs "[--global|<app>] KEY [VALUE]" over props: no value
// resets the setting to its default.
func (h *handlers) setCommand(ctx context.Context, c *Call, props map[string]property) error {
	app, args, err := h.settingScope(ctx, c)
	if err != nil {
		return err
	}
	keys := strings.Join(ui.SortedKeys(props), ", ")
	if len(args) == 0 || len(args) > 2 {
		return &UsageError{Msg: "give a key (" + keys + ") and an optional value"}
	}
	p, ok := props[args[0]]
	if !ok {
		return fmt.Errorf("unknown setting %s (%s)", quoteArg(args[0]), keys)
	}
	value := ""
	if len(args) == 2 {
		if value, err = p.check(args[0], args[1]); err != nil {
			return err
		}
	}
	return h.setProperty(ctx, c, app, args[0], p.key, value)
}

// intIn accepts whole numbers from lo to hi.
func intIn(lo, hi int) func(string, string) (string, error) {
	return func(name, v string) (string, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return "", fmt.Errorf("invalid value %s for %s: use a whole number from %d to %d", quoteArg(v), name, lo, hi)
		}
		return strconv.Itoa(n), nil
	}
}

// pathIn accepts a path inside the source tree.
func pathIn(_, v string) (string, error) { return v, relPath(v) }

// relPath validates a path inside the source tree.
func relPath(p string) error {
	clean := filepath.Clean(p)
	if p == "" || filepath.IsAbs(p) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("invalid path %s: give a path inside the repository", quoteArg(p))
	}
	return nil
}

func (h *handlers) builderSet(ctx context.Context, c *Call) error {
	return h.setCommand(ctx, c, map[string]property{
		"selected": {pipeline.SettingBuilder, func(_, v string) (string, error) {
			if v != pipeline.BuilderDockerfile && v != pipeline.BuilderHerokuish {
				return "", fmt.Errorf("unknown builder %s: use dockerfile or herokuish (git:from-image deploys images)", quoteArg(v))
			}
			return v, nil
		}},
		"build-dir": {pipeline.SettingBuildDir, pathIn},
	})
}

func (h *handlers) appJSONSet(ctx context.Context, c *Call) error {
	return h.setCommand(ctx, c, map[string]property{"appjson-path": {pipeline.SettingAppJSONPath, pathIn}})
}

type builderReport struct {
	App          string   `json:"app"`
	Selected     string   `json:"selected"`
	BuildDir     string   `json:"build-dir"`
	AppJSONPath  string   `json:"appjson-path"`
	ProcfilePath string   `json:"procfile-path"`
	Buildpacks   []string `json:"buildpacks"`
	Stack        string   `json:"stack"`
	Runtime      string   `json:"runtime"`
	LastBuilder  string   `json:"last-builder"`
}

func (h *handlers) builderReport(ctx context.Context, c *Call) error {
	stack, runtime, err := h.Pipeline.BuildpackImages(ctx)
	if err != nil {
		return err
	}
	return report(ctx, h, c, func(a store.App) (builderReport, error) {
		r := builderReport{App: a.Name, Stack: stack, Runtime: runtime}
		var err error
		for key, dst := range map[string]*string{pipeline.SettingBuilder: &r.Selected, pipeline.SettingBuildDir: &r.BuildDir,
			pipeline.SettingAppJSONPath: &r.AppJSONPath, pipeline.SettingProcfilePath: &r.ProcfilePath} {
			if *dst, err = h.Pipeline.AppSetting(ctx, a.Name, key); err != nil {
				return r, err
			}
		}
		if r.Buildpacks, err = h.Store.Buildpacks(ctx, a.Name); err != nil {
			return r, err
		}
		r.Buildpacks = nonNil(r.Buildpacks)
		if bs, err := h.Store.Builds(ctx, a.Name); err == nil && len(bs) > 0 {
			r.LastBuilder = bs[0].Builder
		}
		return r, nil
	}, func(r builderReport) {
		ui.Section(c.Stdout, "%s builder information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Builder selected", Value: orDefault(r.Selected, "(detected: dockerfile when there is a Dockerfile, else herokuish)")},
			{Key: "Builder build dir", Value: orDefault(r.BuildDir, "(repository root)")},
			{Key: "Builder last used", Value: r.LastBuilder},
			{Key: "App json path", Value: orDefault(r.AppJSONPath, "app.json")},
			{Key: "Ps procfile path", Value: orDefault(r.ProcfilePath, "Procfile")},
			{Key: "Buildpacks", Value: strings.Join(r.Buildpacks, " ")},
			{Key: "Buildpacks stack", Value: r.Stack},
			{Key: "Buildpacks runtime", Value: r.Runtime},
		})
	})
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// buildpackScope returns the app ("" = global), its list and the args left.
func (h *handlers) buildpackScope(ctx context.Context, c *Call) (string, []string, []string, error) {
	app, args, err := h.settingScope(ctx, c)
	if err != nil {
		return "", nil, nil, err
	}
	var list []string
	if app == "" {
		list, err = h.Pipeline.GlobalBuildpacks(ctx)
	} else {
		list, err = h.Store.Buildpacks(ctx, app)
	}
	return app, list, args, err
}

func (h *handlers) saveBuildpacks(ctx context.Context, app string, list []string) error {
	if app == "" {
		return h.Pipeline.SetGlobalBuildpacks(ctx, list)
	}
	return h.Store.SetBuildpacks(ctx, app, list)
}

func index(c *Call, n int, insert bool) (int, error) {
	v := c.Flag("index")
	if v == "" {
		return -1, nil
	}
	i, err := strconv.Atoi(v)
	limit := n
	if insert {
		limit = n + 1
	}
	if err != nil || i < 1 || i > limit {
		return 0, fmt.Errorf("invalid --index %s: use 1 to %d", quoteArg(v), max(limit, 1))
	}
	return i - 1, nil
}

func (h *handlers) buildpacksAdd(ctx context.Context, c *Call) error {
	app, list, args, err := h.buildpackScope(ctx, c)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return &UsageError{Msg: "give one buildpack"}
	}
	if err := buildpack.ValidateSpec(args[0]); err != nil {
		return err
	}
	if contains(list, args[0]) {
		return fmt.Errorf("buildpack %s is already in the list", args[0])
	}
	i, err := index(c, len(list), true)
	if err != nil {
		return err
	}
	if i < 0 {
		i = len(list)
	}
	list = append(list[:i], append([]string{args[0]}, list[i:]...)...)
	if err := h.saveBuildpacks(ctx, app, list); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Added buildpack %s for %s (position %d)", args[0], scopeLabel(app), i+1)
	return nil
}

func (h *handlers) buildpacksSetOne(ctx context.Context, c *Call) error {
	app, list, args, err := h.buildpackScope(ctx, c)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return &UsageError{Msg: "give one buildpack"}
	}
	if err := buildpack.ValidateSpec(args[0]); err != nil {
		return err
	}
	i, err := index(c, len(list), false)
	if err != nil {
		return err
	}
	if i < 0 {
		i = 0
	}
	if i == len(list) {
		list = append(list, args[0])
	} else {
		list[i] = args[0]
	}
	if err := h.saveBuildpacks(ctx, app, list); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Set buildpack %d of %s to %s", i+1, scopeLabel(app), args[0])
	return nil
}

func (h *handlers) buildpacksRemove(ctx context.Context, c *Call) error {
	app, list, args, err := h.buildpackScope(ctx, c)
	if err != nil {
		return err
	}
	i, err := index(c, len(list), false)
	if err != nil {
		return err
	}
	switch {
	case i >= 0 && len(args) > 0, i < 0 && len(args) != 1:
		return &UsageError{Msg: "give a buildpack or --index, not both"}
	case i < 0:
		i = -1
		for j, b := range list {
			if b == args[0] {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("buildpack %s is not in the list of %s", args[0], scopeLabel(app))
		}
	}
	removed := list[i]
	list = append(list[:i], list[i+1:]...)
	if err := h.saveBuildpacks(ctx, app, list); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Removed buildpack %s from %s", removed, scopeLabel(app))
	return nil
}

func (h *handlers) buildpacksClear(ctx context.Context, c *Call) error {
	app, _, args, err := h.buildpackScope(ctx, c)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return &UsageError{Msg: "buildpacks:clear takes no buildpack"}
	}
	if err := h.saveBuildpacks(ctx, app, nil); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Cleared the buildpacks of %s", scopeLabel(app))
	return nil
}

func (h *handlers) buildpacksList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	app, list, _, err := h.buildpackScope(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		return ui.JSON(c.Stdout, nonNil(list))
	}
	ui.Section(c.Stdout, "%s buildpacks", scopeLabel(app))
	for _, b := range list {
		fmt.Fprintln(c.Stdout, b)
	}
	return nil
}

func (h *handlers) buildpacksSetProperty(ctx context.Context, c *Call) error {
	if !c.Bool("global") {
		return &UsageError{Msg: "stack and runtime are global: pass --global"}
	}
	key := map[string]string{"stack": pipeline.SettingStack, "runtime": pipeline.SettingRuntime}[c.Args[0]]
	if key == "" {
		return fmt.Errorf("unknown buildpacks property %s (stack or runtime)", quoteArg(c.Args[0]))
	}
	value := ""
	if len(c.Args) == 2 {
		if _, err := pipeline.ParseImageRef(c.Args[1]); err != nil {
			return err
		}
		value = c.Args[1]
	}
	return h.setProperty(ctx, c, "", c.Args[0], key, value)
}

func (h *handlers) repoPurgeCache(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := os.RemoveAll(h.Pipeline.CacheDir(a.Name)); err != nil {
		return fmt.Errorf("empty the cache of %s: %w", a.Name, err)
	}
	ui.Step(c.Stdout, "Purged the build cache of %s", a.Name)
	return nil
}

func (h *handlers) imagesBootstrap(ctx context.Context, c *Call) error {
	suite := c.Flag("suite")
	if suite == "" {
		var err error
		if suite, err = images.HostSuite(); err != nil {
			return err
		}
	}
	mirror := c.Flag("mirror")
	if mirror == "" {
		mirror = images.HostMirror()
	}
	tmp := filepath.Join(h.Pipeline.DataDir(), "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	imgs := images.Standard(suite)
	err := images.Bootstrap(ctx, h.Pipeline.Docker(), imgs, images.Options{
		Suite: suite, Mirror: mirror, Force: c.Bool("force"),
		CacheDir: filepath.Join(h.Pipeline.DataDir(), "cache", "debootstrap"), TmpDir: tmp,
	}, c.Stdout)
	if err != nil {
		return err
	}
	if c.Bool("set-default") {
		if err := h.Store.SetSetting(ctx, "", pipeline.SettingRuntime, imgs[0].Ref); err != nil {
			return err
		}
		if err := h.Store.SetSetting(ctx, "", pipeline.SettingStack, imgs[1].Ref); err != nil {
			return err
		}
		ui.Step(c.Stdout, "Buildpack builds now use %s (stack) and %s (runtime)", imgs[1].Ref, imgs[0].Ref)
	}
	return nil
}

func (h *handlers) buildsList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	bs, err := h.Store.Builds(ctx, a.Name)
	if err != nil {
		return err
	}
	if asJSON {
		type build struct {
			ID         int        `json:"id"`
			Builder    string     `json:"builder"`
			Source     string     `json:"source"`
			Status     string     `json:"status"`
			ImageID    string     `json:"image-id"`
			StartedAt  time.Time  `json:"started-at"`
			FinishedAt *time.Time `json:"finished-at,omitempty"`
		}
		out := []build{}
		for _, b := range bs {
			out = append(out, build{ID: b.ID, Builder: b.Builder, Source: b.Source, Status: b.Status, ImageID: b.ImageID,
				StartedAt: b.StartedAt, FinishedAt: optTime(b.FinishedAt)})
		}
		return ui.JSON(c.Stdout, out)
	}
	ui.Section(c.Stdout, "%s builds", a.Name)
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tStatus\tBuilder\tSource\tStarted\tDuration")
	for _, b := range bs {
		dur := "-"
		if !b.FinishedAt.IsZero() {
			dur = b.FinishedAt.Sub(b.StartedAt).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Status, dash(b.Builder), b.Source, b.StartedAt.Format("2006-01-02 15:04:05"), dur)
	}
	return tw.Flush()
}

func (h *handlers) buildsOutput(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	id := 0
	if len(c.Args) == 2 {
		if id, err = strconv.Atoi(c.Args[1]); err != nil || id < 1 {
			return fmt.Errorf("invalid build id %s", quoteArg(c.Args[1]))
		}
	}
	b, err := h.Store.BuildOutput(ctx, a.Name, id)
	if errors.Is(err, store.ErrNotFound) {
		if id == 0 {
			return fmt.Errorf("app %s has no build yet", a.Name)
		}
		return fmt.Errorf("app %s has no build %d", a.Name, id)
	}
	if err != nil {
		return err
	}
	_, err = c.Stdout.Write(b.Output)
	return err
}

// optionText is the stored form of docker-options:add's option: one
// argument is option text as Dokku takes it ("-v /a:/b"), several are words
// quoted so that each stays one word ("--label" "a=b c").
func optionText(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return shellquote.Join(args...)
}

// phasesArg parses "build,deploy".
func phasesArg(s string) ([]dockeropts.Phase, error) {
	var out []dockeropts.Phase
	for _, p := range strings.Split(s, ",") {
		ph, err := dockeropts.ParsePhase(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, ph)
	}
	return out, nil
}

func (h *handlers) dockerOptionsAdd(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	phases, err := phasesArg(c.Args[1])
	if err != nil {
		return err
	}
	opt := optionText(c.Args[2:])
	for _, ph := range phases {
		if err := dockeropts.Check(ph, opt); err != nil {
			return err
		}
	}
	for _, ph := range phases {
		cur, err := h.Store.DockerOptions(ctx, a.Name, string(ph))
		if err != nil {
			return err
		}
		if contains(cur, opt) {
			continue
		}
		if err := h.Store.SetDockerOptions(ctx, a.Name, string(ph), append(cur, opt)); err != nil {
			return err
		}
	}
	ui.Step(c.Stdout, "Added %s to the %s options of %s (applies at the next deploy)", opt, c.Args[1], a.Name)
	return nil
}

func (h *handlers) dockerOptionsRemove(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	phases, err := phasesArg(c.Args[1])
	if err != nil {
		return err
	}
	opt := optionText(c.Args[2:])
	found := false
	for _, ph := range phases {
		cur, err := h.Store.DockerOptions(ctx, a.Name, string(ph))
		if err != nil {
			return err
		}
		var next []string
		for _, o := range cur {
			if o == opt {
				found = true
				continue
			}
			next = append(next, o)
		}
		if err := h.Store.SetDockerOptions(ctx, a.Name, string(ph), next); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("%s is not a %s option of %s", quoteArg(opt), c.Args[1], a.Name)
	}
	ui.Step(c.Stdout, "Removed %s from the %s options of %s", opt, c.Args[1], a.Name)
	return nil
}

func (h *handlers) dockerOptionsClear(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	phases := []dockeropts.Phase{dockeropts.Build, dockeropts.Deploy, dockeropts.Run}
	if len(c.Args) == 2 {
		if phases, err = phasesArg(c.Args[1]); err != nil {
			return err
		}
	}
	for _, ph := range phases {
		if err := h.Store.SetDockerOptions(ctx, a.Name, string(ph), nil); err != nil {
			return err
		}
	}
	ui.Step(c.Stdout, "Cleared the docker options of %s", a.Name)
	return nil
}

func (h *handlers) dockerOptionsReport(ctx context.Context, c *Call) error {
	type options struct {
		App    string   `json:"app"`
		Build  []string `json:"build"`
		Deploy []string `json:"deploy"`
		Run    []string `json:"run"`
	}
	return report(ctx, h, c, func(a store.App) (options, error) {
		r := options{App: a.Name}
		for ph, dst := range map[string]*[]string{"build": &r.Build, "deploy": &r.Deploy, "run": &r.Run} {
			v, err := h.Store.DockerOptions(ctx, a.Name, ph)
			if err != nil {
				return r, err
			}
			*dst = nonNil(v)
		}
		return r, nil
	}, func(r options) {
		ui.Section(c.Stdout, "%s docker options information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Docker options build", Value: strings.Join(r.Build, " ")},
			{Key: "Docker options deploy", Value: strings.Join(r.Deploy, " ")},
			{Key: "Docker options run", Value: strings.Join(r.Run, " ")},
		})
	})
}

func resourceProcess(c *Call) (string, error) {
	p := c.Flag("process-type")
	if p == "" {
		return "_default_", nil
	}
	if p == "build" {
		return p, nil
	}
	if err := validate.ProcessType(p); err != nil {
		return "", err
	}
	return p, nil
}

func (h *handlers) resourceLimit(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	proc, err := resourceProcess(c)
	if err != nil {
		return err
	}
	l, err := h.Pipeline.Limits(ctx, a.Name, proc)
	if err != nil {
		return err
	}
	if proc != "_default_" && proc != "build" {
		// Start from the type's own limits only.
		if v, ok, _ := h.Store.Setting(ctx, a.Name, pipeline.ResourceKey(proc)); !ok || v == "" {
			l = pipeline.ResourceLimits{}
		}
	}
	set := false
	if v := c.Flag("cpu"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1024 {
			return fmt.Errorf("invalid --cpu %s: use a number of CPUs such as 0.5 or 2", quoteArg(v))
		}
		l.CPUs, set = f, true
	}
	if v := c.Flag("memory"); v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 6<<20 {
			return fmt.Errorf("invalid --memory %s: use a size such as 256m or 1g (at least 6m)", quoteArg(v))
		}
		l.Memory, set = n, true
	}
	if v := c.Flag("memory-swap"); v != "" {
		if v == "-1" {
			l.MemSwap = -1
		} else {
			n, err := units.RAMInBytes(v)
			if err != nil || n <= 0 {
				return fmt.Errorf("invalid --memory-swap %s", quoteArg(v))
			}
			l.MemSwap = n
		}
		set = true
	}
	if v := c.Flag("pids"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("invalid --pids %s", quoteArg(v))
		}
		l.PidsMax, set = n, true
	}
	if !set {
		return &UsageError{Msg: "give at least one of --cpu, --memory, --memory-swap, --pids"}
	}
	b, _ := json.Marshal(l)
	if err := h.Store.SetSetting(ctx, a.Name, pipeline.ResourceKey(proc), string(b)); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Set resource limits of %s (%s): %s (applies at the next deploy or build)", a.Name, strings.Trim(proc, "_"), describeLimits(l))
	return nil
}

func describeLimits(l pipeline.ResourceLimits) string {
	var parts []string
	if l.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("cpu=%g", l.CPUs))
	}
	if l.Memory > 0 {
		parts = append(parts, "memory="+units.BytesSize(float64(l.Memory)))
	}
	if l.MemSwap != 0 {
		parts = append(parts, fmt.Sprintf("memory-swap=%d", l.MemSwap))
	}
	if l.PidsMax > 0 {
		parts = append(parts, fmt.Sprintf("pids=%d", l.PidsMax))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (h *handlers) resourceLimitClear(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	proc, err := resourceProcess(c)
	if err != nil {
		return err
	}
	if err := h.Store.SetSetting(ctx, a.Name, pipeline.ResourceKey(proc), ""); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Cleared resource limits of %s (%s)", a.Name, strings.Trim(proc, "_"))
	return nil
}

func (h *handlers) resourceReport(ctx context.Context, c *Call) error {
	type resources struct {
		App    string                             `json:"app"`
		Limits map[string]pipeline.ResourceLimits `json:"limits"`
	}
	return report(ctx, h, c, func(a store.App) (resources, error) {
		r := resources{App: a.Name, Limits: map[string]pipeline.ResourceLimits{}}
		procs := []string{"_default_", "build"}
		if a.CurrentRelease > 0 {
			if rel, err := h.Store.Release(ctx, a.Name, a.CurrentRelease); err == nil {
				procs = append(procs, ui.SortedKeys(rel.Processes)...)
			}
		}
		for _, p := range procs {
			if v, ok, _ := h.Store.Setting(ctx, a.Name, pipeline.ResourceKey(p)); ok && v != "" {
				l, err := h.Pipeline.Limits(ctx, a.Name, p)
				if err != nil {
					return r, err
				}
				r.Limits[strings.Trim(p, "_")] = l
			}
		}
		return r, nil
	}, func(r resources) {
		ui.Section(c.Stdout, "%s resource information", r.App)
		var fields []ui.Field
		for _, p := range ui.SortedKeys(r.Limits) {
			fields = append(fields, ui.Field{Key: "Resource limits " + p, Value: describeLimits(r.Limits[p])})
		}
		if len(fields) == 0 {
			fields = append(fields, ui.Field{Key: "Resource limits", Value: "none"})
		}
		ui.Fields(c.Stdout, fields)
	})
}

func (h *handlers) gitFromImage(ctx context.Context, c *Call) error {
	a, err := h.appOrCreate(ctx, c, c.Args[0])
	if err != nil {
		return err
	}
	return h.Pipeline.DeployImage(ctx, a, c.Args[1], c.Caller.Name, c.Stdout)
}

func (h *handlers) gitFromArchive(ctx context.Context, c *Call) error {
	a, err := h.appOrCreate(ctx, c, c.Args[0])
	if err != nil {
		return err
	}
	var r io.Reader
	if c.Args[1] == "-" {
		r = c.Stdin
	}
	return h.Pipeline.DeployArchive(ctx, a, c.Args[1], r, c.Caller.Name, c.Stdout)
}

func (h *handlers) gitSync(ctx context.Context, c *Call) error {
	a, err := h.appOrCreate(ctx, c, c.Args[0])
	if err != nil {
		return err
	}
	ref := ""
	if len(c.Args) == 3 {
		ref = c.Args[2]
	}
	return h.Pipeline.Sync(ctx, a, c.Args[1], ref, c.Bool("build"), c.Caller.Name, c.Stdout)
}

// appOrCreate returns the app, creating it (as a push would) unless
// autocreation is disabled.
func (h *handlers) appOrCreate(ctx context.Context, c *Call, name string) (string, error) {
	if err := validate.AppName(name); err != nil {
		return "", err
	}
	if _, err := h.Store.App(ctx, name); err == nil {
		return name, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	off, err := AutocreationDisabled(ctx, h.Store)
	if err != nil {
		return "", err
	}
	if off {
		return "", fmt.Errorf("app %s does not exist and auto-creation is disabled", name)
	}
	ui.Step(c.Stdout, "Creating %s...", name)
	if err := h.Pipeline.CreateApp(ctx, name, c.Stdout); err != nil && !errors.Is(err, store.ErrExists) {
		return "", err
	}
	return name, nil
}

func (h *handlers) registryLogin(ctx context.Context, c *Call) error {
	server, user := c.Args[0], c.Args[1]
	if strings.ContainsAny(server, "/ \t") || server == "" || strings.HasPrefix(server, "-") {
		return fmt.Errorf("invalid registry server %s: give host[:port]", quoteArg(server))
	}
	data, err := io.ReadAll(io.LimitReader(c.Stdin, 64<<10))
	if err != nil {
		return fmt.Errorf("read the password: %w", err)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return errors.New("no password given: pipe it on stdin")
	}
	if err := h.Pipeline.SaveRegistryAuth(ctx, pipeline.RegistryAuth{Server: server, Username: user, Password: pw}); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Logged in to %s as %s", server, user)
	return nil
}

func (h *handlers) registryLogout(ctx context.Context, c *Call) error {
	if err := h.Pipeline.RemoveRegistryAuth(ctx, c.Args[0]); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Logged out of %s", c.Args[0])
	return nil
}
