package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// Access control. Every command a remote caller (an SSH key) runs, and every
// git push or fetch, first fires the user-auth trigger; apps:list fires
// user-auth-app to filter the apps it shows. The acl feature is the
// in-process handler of both: keys are admins unless acl:set-role makes
// them users; a user key reaches only the apps acl:add gave it.

// accessDenied is a refusal by the acl handler; its message is shown as is.
type accessDenied struct{ msg string }

func (e *accessDenied) Error() string { return e.msg }

func deny(format string, args ...any) error {
	return &accessDenied{msg: fmt.Sprintf(format, args...)}
}

// aclAdminOnly are commands a user key may never run, whatever app they
// name: they act on the server, keys or access rules.
var aclAdminOnly = map[string]bool{"apps:create": true, "git:hook": true,
	// They make the server fetch URLs or read its own repositories and
	// images: an admin's call.
	"git:sync": true, "git:from-image": true, "git:from-archive": true}

// aclAdminNamespaces reach the host (docker options such as volumes or
// capabilities, server-path buildpacks, host ports, base images, registry
// logins) or names shared by every app (domains, certificates, DNS).
var aclAdminNamespaces = map[string]bool{"acl": true, "plugin": true, "ssh-keys": true,
	"docker-options": true, "resource": true, "buildpacks": true, "images": true, "registry": true,
	"domains": true, "certs": true, "letsencrypt": true, "dns": true, "ports": true}

// aclAnyone are commands every key may run (apps:list shows only the key's
// apps).
var aclAnyone = map[string]bool{"apps:list": true, "version": true, "help": true}

func (h *handlers) registerACL(r *Registry) {
	r.AddNamespace("acl", "Control which apps SSH keys reach")
	r.Add(&Command{Name: "acl:add", Usage: "<app> <key>", Help: "Let a key reach an app (a user key reaches only its apps)", MinArgs: 2, MaxArgs: 2, Run: h.aclAdd})
	r.Add(&Command{Name: "acl:remove", Usage: "<app> <key>", Help: "Stop a key reaching an app", MinArgs: 2, MaxArgs: 2, Run: h.aclRemove})
	r.Add(&Command{Name: "acl:list", Usage: "[<app>] [--format json]", Help: "List the keys that reach each app", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.aclList})
	r.Add(&Command{Name: "acl:set-role", Usage: "<key> admin|user", Help: "Make a key an admin (reaches everything) or a user (reaches only its apps)", MinArgs: 2, MaxArgs: 2, Run: h.aclSetRole})
	r.Add(&Command{Name: "acl:report", Usage: "[<key>] [--format json]", Help: "Show each key's role and apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.aclReport})
	if h.Store == nil || h.Pipeline == nil {
		return
	}
	bus := h.Pipeline.Triggers()
	bus.Register("user-auth", "acl", h.aclUserAuth(r))
	bus.Register("user-auth-app", "acl", h.aclUserAuthApp)
	r.SetAuthorizer(h.authorizeRemote)
}

// authorizeRemote fires user-auth SSH_USER KEY COMMAND ARGS… for a remote
// caller; any handler failing denies the command.
func (h *handlers) authorizeRemote(ctx context.Context, caller Caller, argv []string) error {
	args := append([]string{caller.User, caller.Name}, argv...)
	_, err := h.Pipeline.Triggers().Fire(ctx, "user-auth", args...)
	if err == nil {
		return nil
	}
	var d *accessDenied
	if errors.As(err, &d) {
		return d
	}
	var te *plugins.TriggerError
	if errors.As(err, &te) && te.Code > 0 {
		return fmt.Errorf("access denied (user-auth plugin %s exited with code %d)", te.Plugin, te.Code)
	}
	return fmt.Errorf("access denied: %w", err)
}

// aclUserAuth is the acl handler of user-auth: SSH_USER KEY COMMAND ARGS….
func (h *handlers) aclUserAuth(r *Registry) plugins.Handler {
	return func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
		if len(args) < 3 {
			return nil
		}
		key, argv := args[1], args[2:]
		role, err := h.Store.KeyRole(ctx, key)
		if err != nil {
			return err
		}
		if role == store.RoleAdmin {
			return nil
		}
		return h.aclCheck(ctx, r, key, argv)
	}
}

// aclCheck decides for a user key: it may run a command whose first
// argument is one of its apps, push to and fetch its apps, and list apps.
func (h *handlers) aclCheck(ctx context.Context, r *Registry, key string, argv []string) error {
	apps, err := h.Store.KeyApps(ctx, key)
	if err != nil {
		return err
	}
	allowed := map[string]bool{}
	for _, a := range apps {
		allowed[a] = true
	}
	name := argv[0]
	switch {
	case name == "git-receive-pack" || name == "git-upload-pack":
		if len(argv) == 2 && allowed[argv[1]] {
			return nil
		}
		app := ""
		if len(argv) > 1 {
			app = argv[1]
		}
		return deny("access denied: key %s may not push to or fetch %s", key, app)
	case aclAnyone[name]:
		return nil
	case aclAdminOnly[name] || aclAdminNamespaces[namespaceOf(name)]:
		return deny("access denied: %s is for admin keys only", name)
	}
	cmd, ok := r.lookup(name)
	if !ok {
		return deny("%s is not a berth command. See 'berth help'.", quoteArg(name))
	}
	call := &Call{}
	if err := parseArgs(cmd, argv[1:], call); err != nil {
		return deny("access denied: %v", err)
	}
	if !takesApp(cmd.Usage) || call.Bool("global") || len(call.Args) == 0 {
		return deny("access denied: key %s may only run commands on its own apps (%s takes no app here)", key, name)
	}
	if app := call.Args[0]; !allowed[app] {
		// As if the app did not exist: a user key learns nothing of
		// other apps.
		return deny("app %s does not exist", app)
	}
	return nil
}

// takesApp reads a command's usage: does its first positional argument
// name an app ("<app>", "[<app>]", "(<app>|--global)", "<old-app>")?
// Bracketed flags before it ("[--index N]", "[-e KEY=VALUE]...") are skipped.
func takesApp(usage string) bool {
	toks := strings.Fields(usage)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if strings.Contains(t, "<app>") || strings.Contains(t, "<old-app>") {
			return true
		}
		if strings.HasPrefix(t, "[-") {
			for !strings.Contains(toks[i], "]") && i+1 < len(toks) {
				i++
			}
			continue
		}
		if strings.HasPrefix(t, "-") {
			continue
		}
		return false
	}
	return false
}

