package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// pluginCmds are the plugin:* commands; they refresh r's plugin commands.
type pluginCmds struct {
	*handlers
	r *Registry
}

func (h *handlers) registerPlugins(r *Registry) {
	pc := &pluginCmds{handlers: h, r: r}
	r.AddNamespace("plugin", "Install and manage plugins")
	r.Add(&Command{Name: "plugin:list", Usage: "[--format json]", Help: "List the installed plugins", Flags: []Flag{formatFlag}, Run: pc.pluginList})
	r.Add(&Command{Name: "plugin:installed", Usage: "<name>", Help: "Exit 0 if the plugin is installed, 1 if not", MinArgs: 1, MaxArgs: 1, Run: pc.pluginInstalled})
	r.Add(&Command{Name: "plugin:install", Usage: "[<dir>|<git-url>|<tarball-url>] [--name NAME] [--committish REF]",
		Help:    "Install and enable a plugin, then run every plugin's dependencies and install triggers (without a source: only run them)",
		MaxArgs: 1, LocalOnly: true, Run: pc.pluginInstall, Flags: []Flag{
			{Name: "name", Value: true, Help: "install under this name (default: plugin.toml's, else the source's)"},
			{Name: "committish", Value: true, Help: "git branch, tag or commit to install"},
		}})
	r.Add(&Command{Name: "plugin:uninstall", Usage: "<name>", Help: "Fire uninstall, then disable and remove a plugin (its data stays)", MinArgs: 1, MaxArgs: 1, LocalOnly: true, Run: pc.pluginUninstall})
	r.Add(&Command{Name: "plugin:update", Usage: "[<name> [<committish>]]", Help: "Fetch a plugin (or every plugin) again from its source, then run the install triggers", MaxArgs: 2, LocalOnly: true, Run: pc.pluginUpdate})
	r.Add(&Command{Name: "plugin:enable", Usage: "<name>", Help: "Enable an installed plugin", MinArgs: 1, MaxArgs: 1, LocalOnly: true, Run: pc.pluginEnable})
	r.Add(&Command{Name: "plugin:disable", Usage: "<name>", Help: "Disable a plugin: its triggers and commands stop running", MinArgs: 1, MaxArgs: 1, LocalOnly: true, Run: pc.pluginDisable})
	r.Add(&Command{Name: "plugin:trigger", Usage: "<trigger> [<args>...]", Help: "Fire a trigger by hand and print its output", Passthrough: true, MaxArgs: -1, LocalOnly: true, Run: pc.pluginTrigger})
	r.Add(&Command{Name: "plugin:set-timeout", Usage: "[<trigger>|--all] [<seconds>]", Help: "Set how long a plugin may run for a trigger (default 300 s); no seconds resets, no argument lists",
		MaxArgs: 2, LocalOnly: true, Flags: []Flag{{Name: "all", Help: "the default for every trigger"}}, Run: pc.pluginSetTimeout})
	if m := h.plugins(); m != nil {
		m.Reserved = func(name string) bool { return r.isCoreNamespace(name) }
		r.SetFallback(func(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, bool, error) {
			handled, code, err := m.RunFallback(ctx, argv, plugins.Stdio{Stdin: stdin, Stdout: stdout, Stderr: stderr})
			return code, handled, err
		})
		h.refreshPluginCommands(context.Background(), r)
	}
}

// plugins returns the plugin manager (nil in the offline client).
func (h *handlers) plugins() *plugins.Manager {
	if h.Pipeline == nil {
		return nil
	}
	return h.Pipeline.Triggers().Plugins()
}

func (h *handlers) pluginManager() (*plugins.Manager, error) {
	m := h.plugins()
	if m == nil {
		return nil, errors.New("plugins are not available")
	}
	return m, nil
}

