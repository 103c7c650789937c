package commands

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

var (
	globalFlag    = Flag{Name: "global", Help: "act on the global config, which every app inherits"}
	noRestartFlag = Flag{Name: "no-restart", Help: "do not redeploy the app with the new config"}
	mergedFlag    = Flag{Name: "merged", Help: "show the global config overlaid with the app's"}
)

func (h *handlers) registerConfig(r *Registry) {
	r.AddNamespace("config", "Manage config vars (the app's environment)")
	r.Add(&Command{Name: "config:set", Usage: "[--no-restart] [--encoded] [--stdin] (<app>|--global) KEY=VALUE...", Help: "Set config vars and redeploy the app with them",
		MinArgs: 1, MaxArgs: -1, Flags: []Flag{globalFlag, noRestartFlag, {Name: "encoded", Help: "values are base64-encoded"},
			{Name: "stdin", Help: "also read KEY=VALUE pairs from stdin, one per line (keeps values off command lines)"}}, Run: h.configSet})
	r.Add(&Command{Name: "config:unset", Usage: "[--no-restart] (<app>|--global) KEY...", Help: "Unset config vars and redeploy the app without them",
		MinArgs: 1, MaxArgs: -1, Flags: []Flag{globalFlag, noRestartFlag}, Run: h.configUnset})
	r.Add(&Command{Name: "config:clear", Usage: "[--no-restart] (<app>|--global)", Help: "Unset every config var",
		MaxArgs: 1, Flags: []Flag{globalFlag, noRestartFlag}, Run: h.configClear})
	r.Add(&Command{Name: "config:get", Usage: "[--quoted] (<app>|--global) KEY", Help: "Print the value of a config var",
		MinArgs: 1, MaxArgs: 2, Flags: []Flag{globalFlag, {Name: "quoted", Help: "print the value single-quoted for a shell"}}, Run: h.configGet})
	r.Add(&Command{Name: "config:show", Usage: "[--merged] (<app>|--global) [--format json]", Help: "Show config vars",
		MaxArgs: 1, Flags: []Flag{globalFlag, mergedFlag, formatFlag}, Run: h.configShow})
	r.Add(&Command{Name: "config:keys", Usage: "[--merged] (<app>|--global)", Help: "List config var names",
		MaxArgs: 1, Flags: []Flag{globalFlag, mergedFlag}, Run: h.configKeys})
	r.Add(&Command{Name: "config:export", Usage: "[--format exports|envfile|docker-args|docker-args-keys|shell|pretty|json|json-list] [--merged] (<app>|--global)", Help: "Export config vars for a shell or a file",
		MaxArgs: 1, Flags: []Flag{globalFlag, mergedFlag, {Name: "format", Value: true, Help: "exports (default), envfile, docker-args, docker-args-keys, shell, pretty, json, json-list"}}, Run: h.configExport})
}

// scope resolves (<app>|--global) and returns the app ("" for global) and
// the remaining arguments.
func (h *handlers) scope(ctx context.Context, c *Call) (string, []string, error) {
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

func scopeLabel(app string) string {
	if app == "" {
		return "global"
	}
	return app
}

// readConfig returns the config of app (global when ""), merged with the
// global config when asked.
func (h *handlers) readConfig(ctx context.Context, app string, merged bool) (map[string]string, error) {
	if merged && app != "" {
		return h.Store.MergedConfig(ctx, app)
	}
	return h.Store.Config(ctx, app)
}

func (h *handlers) configSet(ctx context.Context, c *Call) error {
	app, pairs, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	if c.Bool("stdin") {
		data, err := io.ReadAll(io.LimitReader(c.Stdin, 16<<20))
		if err != nil {
			return fmt.Errorf("read config pairs from stdin: %w", err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSuffix(l, "\r"); l != "" {
				pairs = append(pairs, l)
			}
		}
	}
	if len(pairs) == 0 {
		return &UsageError{Msg: "give at least one KEY=VALUE pair"}
	}
	set := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("invalid config pair %s: use KEY=VALUE", quoteArg(p))
		}
		if err := validate.EnvKey(k); err != nil {
			return err
		}
		if c.Bool("encoded") {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return fmt.Errorf("value of %s is not valid base64", k)
			}
			v = string(b)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("value of %s contains a NUL byte", k)
		}
		set[k] = v
	}
	if err := h.Store.UpdateConfig(ctx, app, set, nil, false); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Setting config vars")
	fields := make([]ui.Field, 0, len(set))
	for _, k := range ui.SortedKeys(set) {
		fields = append(fields, ui.Field{Key: k, Value: set[k]})
	}
	ui.Fields(c.Stdout, fields)
	return h.afterConfigChange(ctx, c, app, "set", ui.SortedKeys(set))
}

func (h *handlers) configUnset(ctx context.Context, c *Call) error {
	app, keys, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return &UsageError{Msg: "give at least one KEY"}
	}
	cur, err := h.Store.Config(ctx, app)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := validate.EnvKey(k); err != nil {
			return err
		}
		if _, ok := cur[k]; !ok {
			return fmt.Errorf("%s is not set for %s", k, scopeLabel(app))
		}
	}
	if err := h.Store.UpdateConfig(ctx, app, nil, keys, false); err != nil {
		return err
	}
	for _, k := range keys {
		ui.Step(c.Stdout, "Unsetting %s", k)
	}
	return h.afterConfigChange(ctx, c, app, "unset", keys)
}