// aclUserAuthApp is the acl handler of user-auth-app: SSH_USER KEY APP…;
// it prints the apps the key may see, one per line.
func (h *handlers) aclUserAuthApp(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 2 {
		return nil
	}
	key, apps := args[1], args[2:]
	role, err := h.Store.KeyRole(ctx, key)
	if err != nil {
		return err
	}
	var allowed map[string]bool
	if role != store.RoleAdmin {
		mine, err := h.Store.KeyApps(ctx, key)
		if err != nil {
			return err
		}
		allowed = map[string]bool{}
		for _, a := range mine {
			allowed[a] = true
		}
	}
	for _, a := range apps {
		if allowed == nil || allowed[a] {
			fmt.Fprintln(stdout, a)
		}
	}
	return nil
}

// visibleApps filters apps through user-auth-app for a remote caller: the
// apps named in the handlers' output stay.
func (h *handlers) visibleApps(ctx context.Context, c *Call, apps []store.App) ([]store.App, error) {
	if c.Caller.Local || h.Pipeline == nil {
		return apps, nil
	}
	args := []string{c.Caller.User, c.Caller.Name}
	for _, a := range apps {
		args = append(args, a.Name)
	}
	out, err := h.Pipeline.Triggers().Fire(ctx, "user-auth-app", args...)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	keep := map[string]bool{}
	for _, l := range strings.Fields(out) {
		keep[l] = true
	}
	var vis []store.App
	for _, a := range apps {
		if keep[a.Name] {
			vis = append(vis, a)
		}
	}
	return vis, nil
}

func (h *handlers) aclKey(ctx context.Context, name string) error {
	if err := validate.KeyName(name); err != nil {
		return err
	}
	keys, err := h.Store.Keys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Name == name {
			return nil
		}
	}
	return fmt.Errorf("no key named %s (add it with ssh-keys:add)", name)
}