// refreshPluginCommands registers the commands of the enabled plugins.
func (h *handlers) refreshPluginCommands(ctx context.Context, r *Registry) {
	m := h.plugins()
	if m == nil || r == nil {
		return
	}
	pcs, err := m.Commands(ctx)
	if err != nil {
		r.log.Warn("list plugin commands", "err", err)
		return
	}
	descriptions := map[string]string{}
	if ps, err := m.Enabled(); err == nil {
		for _, p := range ps {
			descriptions[p.Name] = p.Meta.Description
		}
	}
	var cmds []*Command
	var nss []Namespace
	seenNS := map[string]bool{}
	for _, pc := range pcs {
		pc := pc
		cmds = append(cmds, &Command{
			Name: pc.Name, Usage: pc.Usage, Help: pc.Help, MaxArgs: -1, Passthrough: true,
			Run: func(ctx context.Context, c *Call) error {
				code, err := m.RunCommand(ctx, pc, c.Args, plugins.Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr})
				if err != nil {
					return err
				}
				if pc.Script && code == plugins.NotImplementedExit {
					return Exit(1, "%s is not a berth command (plugin %s does not handle it). See 'berth help'.", quoteArg(pc.Name), pc.Plugin)
				}
				if code != 0 {
					return Exit(code, "")
				}
				return nil
			},
		})
		ns := namespaceOf(pc.Name)
		if !seenNS[ns] {
			seenNS[ns] = true
			help := descriptions[pc.Plugin]
			if help == "" || ns != pc.Plugin {
				help = fmt.Sprintf("Commands of plugin %s", pc.Plugin)
				if d := descriptions[pc.Plugin]; d != "" {
					help += ": " + d
				}
			}
			nss = append(nss, Namespace{Name: ns, Help: help})
		}
	}
	r.SetPluginCommands(cmds, nss)
}

type pluginReport struct {
	Name        string     `json:"name"`
	Version     string     `json:"version"`
	Enabled     bool       `json:"enabled"`
	Description string     `json:"description"`
	Source      string     `json:"source"`
	SourceKind  string     `json:"source-kind"`
	Committish  string     `json:"committish,omitempty"`
	Commit      string     `json:"commit,omitempty"`
	InstalledAt *time.Time `json:"installed-at,omitempty"`
	Dir         string     `json:"dir"`
}

func (h *pluginCmds) pluginList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	ps, err := m.List()
	if err != nil {
		return err
	}
	reports := make([]pluginReport, 0, len(ps))
	for _, p := range ps {
		r := pluginReport{Name: p.Name, Version: p.Meta.Version, Enabled: p.Enabled, Description: p.Meta.Description,
			Source: p.Source.Location, SourceKind: p.Source.Kind, Committish: p.Source.Committish, Commit: p.Source.Commit, Dir: p.Dir,
			InstalledAt: optTime(p.Source.InstalledAt)}
		reports = append(reports, r)
	}
	if asJSON {
		return ui.JSON(c.Stdout, reports)
	}
	if len(reports) == 0 {
		ui.Warn(c.Stderr, "No plugins installed.")
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	for _, r := range reports {
		state := "disabled"
		if r.Enabled {
			state = "enabled"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Name, dash(r.Version), state, r.Description)
	}
	return tw.Flush()
}

func (h *pluginCmds) pluginInstalled(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	_, err = m.Get(c.Args[0])
	return err
}