func (h *handlers) configClear(ctx context.Context, c *Call) error {
	app, rest, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &UsageError{Msg: "config:clear takes no keys"}
	}
	cur, err := h.Store.Config(ctx, app)
	if err != nil {
		return err
	}
	if err := h.Store.UpdateConfig(ctx, app, nil, nil, true); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Clearing config vars of %s", scopeLabel(app))
	return h.afterConfigChange(ctx, c, app, "clear", ui.SortedKeys(cur))
}

// afterConfigChange fires post-config-update and redeploys the app unless
// --no-restart (global changes apply at each app's next deploy).
func (h *handlers) afterConfigChange(ctx context.Context, c *Call, app, action string, keys []string) error {
	target := app
	if app == "" {
		target = "--global"
	}
	args := append([]string{target, action}, keys...)
	if out, err := h.Pipeline.Triggers().Fire(ctx, "post-config-update", args...); err != nil {
		ui.Warn(c.Stderr, "Failure while triggering post-config-update: %v", err)
	} else if out != "" {
		io.WriteString(ui.NewIndentWriter(c.Stdout, ui.Indentation), strings.TrimRight(out, "\n")+"\n")
	}
	if app == "" {
		ui.Detail(c.Stdout, "Global config applies to each app at its next deploy or restart")
		return nil
	}
	if c.Bool("no-restart") {
		return nil
	}
	a, err := h.Store.App(ctx, app)
	if err != nil {
		return err
	}
	if a.CurrentRelease == 0 {
		ui.Detail(c.Stdout, "%s has not been deployed; the config applies at its first deploy", app)
		return nil
	}
	reason := "config:" + action
	if len(keys) > 0 {
		reason += " " + strings.Join(keys, " ")
	}
	ui.Step(c.Stdout, "Restarting app %s", app)
	return h.Pipeline.Redeploy(ctx, app, reason, c.Caller.Name, c.Stdout)
}

func (h *handlers) configGet(ctx context.Context, c *Call) error {
	app, rest, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return &UsageError{Msg: "give exactly one KEY"}
	}
	key := rest[0]
	if err := validate.EnvKey(key); err != nil {
		return err
	}
	cfg, err := h.Store.Config(ctx, app)
	if err != nil {
		return err
	}
	v, ok := cfg[key]
	if !ok {
		return Exit(1, "%s is not set for %s", key, scopeLabel(app))
	}
	if c.Bool("quoted") {
		v = shellQuote(v)
	}
	fmt.Fprintln(c.Stdout, v)
	return nil
}

func (h *handlers) configShow(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	app, rest, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &UsageError{Msg: "config:show takes no keys"}
	}
	cfg, err := h.readConfig(ctx, app, c.Bool("merged"))
	if err != nil {
		return err
	}
	if asJSON {
		return ui.JSON(c.Stdout, cfg)
	}
	ui.Section(c.Stdout, "%s env vars", scopeLabel(app))
	fields := make([]ui.Field, 0, len(cfg))
	for _, k := range ui.SortedKeys(cfg) {
		fields = append(fields, ui.Field{Key: k, Value: cfg[k]})
	}
	ui.Fields(c.Stdout, fields)
	return nil
}

func (h *handlers) configKeys(ctx context.Context, c *Call) error {
	app, _, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	cfg, err := h.readConfig(ctx, app, c.Bool("merged"))
	if err != nil {
		return err
	}
	for _, k := range ui.SortedKeys(cfg) {
		fmt.Fprintln(c.Stdout, k)
	}
	return nil
}

func (h *handlers) configExport(ctx context.Context, c *Call) error {
	app, _, err := h.scope(ctx, c)
	if err != nil {
		return err
	}
	cfg, err := h.readConfig(ctx, app, c.Bool("merged"))
	if err != nil {
		return err
	}
	keys := ui.SortedKeys(cfg)
	w := c.Stdout
	switch f := c.Flag("format"); f {
	case "", "exports":
		for _, k := range keys {
			fmt.Fprintf(w, "export %s=%s\n", k, shellQuote(cfg[k]))
		}
	case "envfile":
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%s\n", k, shellQuote(cfg[k]))
		}
	case "docker-args":
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, "--env="+k+"="+shellQuote(cfg[k]))
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	case "docker-args-keys":
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, "--env="+k)
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	case "shell":
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+shellQuote(cfg[k]))
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	case "pretty":
		fields := make([]ui.Field, 0, len(keys))
		for _, k := range keys {
			fields = append(fields, ui.Field{Key: k, Value: cfg[k]})
		}
		ui.Fields(w, fields)
	case "json":
		return ui.JSON(w, cfg)
	case "json-list":
		type pair struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		list := make([]pair, 0, len(keys))
		for _, k := range keys {
			list = append(list, pair{k, cfg[k]})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		return ui.JSON(w, list)
	default:
		return &UsageError{Msg: fmt.Sprintf("unknown export format %q", f)}
	}
	return nil
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
