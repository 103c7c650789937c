package plugins

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-paas/berth/internal/validate"
)

// DefaultTimeout is how long a trigger executable may run before it is
// killed, unless plugin:set-timeout says otherwise.
const DefaultTimeout = 5 * time.Minute

// NotImplementedExit is the exit code of a `commands` script for a command
// it does not handle (Dokku's DOKKU_NOT_IMPLEMENTED_EXIT).
const NotImplementedExit = 10

// Settings is where the manager reads trigger timeouts (the store).
type Settings interface {
	Setting(ctx context.Context, app, key string) (string, bool, error)
}

// Setting keys of trigger timeouts, in seconds: TimeoutSetting for every
// trigger, TimeoutSetting+":"+TRIGGER for one.
const TimeoutSetting = "plugin-timeout"

// Options configure a Manager.
type Options struct {
	// DataDir is berth's data dir; plugins live in DATA_DIR/plugins.
	DataDir string
	// Executable is the berth binary, put on the plugins' PATH as `berth`.
	Executable string
	Settings   Settings
	Logger     *slog.Logger
	// Timeout, when set, replaces DefaultTimeout (tests).
	Timeout time.Duration
}

// Manager owns DATA_DIR/plugins: it installs, enables and lists plugins and
// runs their trigger executables and commands.
type Manager struct {
	opts Options
	root string
	log  *slog.Logger
	// mu serialises changes to the plugin directories.
	mu sync.Mutex
	// Reserved, when set, refuses plugin names (core command namespaces).
	Reserved func(name string) bool
}

// Plugin is an installed plugin.
type Plugin struct {
	Name    string
	Dir     string // DATA_DIR/plugins/available/NAME
	Enabled bool
	Meta    Meta
	Source  Source
}

// Source records where a plugin was installed from, for plugin:update.
type Source struct {
	Kind        string    `json:"kind"` // dir, git, tarball
	Location    string    `json:"location"`
	Committish  string    `json:"committish,omitempty"`
	Commit      string    `json:"commit,omitempty"`
	InstalledAt time.Time `json:"installed-at"`
}

// NewManager prepares DATA_DIR/plugins (available, enabled, data, bin with
// `berth` linked to the executable) and returns its manager.
func NewManager(o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Manager{opts: o, root: filepath.Join(o.DataDir, "plugins"), log: o.Logger}
	for _, d := range []string{m.root, m.AvailableDir(), m.EnabledDir(), m.CoreAvailableDir(), m.dataRoot(), m.binDir(), m.tmpDir(), m.sourcesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create plugin directory %s: %w", d, err)
		}
	}
	if o.Executable != "" {
		for _, name := range []string{"berth", "dokku"} {
			link := filepath.Join(m.binDir(), name)
			if cur, err := os.Readlink(link); err == nil && cur == o.Executable {
				continue
			}
			os.Remove(link)
			if err := os.Symlink(o.Executable, link); err != nil {
				return nil, fmt.Errorf("link %s for plugins: %w", link, err)
			}
		}
	}
	// Leftovers of interrupted installs.
	if ents, err := os.ReadDir(m.tmpDir()); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(m.tmpDir(), e.Name()))
		}
	}
	return m, nil
}

// Root is DATA_DIR/plugins (PLUGIN_PATH).
func (m *Manager) Root() string { return m.root }

// AvailableDir is where installed plugins live (PLUGIN_AVAILABLE_PATH).
func (m *Manager) AvailableDir() string { return filepath.Join(m.root, "available") }

// EnabledDir holds a symlink per enabled plugin (PLUGIN_ENABLED_PATH).
func (m *Manager) EnabledDir() string { return filepath.Join(m.root, "enabled") }

// CoreAvailableDir is PLUGIN_CORE_AVAILABLE_PATH: berth's core is built in,
// so it stays empty.
func (m *Manager) CoreAvailableDir() string { return filepath.Join(m.root, "core-available") }

// DataDir is the directory a plugin keeps its data in (BERTH_PLUGIN_DATA).
func (m *Manager) DataDir(name string) string { return filepath.Join(m.dataRoot(), name) }

func (m *Manager) dataRoot() string   { return filepath.Join(m.root, "data") }
func (m *Manager) binDir() string     { return filepath.Join(m.root, "bin") }
func (m *Manager) tmpDir() string     { return filepath.Join(m.root, "tmp") }
func (m *Manager) sourcesDir() string { return filepath.Join(m.root, "sources") }

// Enabled returns the enabled plugins in name order.
func (m *Manager) Enabled() ([]Plugin, error) {
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, p := range all {
		if p.Enabled {
			out = append(out, p)
		}
	}
	return out, nil
}