// installTriggers fires dependencies, then install, in every plugin.
func (h *handlers) installTriggers(ctx context.Context, c *Call) error {
	for _, t := range []string{"dependencies", "install"} {
		ui.Step(c.Stdout, "Running %s triggers", t)
		out, err := h.Pipeline.Triggers().Fire(ctx, t)
		if out != "" {
			io.WriteString(ui.NewIndentWriter(c.Stdout, ui.Indentation), strings.TrimRight(out, "\n")+"\n")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *pluginCmds) pluginInstall(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	if len(c.Args) == 0 {
		if c.Flag("name") != "" || c.Flag("committish") != "" {
			return &UsageError{Msg: "--name and --committish need a plugin source"}
		}
		return h.installTriggers(ctx, c)
	}
	src := c.Args[0]
	if kind, err := plugins.ClassifySource(src); err != nil && !filepath.IsAbs(src) && !strings.Contains(src, "://") && kind == "" {
		// A directory relative to where the CLI runs.
		if wd := c.Env["PWD"]; wd != "" && filepath.IsAbs(wd) {
			src = filepath.Join(wd, src)
		}
	}
	if name := c.Flag("name"); name != "" {
		if err := validate.PluginName(name); err != nil {
			return err
		}
	}
	p, err := m.Install(ctx, plugins.InstallOptions{Source: src, Name: c.Flag("name"), Committish: c.Flag("committish")}, c.Stdout)
	if err != nil {
		return err
	}
	version := ""
	if p.Meta.Version != "" {
		version = " " + p.Meta.Version
	}
	ui.Step(c.Stdout, "Plugin %s%s installed in %s and enabled", p.Name, version, p.Dir)
	h.refreshPluginCommands(ctx, h.r)
	if err := h.installTriggers(ctx, c); err != nil {
		return fmt.Errorf("plugin %s is installed and enabled, but %w (fix it, then run plugin:install without arguments)", p.Name, err)
	}
	return nil
}

func (h *pluginCmds) pluginUninstall(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	p, err := m.Get(c.Args[0])
	if err != nil {
		return err
	}
	if p.Enabled {
		if out, err := h.Pipeline.Triggers().Fire(ctx, "uninstall", p.Name); err != nil {
			return fmt.Errorf("uninstall %s: %w", p.Name, err)
		} else if out != "" {
			io.WriteString(ui.NewIndentWriter(c.Stdout, ui.Indentation), strings.TrimRight(out, "\n")+"\n")
		}
	}
	if err := m.Uninstall(p.Name); err != nil {
		return err
	}
	h.refreshPluginCommands(ctx, h.r)
	ui.Step(c.Stdout, "Plugin %s uninstalled (its data stays in %s)", p.Name, m.DataDir(p.Name))
	return nil
}

func (h *pluginCmds) pluginUpdate(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	var names []string
	committish := ""
	if len(c.Args) > 0 {
		names = []string{c.Args[0]}
		if len(c.Args) == 2 {
			committish = c.Args[1]
		}
	} else {
		ps, err := m.List()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Source.Kind != "" {
				names = append(names, p.Name)
			}
		}
	}
	for _, name := range names {
		p, err := m.Update(ctx, name, committish, c.Stdout)
		if err != nil {
			return err
		}
		ui.Step(c.Stdout, "Plugin %s updated%s", p.Name, versionSuffix(p))
	}
	h.refreshPluginCommands(ctx, h.r)
	return h.installTriggers(ctx, c)
}

func versionSuffix(p plugins.Plugin) string {
	switch {
	case p.Meta.Version != "" && p.Source.Commit != "":
		return fmt.Sprintf(" to %s (%s)", p.Meta.Version, short(p.Source.Commit))
	case p.Meta.Version != "":
		return " to " + p.Meta.Version
	case p.Source.Commit != "":
		return " to " + short(p.Source.Commit)
	}
	return ""
}

func short(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	return rev
}

func (h *pluginCmds) pluginEnable(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	if err := m.Enable(c.Args[0]); err != nil {
		return err
	}
	h.refreshPluginCommands(ctx, h.r)
	ui.Step(c.Stdout, "Plugin %s enabled", c.Args[0])
	return nil
}

func (h *pluginCmds) pluginDisable(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	if err := m.Disable(c.Args[0]); err != nil {
		return err
	}
	h.refreshPluginCommands(ctx, h.r)
	ui.Step(c.Stdout, "Plugin %s disabled", c.Args[0])
	return nil
}

func (h *pluginCmds) pluginTrigger(ctx context.Context, c *Call) error {
	if len(c.Args) == 0 || c.Args[0] == "--help" {
		return &UsageError{Msg: "name a trigger"}
	}
	trigger := c.Args[0]
	if err := validate.TriggerName(trigger); err != nil {
		return err
	}
	out, err := h.Pipeline.Triggers().Fire(ctx, trigger, c.Args[1:]...)
	io.WriteString(c.Stdout, out)
	return err
}

func (h *pluginCmds) pluginSetTimeout(ctx context.Context, c *Call) error {
	all := c.Bool("all")
	args := c.Args
	if len(args) == 0 && !all {
		return h.listTimeouts(ctx, c)
	}
	key, label := plugins.TimeoutSetting, "every trigger"
	if !all {
		if err := validate.TriggerName(args[0]); err != nil {
			return err
		}
		key, label = plugins.TimeoutSetting+":"+args[0], args[0]
		args = args[1:]
	}
	if len(args) > 1 {
		return &UsageError{Msg: "give one number of seconds"}
	}
	value := ""
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 || n > 86400 {
			return fmt.Errorf("invalid timeout %s: use a whole number of seconds from 1 to 86400", quoteArg(args[0]))
		}
		value = strconv.Itoa(n)
	}
	if err := h.Store.SetSetting(ctx, "", key, value); err != nil {
		return err
	}
	if value == "" {
		ui.Step(c.Stdout, "Plugin timeout for %s reset", label)
	} else {
		ui.Step(c.Stdout, "Plugins may run %s s for %s", value, label)
	}
	return nil
}

func (h *handlers) listTimeouts(ctx context.Context, c *Call) error {
	m, err := h.pluginManager()
	if err != nil {
		return err
	}
	def := m.Timeout(ctx, "")
	ui.Section(c.Stdout, "Plugin trigger timeouts")
	fields := []ui.Field{{Key: "Every trigger", Value: def.String()}}
	for _, t := range plugins.CoreTriggers {
		if d := m.Timeout(ctx, t); d != def {
			fields = append(fields, ui.Field{Key: t, Value: d.String()})
		}
	}
	ui.Fields(c.Stdout, fields)
	return nil
}