func (h *handlers) aclAdd(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	key := c.Args[1]
	if err := h.aclKey(ctx, key); err != nil {
		return err
	}
	err = h.Store.AddACL(ctx, a.Name, key)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("key %s already reaches %s", key, a.Name)
	}
	if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Added %s to the ACL of %s", key, a.Name)
	if role, err := h.Store.KeyRole(ctx, key); err == nil && role == store.RoleAdmin {
		ui.Detail(c.Stdout, "%s is an admin key and reaches every app; 'acl:set-role %s user' limits it to its apps", key, key)
	}
	return nil
}

func (h *handlers) aclRemove(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	key := c.Args[1]
	if err := validate.KeyName(key); err != nil {
		return err
	}
	if err := h.Store.RemoveACL(ctx, a.Name, key); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("key %s is not in the ACL of %s", key, a.Name)
	} else if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Removed %s from the ACL of %s", key, a.Name)
	return nil
}

type aclEntry struct {
	App  string   `json:"app"`
	Keys []string `json:"keys"`
}

func (h *handlers) aclList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	app := ""
	if len(c.Args) == 1 {
		a, err := h.app(ctx, c.Args[0])
		if err != nil {
			return err
		}
		app = a.Name
	}
	acls, err := h.Store.ACLs(ctx, app)
	if err != nil {
		return err
	}
	entries := []aclEntry{}
	if app != "" {
		entries = append(entries, aclEntry{App: app, Keys: append([]string{}, acls[app]...)})
	} else {
		for _, a := range ui.SortedKeys(acls) {
			entries = append(entries, aclEntry{App: a, Keys: acls[a]})
		}
	}
	if asJSON {
		if app != "" {
			return ui.JSON(c.Stdout, entries[0])
		}
		return ui.JSON(c.Stdout, entries)
	}
	if len(entries) == 0 {
		ui.Warn(c.Stderr, "No ACL entries: every key is an admin until acl:set-role makes it a user.")
		return nil
	}
	for _, e := range entries {
		ui.Section(c.Stdout, "%s ACL", e.App)
		for _, k := range e.Keys {
			fmt.Fprintln(c.Stdout, k)
		}
	}
	return nil
}

func (h *handlers) aclSetRole(ctx context.Context, c *Call) error {
	key, role := c.Args[0], c.Args[1]
	if err := h.aclKey(ctx, key); err != nil {
		return err
	}
	if role != store.RoleAdmin && role != store.RoleUser {
		return &UsageError{Msg: fmt.Sprintf("unknown role %s: use admin or user", quoteArg(role))}
	}
	if err := h.Store.SetKeyRole(ctx, key, role); err != nil {
		return err
	}
	if role == store.RoleAdmin {
		ui.Step(c.Stdout, "%s is now an admin key: it reaches every app and command", key)
	} else {
		ui.Step(c.Stdout, "%s is now a user key: it reaches only the apps acl:add gives it", key)
	}
	return nil
}

type aclKeyReport struct {
	Key  string   `json:"key"`
	Role string   `json:"role"`
	Apps []string `json:"apps"`
}

func (h *handlers) aclReport(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	keys, err := h.Store.Keys(ctx)
	if err != nil {
		return err
	}
	reports := []aclKeyReport{}
	for _, k := range keys {
		if len(c.Args) == 1 && k.Name != c.Args[0] {
			continue
		}
		role, err := h.Store.KeyRole(ctx, k.Name)
		if err != nil {
			return err
		}
		apps, err := h.Store.KeyApps(ctx, k.Name)
		if err != nil {
			return err
		}
		if apps == nil {
			apps = []string{}
		}
		reports = append(reports, aclKeyReport{Key: k.Name, Role: role, Apps: apps})
	}
	if len(c.Args) == 1 && len(reports) == 0 {
		return fmt.Errorf("no key named %s", c.Args[0])
	}
	if asJSON {
		if len(c.Args) == 1 {
			return ui.JSON(c.Stdout, reports[0])
		}
		return ui.JSON(c.Stdout, reports)
	}
	for _, r := range reports {
		apps := strings.Join(r.Apps, " ")
		if r.Role == store.RoleAdmin {
			apps = "all (admin)"
		} else if apps == "" {
			apps = "none"
		}
		ui.Section(c.Stdout, "%s access", r.Key)
		ui.Fields(c.Stdout, []ui.Field{{Key: "Role", Value: r.Role}, {Key: "Apps", Value: apps}})
	}
	return nil
}
