package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Command is a command a plugin adds: a subcommands/NAME executable
// (PLUGIN:NAME, or PLUGIN for subcommands/default), or a command its
// `commands` script lists in `commands help`.
type Command struct {
	Name   string // "vault:set-password"
	Plugin string
	Usage  string
	Help   string
	// Path is the executable; it is called with the command name, then
	// the caller's arguments (Dokku's convention).
	Path string
	// Script is true for a `commands` script (exit 10: not handled).
	Script bool
}

var commandWordRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func validCommandWord(w string) error {
	if !commandWordRe.MatchString(w) {
		return fmt.Errorf("invalid command name %q: use lowercase letters, digits, dashes and underscores", w)
	}
	return nil
}

// validCommandName accepts NAMESPACE or NAMESPACE:COMMAND.
func validCommandName(name string) error {
	ns, sub, found := strings.Cut(name, ":")
	if err := validCommandWord(ns); err != nil {
		return err
	}
	if found {
		return validCommandWord(sub)
	}
	return nil
}

// helpTimeout bounds `commands help`.
const helpTimeout = 10 * time.Second

// Commands discovers the commands of the enabled plugins, in plugin order.
func (m *Manager) Commands(ctx context.Context) ([]Command, error) {
	ps, err := m.Enabled()
	if err != nil {
		return nil, err
	}
	var out []Command
	for _, p := range ps {
		out = append(out, m.subcommands(ctx, p)...)
		out = append(out, m.scriptCommands(ctx, p)...)
	}
	return out, nil
}

func (m *Manager) subcommands(ctx context.Context, p Plugin) []Command {
	dir := filepath.Join(p.Dir, "subcommands")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Command
	for _, e := range ents {
		sub := e.Name()
		if validCommandWord(sub) != nil {
			m.log.Warn("plugin subcommand with an invalid name ignored", "plugin", p.Name, "file", sub)
			continue
		}
		path := m.executable(ctx, p, filepath.Join("subcommands", sub))
		if path == "" {
			continue
		}
		name := p.Name + ":" + sub
		if sub == "default" {
			name = p.Name
		}
		meta := p.Meta.Commands[sub]
		c := Command{Name: name, Plugin: p.Name, Usage: meta.Usage, Help: meta.Help, Path: path}
		if c.Help == "" {
			c.Help = fmt.Sprintf("%s (plugin %s)", name, p.Name)
		}
		if c.Usage == "" {
			c.Usage = "[args...]"
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// scriptCommands runs `commands help` and reads its Dokku-style lines:
// "    NAME [USAGE], HELP".
func (m *Manager) scriptCommands(ctx context.Context, p Plugin) []Command {
	path := m.executable(ctx, p, "commands")
	if path == "" {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, helpTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, path, "help")
	cmd.Dir = p.Dir
	cmd.Env = m.Env(ctx, p)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.Discard
	killGroup(cmd)
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != NotImplementedExit {
			m.log.Warn("plugin commands help failed", "plugin", p.Name, "err", err)
		}
	}
	return parseCommandsHelp(p.Name, path, stdout.String())
}

// parseCommandsHelp reads the lines of `commands help`.
func parseCommandsHelp(plugin, path, out string) []Command {
	var cmds []Command
	seen := map[string]bool{}
	for _, line := range scanLines(out) {
		line = strings.TrimSpace(line)
		left, help, ok := strings.Cut(line, ", ")
		if !ok {
			continue
		}
		fields := strings.Fields(left)
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		if validCommandName(name) != nil || strings.HasSuffix(name, ":help") || seen[name] {
			continue
		}
		seen[name] = true
		usage := strings.TrimSpace(strings.TrimPrefix(left, name))
		cmds = append(cmds, Command{Name: name, Plugin: plugin, Usage: usage, Help: strings.TrimSpace(help), Path: path, Script: true})
	}
	return cmds
}

// Stdio is a command's streams. Stdin may be nil (no input).
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// RunCommand runs a plugin command with the caller's streams and returns
// its exit code. A `commands` script exiting 10 returns NotImplementedExit.
func (m *Manager) RunCommand(ctx context.Context, c Command, args []string, sio Stdio) (int, error) {
	p, err := m.Get(c.Plugin)
	if err != nil {
		return 1, err
	}
	stdin, done, err := stdinPipe(sio.Stdin)
	if err != nil {
		return 1, err
	}
	defer done()
	return m.runInteractive(ctx, p, c.Path, append([]string{c.Name}, args...), stdin, sio)
}

// RunFallback offers argv to the `commands` script of each enabled plugin
// in turn, until one handles it (does not exit 10). handled is false when
// none does.
func (m *Manager) RunFallback(ctx context.Context, argv []string, sio Stdio) (handled bool, code int, err error) {
	if len(argv) == 0 || validCommandName(argv[0]) != nil {
		return false, 0, nil
	}
	ps, err := m.enabledDirs()
	if err != nil {
		return false, 1, err
	}
	var stdin *os.File
	for _, p := range ps {
		path := m.executable(ctx, p, "commands")
		if path == "" {
			continue
		}
		if stdin == nil {
			var done func()
			if stdin, done, err = stdinPipe(sio.Stdin); err != nil {
				return false, 1, err
			}
			defer done()
		}
		code, err := m.runInteractive(ctx, p, path, argv, stdin, sio)
		if err != nil {
			return true, code, err
		}
		if code != NotImplementedExit {
			return true, code, nil
		}
	}
	return false, 0, nil
}

// stdinPipe gives a command the caller's stdin through a pipe the caller
// can close; a nil reader is /dev/null.
func stdinPipe(r io.Reader) (*os.File, func(), error) {
	if r == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("create stdin pipe: %w", err)
	}
	go func() {
		io.Copy(pw, r)
		pw.Close()
	}()
	return pr, func() { pr.Close(); pw.Close() }, nil
}

func (m *Manager) runInteractive(ctx context.Context, p Plugin, path string, args []string, stdin *os.File, sio Stdio) (int, error) {
	if err := m.ensureData(p); err != nil {
		return 1, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = p.Dir
	cmd.Env = m.Env(ctx, p)
	cmd.Stdin = stdin
	cmd.Stdout = sio.Stdout
	cmd.Stderr = sio.Stderr
	killGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		return 1, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ee.ExitCode(), nil
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil {
		return cmd.ProcessState.ExitCode(), nil
	}
	return 1, fmt.Errorf("run %s of plugin %s: %w", filepath.Base(path), p.Name, err)
}
