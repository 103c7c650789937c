// Package commands is the registry of every berth command (namespace:command),
// with its help, arguments, flags and output. SSH, the local socket and HTTP
// are doors into the same registry, so a command behaves the same whichever
// way it is called.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/berth-paas/berth/internal/ui"
)

// Caller says who runs a command.
type Caller struct {
	// Name is the SSH key name, or "local" for the berth CLI on the host.
	Name string
	// User is the SSH user name the caller logged in as ("" locally).
	User string
	// Local is true for the host's own CLI (over the unix socket).
	Local bool
}

// Call is one invocation of a command.
type Call struct {
	Command *Command
	// Args are the positional arguments after flags were taken out.
	Args   []string
	flags  map[string][]string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Caller Caller
	// Env carries variables the caller passed along (the git hook's
	// quarantine environment); only local callers may pass any.
	Env map[string]string
}

// Flag returns the (last) value of a flag taking a value ("" when absent).
func (c *Call) Flag(name string) string {
	v := c.flags[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Flags returns every value given to a repeatable flag, in order.
func (c *Call) Flags(name string) []string { return c.flags[name] }

// Bool reports whether a boolean flag was given.
func (c *Call) Bool(name string) bool { _, ok := c.flags[name]; return ok }

// Flag declares a flag of a command.
type Flag struct {
	Name  string // long name, without dashes
	Short string // one letter, optional
	// Value is true when the flag takes a value (--format json).
	Value bool
	Help  string
}

// Command is one registered command.
type Command struct {
	Name string // "apps:create"
	// Usage is the argument synopsis shown in help ("<app> [--force]").
	Usage string
	Help  string
	Flags []Flag
	// MinArgs and MaxArgs bound the positional arguments; MaxArgs < 0 means
	// no limit.
	MinArgs, MaxArgs int
	// FlagsFirst stops flag parsing at the first positional argument, so a
	// command line passed through (run APP ls -la) keeps its own flags.
	FlagsFirst bool
	// LocalOnly commands are refused over SSH and HTTP.
	LocalOnly bool
	// Hidden commands are not listed in help.
	Hidden bool
	// Passthrough commands (plugin commands) get every argument as is:
	// no flag is parsed, not even --help.
	Passthrough bool
	Run         func(ctx context.Context, c *Call) error
}

// Namespace groups commands in help.
type Namespace struct {
	Name string
	Help string
}

// Registry holds every command.
type Registry struct {
	cmds       map[string]*Command
	namespaces map[string]Namespace
	log        *slog.Logger
	ext        extensions // plugin commands and access control, see extensions.go
}

// NewRegistry returns an empty registry.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{cmds: map[string]*Command{}, namespaces: map[string]Namespace{}, log: log}
}

// AddNamespace declares a namespace and its one-line description.
func (r *Registry) AddNamespace(name, help string) {
	r.namespaces[name] = Namespace{Name: name, Help: help}
}

// Add registers a command; a duplicate name panics (a programming error).
func (r *Registry) Add(c *Command) {
	if _, dup := r.cmds[c.Name]; dup {
		panic("duplicate command " + c.Name)
	}
	r.cmds[c.Name] = c
}

// Lookup returns a command by name.
func (r *Registry) Lookup(name string) (*Command, bool) {
	return r.lookup(name)
}

// ExitError ends a command with a specific exit code. An empty Msg prints
// nothing.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Exit returns an error that ends the command with code, printing msg.
func Exit(code int, format string, args ...any) error {
	return &ExitError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// UsageError is a wrong invocation; help for the command follows it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Run parses argv, runs the command and returns its exit code. Errors are
// printed to stderr as one sentence with Dokku's " !     " prefix.
func (r *Registry) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, caller Caller, env map[string]string) int {
	if len(argv) == 0 || argv[0] == "help" || argv[0] == "--help" || argv[0] == "-h" {
		topic := ""
		if len(argv) > 1 {
			topic = argv[1]
		}
		return r.help(topic, caller, stdout, stderr)
	}
	name := argv[0]
	ctx = commandContext(ctx, caller, stderr)
	cmd, ok := r.lookup(name)
	if !ok {
		if ns, isNS := r.allNamespaces()[strings.TrimSuffix(name, ":help")]; isNS {
			return r.help(ns.Name, caller, stdout, stderr)
		}
		if base, sub, found := strings.Cut(name, ":"); found && sub == "help" {
			return r.help(base, caller, stdout, stderr)
		}
		if code, handled := r.runFallback(ctx, argv, stdin, stdout, stderr, caller); handled {
			return code
		}
		ui.Warn(stderr, "%s is not a berth command. See 'berth help'.", quoteArg(name))
		return 1
	}
	if cmd.LocalOnly && !caller.Local {
		ui.Warn(stderr, "%s can only be run on the server itself.", name)
		return 1
	}
	if !caller.Local {
		env = nil
	}
	call := &Call{Command: cmd, Stdin: stdin, Stdout: stdout, Stderr: stderr, Caller: caller, Env: env}
	if err := parseArgs(cmd, argv[1:], call); err != nil {
		ui.Warn(stderr, "%s", err)
		ui.Warn(stderr, "Usage: berth %s", strings.TrimSpace(cmd.Name+" "+cmd.Usage))
		return 1
	}
	if call.Bool("help") {
		r.commandHelp(cmd, stdout)
		return 0
	}
	if err := r.authorize(ctx, caller, argv); err != nil {
		ui.Warn(stderr, "%s", sentence(err))
		return 1
	}
	err := cmd.Run(ctx, call)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			ui.Warn(stderr, "%s", sentence(ee))
		}
		return ee.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		ui.Warn(stderr, "%s", ue.Msg)
		ui.Warn(stderr, "Usage: berth %s", strings.TrimSpace(cmd.Name+" "+cmd.Usage))
		return 1
	}
	if ctx.Err() != nil {
		ui.Warn(stderr, "%s was interrupted.", name)
		return 1
	}
	ui.Warn(stderr, "%s", sentence(err))
	r.log.Info("command failed", "command", name, "caller", caller.Name, "err", err)
	return 1
}