// List returns every installed plugin in name order.
func (m *Manager) List() ([]Plugin, error) {
	ents, err := os.ReadDir(m.AvailableDir())
	if err != nil {
		return nil, fmt.Errorf("list plugins: %w", err)
	}
	var out []Plugin
	for _, e := range ents {
		name := e.Name()
		if validate.PluginName(name) != nil {
			continue
		}
		dir := filepath.Join(m.AvailableDir(), name)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		p := Plugin{Name: name, Dir: dir, Enabled: m.isEnabled(name)}
		if meta, err := ReadMeta(dir); err == nil {
			p.Meta = meta
		} else {
			m.log.Warn("read plugin.toml", "plugin", name, "err", err)
		}
		p.Source = m.readSource(name)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the installed plugin name.
func (m *Manager) Get(name string) (Plugin, error) {
	if err := validate.PluginName(name); err != nil {
		return Plugin{}, err
	}
	all, err := m.List()
	if err != nil {
		return Plugin{}, err
	}
	for _, p := range all {
		if p.Name == name {
			return p, nil
		}
	}
	return Plugin{}, fmt.Errorf("plugin %s is not installed", name)
}

func (m *Manager) isEnabled(name string) bool {
	fi, err := os.Stat(filepath.Join(m.EnabledDir(), name))
	return err == nil && fi.IsDir()
}

func (m *Manager) readSource(name string) Source {
	var s Source
	data, err := os.ReadFile(filepath.Join(m.sourcesDir(), name+".json"))
	if err == nil {
		json.Unmarshal(data, &s)
	}
	return s
}

func (m *Manager) writeSource(name string, s Source) error {
	data, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(filepath.Join(m.sourcesDir(), name+".json"), data, 0o600); err != nil {
		return fmt.Errorf("record the source of plugin %s: %w", name, err)
	}
	return nil
}

// Timeout returns how long trigger may run in one plugin.
func (m *Manager) Timeout(ctx context.Context, trigger string) time.Duration {
	def := DefaultTimeout
	if m.opts.Timeout > 0 {
		def = m.opts.Timeout
	}
	if m.opts.Settings == nil {
		return def
	}
	for _, key := range []string{TimeoutSetting + ":" + trigger, TimeoutSetting} {
		v, ok, err := m.opts.Settings.Setting(ctx, "", key)
		if err != nil {
			m.log.Warn("read plugin timeout", "key", key, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return def
}

// Env is the environment a plugin's executables run with: the server's,
// plus berth's paths under Dokku's names.
func (m *Manager) Env(ctx context.Context, p Plugin) []string {
	set := map[string]string{
		"BERTH_DATA_DIR":             m.opts.DataDir,
		"DOKKU_ROOT":                 m.opts.DataDir,
		"DOKKU_LIB_ROOT":             m.opts.DataDir,
		"PLUGIN_PATH":                m.root,
		"PLUGIN_AVAILABLE_PATH":      m.AvailableDir(),
		"PLUGIN_ENABLED_PATH":        m.EnabledDir(),
		"PLUGIN_CORE_AVAILABLE_PATH": m.CoreAvailableDir(),
		"DOKKU_NOT_IMPLEMENTED_EXIT": strconv.Itoa(NotImplementedExit),
		"BERTH_PLUGIN_NAME":          p.Name,
		"BERTH_PLUGIN_DIR":           p.Dir,
		"BERTH_PLUGIN_DATA":          m.DataDir(p.Name),
	}
	if m.opts.Executable != "" {
		set["BERTH_BIN"] = m.opts.Executable
	}
	if c, ok := ctx.Value(callerKey).(callerInfo); ok {
		set["SSH_USER"] = c.user
		set["SSH_NAME"] = c.name
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	set["PATH"] = m.binDir() + string(os.PathListSeparator) + path
	env := make([]string, 0, len(os.Environ())+len(set))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; ours || k == "SSH_USER" || k == "SSH_NAME" {
			continue
		}
		env = append(env, kv)
	}
	for _, k := range sortedKeys(set) {
		env = append(env, k+"="+set[k])
	}
	return env
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ensureData creates the plugin's data directory.
func (m *Manager) ensureData(p Plugin) error {
	if err := os.MkdirAll(m.DataDir(p.Name), 0o700); err != nil {
		return fmt.Errorf("create data directory of plugin %s: %w", p.Name, err)
	}
	return nil
}

// executable finds the file rel in plugin p. It returns "" when there is
// none; a file that is not executable is reported on the caller's output
// and skipped.
func (m *Manager) executable(ctx context.Context, p Plugin, rel string) string {
	path := filepath.Join(p.Dir, rel)
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() {
		return ""
	}
	if fi.Mode()&0o111 == 0 {
		m.warn(ctx, "plugin %s: %s is not executable, skipping it (chmod +x it to run it)", p.Name, rel)
		return ""
	}
	return path
}

// warn prints a Dokku-style warning on the caller's output and logs it.
func (m *Manager) warn(ctx context.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.log.Warn(msg)
	if w := outputFrom(ctx); w != nil {
		fmt.Fprintf(w, " !     %s\n", msg)
	}
}

// enabledDirs lists the enabled plugins by name and directory only (no
// plugin.toml read): what firing a trigger needs.
func (m *Manager) enabledDirs() ([]Plugin, error) {
	ents, err := os.ReadDir(m.EnabledDir())
	if err != nil {
		return nil, fmt.Errorf("list enabled plugins: %w", err)
	}
	var out []Plugin
	for _, e := range ents {
		name := e.Name()
		if validate.PluginName(name) != nil {
			continue
		}
		dir := filepath.Join(m.AvailableDir(), name)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || !m.isEnabled(name) {
			continue
		}
		out = append(out, Plugin{Name: name, Dir: dir, Enabled: true})
	}
	return out, nil
}

// fire runs trigger in every enabled plugin that has it, in name order.
func (m *Manager) fire(ctx context.Context, trigger string, input []byte, args []string, stdout io.Writer) error {
	ps, err := m.enabledDirs()
	if err != nil {
		return fmt.Errorf("trigger %s: %w", trigger, err)
	}
	for _, p := range ps {
		path := m.executable(ctx, p, trigger)
		if path == "" {
			continue
		}
		if err := m.runTrigger(ctx, p, trigger, path, input, args, stdout); err != nil {
			return err
		}
	}
	return nil
}

// TriggerError is a plugin's trigger executable failing.
type TriggerError struct {
	Trigger, Plugin string
	// Code is the exit code; -1 when it did not exit by itself.
	Code     int
	TimedOut time.Duration
	Err      error
}

func (e *TriggerError) Error() string {
	switch {
	case e.TimedOut > 0:
		return fmt.Sprintf("trigger %s: plugin %s did not finish within %s and was killed", e.Trigger, e.Plugin, e.TimedOut)
	case e.Code > 0:
		return fmt.Sprintf("trigger %s: plugin %s exited with code %d", e.Trigger, e.Plugin, e.Code)
	default:
		return fmt.Sprintf("trigger %s: plugin %s: %v", e.Trigger, e.Plugin, e.Err)
	}
}

func (e *TriggerError) Unwrap() error { return e.Err }

func (m *Manager) runTrigger(ctx context.Context, p Plugin, trigger, path string, input []byte, args []string, stdout io.Writer) error {
	if err := m.ensureData(p); err != nil {
		return &TriggerError{Trigger: trigger, Plugin: p.Name, Code: -1, Err: err}
	}
	timeout := m.Timeout(ctx, trigger)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, path, args...)
	cmd.Dir = p.Dir
	cmd.Env = m.Env(ctx, p)
	cmd.Stdin = bytes.NewReader(input)
	cmd.Stdout = stdout
	stderr := outputFrom(ctx)
	var lw *logWriter
	if stderr == nil {
		lw = &logWriter{log: m.log, attrs: []any{"plugin", p.Name, "trigger", trigger}}
		stderr = lw
	}
	cmd.Stderr = stderr
	killGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	if lw != nil {
		lw.Flush()
	}
	m.log.Debug("plugin trigger", "plugin", p.Name, "trigger", trigger, "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err == nil || errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil
	}
	if errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return &TriggerError{Trigger: trigger, Plugin: p.Name, Code: -1, TimedOut: timeout, Err: tctx.Err()}
	}
	if ctx.Err() != nil {
		return &TriggerError{Trigger: trigger, Plugin: p.Name, Code: -1, Err: ctx.Err()}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return &TriggerError{Trigger: trigger, Plugin: p.Name, Code: ee.ExitCode(), Err: err}
	}
	return &TriggerError{Trigger: trigger, Plugin: p.Name, Code: -1, Err: err}
}

// logWriter logs what a plugin writes on stderr, line by line, when no
// caller output is attached to the context.
type logWriter struct {
	log   *slog.Logger
	attrs []any
	buf   []byte
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.log.Info("plugin output: "+string(l.buf[:i]), l.attrs...)
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 {
		l.Flush()
	}
	return len(p), nil
}

func (l *logWriter) Flush() {
	if len(l.buf) > 0 {
		l.log.Info("plugin output: "+string(l.buf), l.attrs...)
		l.buf = nil
	}
}

// Context values: where plugin stderr goes, and who called.
type ctxKeyT int

const (
	outputKey ctxKeyT = iota
	callerKey
)

type callerInfo struct{ user, name string }

// lockedWriter serialises writes of plugins running at the same time
// under one command (check-deploy fires in parallel).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// WithOutput returns a context whose plugin executables write their stderr
// (and berth's warnings about plugins) to w, the caller's stderr. Without
// it, plugin stderr is logged.
func WithOutput(ctx context.Context, w io.Writer) context.Context {
	if w == nil {
		return ctx
	}
	return context.WithValue(ctx, outputKey, &lockedWriter{w: w})
}

func outputFrom(ctx context.Context) io.Writer {
	w, _ := ctx.Value(outputKey).(io.Writer)
	return w
}

// WithCaller records who runs the command; plugins see it as SSH_USER and
// SSH_NAME, as in Dokku.
func WithCaller(ctx context.Context, sshUser, keyName string) context.Context {
	return context.WithValue(ctx, callerKey, callerInfo{user: sshUser, name: keyName})
}

// scanLines returns the non-empty lines of s.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), " \t\r"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// walkFiles is filepath.WalkDir that reports errors with the path.
func walkFiles(root string, fn func(path string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		return fn(path, d)
	})
}
