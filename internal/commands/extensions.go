package commands

import (
	"context"
	"io"
	"sync"

	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/ui"
)

// extensions are the parts of a registry that change while the server
// runs: commands added by plugins, and the hooks that ask plugins (and the
// acl feature) whether a caller may run a command.
type extensions struct {
	mu      sync.RWMutex
	dynamic map[string]*Command
	dynNS   map[string]Namespace
	// authorizer decides whether a remote caller may run argv.
	authorizer func(ctx context.Context, caller Caller, argv []string) error
	// fallback offers an unknown command to the plugins' `commands`
	// scripts; handled is false when none takes it.
	fallback func(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (code int, handled bool, err error)
}

// lookup returns a core command, else a plugin command.
func (r *Registry) lookup(name string) (*Command, bool) {
	if c, ok := r.cmds[name]; ok {
		return c, true
	}
	r.ext.mu.RLock()
	defer r.ext.mu.RUnlock()
	c, ok := r.ext.dynamic[name]
	return c, ok
}

// allCommands returns the core commands and the plugin commands.
func (r *Registry) allCommands() []*Command {
	out := make([]*Command, 0, len(r.cmds))
	for _, c := range r.cmds {
		out = append(out, c)
	}
	r.ext.mu.RLock()
	defer r.ext.mu.RUnlock()
	for _, c := range r.ext.dynamic {
		out = append(out, c)
	}
	return out
}

// allNamespaces returns the core namespaces and those of plugin commands.
func (r *Registry) allNamespaces() map[string]Namespace {
	out := make(map[string]Namespace, len(r.namespaces))
	r.ext.mu.RLock()
	defer r.ext.mu.RUnlock()
	for k, v := range r.ext.dynNS {
		out[k] = v
	}
	for k, v := range r.namespaces {
		out[k] = v
	}
	return out
}

// isCoreNamespace reports whether name is a namespace of built-in commands.
func (r *Registry) isCoreNamespace(name string) bool {
	_, ok := r.namespaces[name]
	return ok
}

// SetPluginCommands replaces the commands plugins add. A name a core
// command has is skipped (core commands cannot be replaced).
func (r *Registry) SetPluginCommands(cmds []*Command, namespaces []Namespace) {
	dyn := map[string]*Command{}
	for _, c := range cmds {
		if _, core := r.cmds[c.Name]; core {
			r.log.Warn("plugin command ignored: a core command has its name", "command", c.Name)
			continue
		}
		if _, dup := dyn[c.Name]; dup {
			r.log.Warn("plugin command ignored: an earlier plugin has its name", "command", c.Name)
			continue
		}
		dyn[c.Name] = c
	}
	ns := map[string]Namespace{}
	for _, n := range namespaces {
		if _, core := r.namespaces[n.Name]; !core {
			ns[n.Name] = n
		}
	}
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	r.ext.dynamic, r.ext.dynNS = dyn, ns
}

// SetAuthorizer sets the check run before every command of a remote caller.
func (r *Registry) SetAuthorizer(fn func(ctx context.Context, caller Caller, argv []string) error) {
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	r.ext.authorizer = fn
}

// SetFallback sets what runs a command no registered command matches.
func (r *Registry) SetFallback(fn func(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, bool, error)) {
	r.ext.mu.Lock()
	defer r.ext.mu.Unlock()
	r.ext.fallback = fn
}

// Authorize says whether caller may run argv (a command and its
// arguments, or git-receive-pack/git-upload-pack APP). Local callers may
// run everything.
func (r *Registry) Authorize(ctx context.Context, caller Caller, argv []string) error {
	return r.authorize(commandContext(ctx, caller, nil), caller, argv)
}

func (r *Registry) authorize(ctx context.Context, caller Caller, argv []string) error {
	if caller.Local {
		return nil
	}
	r.ext.mu.RLock()
	fn := r.ext.authorizer
	r.ext.mu.RUnlock()
	if fn == nil {
		return nil
	}
	return fn(ctx, caller, argv)
}

// runFallback runs an unknown command through the plugins' `commands`
// scripts, once the caller is authorised.
func (r *Registry) runFallback(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, caller Caller) (int, bool) {
	r.ext.mu.RLock()
	fn := r.ext.fallback
	r.ext.mu.RUnlock()
	if fn == nil {
		return 0, false
	}
	if err := r.authorize(ctx, caller, argv); err != nil {
		ui.Warn(stderr, "%s", sentence(err))
		return 1, true
	}
	code, handled, err := fn(ctx, argv, stdin, stdout, stderr)
	if !handled {
		return 0, false
	}
	if err != nil {
		ui.Warn(stderr, "%s", sentence(err))
		if code == 0 {
			code = 1
		}
	}
	return code, true
}

// commandContext attaches the caller and its stderr to ctx: plugins run
// during the command write their stderr there and see SSH_USER/SSH_NAME.
func commandContext(ctx context.Context, caller Caller, stderr io.Writer) context.Context {
	if stderr != nil {
		ctx = plugins.WithOutput(ctx, stderr)
	}
	return plugins.WithCaller(ctx, caller.User, caller.Name)
}