// sentence ends an error message as a sentence.
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return "failed"
	}
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "?") && !strings.HasSuffix(s, "!") {
		s += "."
	}
	return s
}

func quoteArg(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// parseArgs separates flags from positional arguments. Flags may appear
// anywhere before "--": --name, --name=value, --name value, -x, -x value.
func parseArgs(cmd *Command, args []string, call *Call) error {
	call.flags = map[string][]string{}
	if cmd.Passthrough {
		call.Args = args
		return nil
	}
	byLong := map[string]Flag{"help": {Name: "help"}}
	byShort := map[string]Flag{}
	for _, f := range cmd.Flags {
		byLong[f.Name] = f
		if f.Short != "" {
			byShort[f.Short] = f
		}
	}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		var f Flag
		var ok bool
		var val string
		var hasVal bool
		switch {
		case strings.HasPrefix(a, "--") && len(a) > 2:
			name := a[2:]
			name, val, hasVal = strings.Cut(name, "=")
			f, ok = byLong[name]
			if !ok {
				return fmt.Errorf("unknown flag --%s for %s", name, cmd.Name)
			}
		case strings.HasPrefix(a, "-") && len(a) == 2 && a[1] != '-':
			f, ok = byShort[a[1:]]
			if !ok {
				return fmt.Errorf("unknown flag %s for %s", a, cmd.Name)
			}
		default:
			pos = append(pos, a)
			if cmd.FlagsFirst {
				pos = append(pos, args[i+1:]...)
				i = len(args)
			}
			continue
		}
		if f.Value {
			if !hasVal {
				if i+1 >= len(args) {
					return fmt.Errorf("flag --%s needs a value", f.Name)
				}
				i++
				val = args[i]
			}
			call.flags[f.Name] = append(call.flags[f.Name], val)
		} else {
			if hasVal {
				return fmt.Errorf("flag --%s takes no value", f.Name)
			}
			call.flags[f.Name] = []string{"true"}
		}
	}
	if call.Bool("help") {
		return nil
	}
	if len(pos) < cmd.MinArgs {
		return fmt.Errorf("%s needs more arguments", cmd.Name)
	}
	if cmd.MaxArgs >= 0 && len(pos) > cmd.MaxArgs {
		return fmt.Errorf("%s got too many arguments", cmd.Name)
	}
	call.Args = pos
	return nil
}

// Commands returns the visible commands for caller, sorted by name.
func (r *Registry) Commands(caller Caller) []*Command {
	var out []*Command
	for _, c := range r.allCommands() {
		if c.Hidden || (c.LocalOnly && !caller.Local) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func namespaceOf(name string) string {
	ns, _, _ := strings.Cut(name, ":")
	return ns
}

func (r *Registry) help(topic string, caller Caller, stdout, stderr io.Writer) int {
	cmds := r.Commands(caller)
	if topic == "" {
		fmt.Fprintln(stdout, "Usage: berth [--data-dir DIR] COMMAND <app> [command-specific-options]")
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "Commands, by namespace (type \"berth help NAMESPACE\" for a namespace's commands):")
		namespaces := r.allNamespaces()
		names := ui.SortedKeys(namespaces)
		width := 0
		for _, n := range names {
			width = max(width, len(n))
		}
		for _, n := range names {
			has := false
			for _, c := range cmds {
				if namespaceOf(c.Name) == n {
					has = true
					break
				}
			}
			if has {
				fmt.Fprintf(stdout, "    %-*s  %s\n", width, n, namespaces[n].Help)
			}
		}
		return 0
	}
	ns, isNS := r.allNamespaces()[topic]
	visible := 0
	for _, c := range cmds {
		if namespaceOf(c.Name) == topic {
			visible++
		}
	}
	if c, ok := r.lookup(topic); ok && !c.Hidden && (!c.LocalOnly || caller.Local) && (!isNS || visible <= 1) {
		r.commandHelp(c, stdout)
		return 0
	}
	if !isNS || visible == 0 {
		ui.Warn(stderr, "No help for %s: it is neither a namespace nor a command. See 'berth help'.", quoteArg(topic))
		return 1
	}
	fmt.Fprintf(stdout, "Usage: berth %s[:COMMAND]\n\n%s\n\nCommands:\n", ns.Name, ns.Help)
	var lines [][2]string
	width := 0
	for _, c := range cmds {
		if namespaceOf(c.Name) != ns.Name {
			continue
		}
		syn := strings.TrimSpace(c.Name + " " + c.Usage)
		width = max(width, len(syn))
		lines = append(lines, [2]string{syn, c.Help})
	}
	for _, l := range lines {
		fmt.Fprintf(stdout, "    %-*s  %s\n", width, l[0], l[1])
	}
	return 0
}

func (r *Registry) commandHelp(c *Command, w io.Writer) {
	fmt.Fprintf(w, "Usage: berth %s\n\n%s\n", strings.TrimSpace(c.Name+" "+c.Usage), c.Help)
	if len(c.Flags) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		for _, f := range c.Flags {
			name := "--" + f.Name
			if f.Short != "" {
				name = "-" + f.Short + ", " + name
			}
			if f.Value {
				name += " VALUE"
			}
			fmt.Fprintf(w, "    %-24s %s\n", name, f.Help)
		}
	}
}
