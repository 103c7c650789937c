package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/untar"
	"github.com/berth-paas/berth/internal/validate"
)

// Source kinds.
const (
	SourceDir     = "dir"
	SourceGit     = "git"
	SourceTarball = "tarball"
)

// Limits on what a plugin download may be.
const (
	maxTarball        = 200 << 20
	maxTarEntries     = 100000
	maxUnpacked       = 1 << 30
	downloadTimeout   = 5 * time.Minute
	gitCommandTimeout = 10 * time.Minute
)

var tarSuffixes = []string{".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar"}

// ClassifySource tells whether src is a local directory, a git URL or a
// tarball URL, and validates it. A directory must be an absolute path.
func ClassifySource(src string) (string, error) {
	if src == "" {
		return "", errors.New("give a plugin directory, git URL or tarball URL")
	}
	if strings.ContainsRune(src, 0) || strings.HasPrefix(src, "-") {
		return "", fmt.Errorf("invalid plugin source %q", src)
	}
	if u, err := url.Parse(src); err == nil && u.Scheme != "" && strings.Contains(src, "://") {
		if hasTarSuffix(u.Path) {
			switch u.Scheme {
			case "http", "https":
				if u.Host == "" {
					return "", fmt.Errorf("invalid tarball URL %q: no host", src)
				}
				return SourceTarball, nil
			case "file":
				if !filepath.IsAbs(u.Path) {
					return "", fmt.Errorf("invalid tarball URL %q: use file:///absolute/path", src)
				}
				return SourceTarball, nil
			default:
				return "", fmt.Errorf("invalid tarball URL %q: use http://, https:// or file://", src)
			}
		}
		if err := validate.GitURL(src); err != nil {
			return "", err
		}
		return SourceGit, nil
	}
	if validate.GitURL(src) == nil && strings.Contains(src, "@") && strings.Contains(src, ":") {
		return SourceGit, nil
	}
	if !filepath.IsAbs(src) {
		return "", fmt.Errorf("plugin directory %q must be an absolute path", src)
	}
	return SourceDir, nil
}

func hasTarSuffix(p string) bool {
	for _, s := range tarSuffixes {
		if strings.HasSuffix(strings.ToLower(p), s) {
			return true
		}
	}
	return false
}

// NameFromSource derives a plugin name from where it comes from: the last
// path element without .git or a tarball suffix, without a "dokku-" prefix.
func NameFromSource(src string) string {
	s := src
	if u, err := url.Parse(src); err == nil && u.Scheme != "" && strings.Contains(src, "://") {
		s = u.Path
	} else if _, p, ok := strings.Cut(src, ":"); ok && !filepath.IsAbs(src) {
		s = p
	}
	s = path.Base(strings.TrimRight(filepath.ToSlash(s), "/"))
	s = strings.TrimSuffix(s, ".git")
	for _, suf := range tarSuffixes {
		if strings.HasSuffix(strings.ToLower(s), suf) {
			s = s[:len(s)-len(suf)]
			break
		}
	}
	s = strings.TrimPrefix(s, "dokku-")
	return strings.ToLower(s)
}

// InstallOptions say what plugin:install installs.
type InstallOptions struct {
	Source     string // absolute DIR, GIT_URL or TARBALL_URL
	Name       string // --name; default: plugin.toml, then the source's name
	Committish string // --committish (git only)
}

// Install fetches a plugin into available/NAME and enables it. Triggers
// (dependencies, install) are the caller's to fire.
func (m *Manager) Install(ctx context.Context, o InstallOptions, out io.Writer) (Plugin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.Name != "" {
		if err := m.checkName(o.Name); err != nil {
			return Plugin{}, err
		}
		if _, err := os.Stat(filepath.Join(m.AvailableDir(), o.Name)); err == nil {
			return Plugin{}, fmt.Errorf("plugin %s is already installed (plugin:update %s updates it)", o.Name, o.Name)
		}
	}
	stage, err := os.MkdirTemp(m.tmpDir(), "install-")
	if err != nil {
		return Plugin{}, fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	src, tree, err := m.fetch(ctx, o.Source, o.Committish, stage, out)
	if err != nil {
		return Plugin{}, err
	}
	meta, err := ReadMeta(tree)
	if err != nil {
		return Plugin{}, err
	}
	name := first(o.Name, meta.Name, NameFromSource(o.Source))
	if err := m.checkName(name); err != nil {
		if o.Name == "" && meta.Name == "" {
			return Plugin{}, fmt.Errorf("%w (pass --name)", err)
		}
		return Plugin{}, err
	}
	dest := filepath.Join(m.AvailableDir(), name)
	if _, err := os.Lstat(dest); err == nil {
		return Plugin{}, fmt.Errorf("plugin %s is already installed (plugin:update %s updates it)", name, name)
	}
	if err := os.Chmod(tree, 0o755); err != nil {
		return Plugin{}, fmt.Errorf("install plugin %s: %w", name, err)
	}
	if err := os.Rename(tree, dest); err != nil {
		return Plugin{}, fmt.Errorf("install plugin %s: %w", name, err)
	}
	src.InstalledAt = time.Now().UTC()
	if err := m.writeSource(name, src); err != nil {
		return Plugin{}, err
	}
	if err := m.enable(name); err != nil {
		return Plugin{}, err
	}
	return m.Get(name)
}

func (m *Manager) checkName(name string) error {
	if err := validate.PluginName(name); err != nil {
		return err
	}
	if m.Reserved != nil && m.Reserved(name) {
		return fmt.Errorf("plugin name %s is taken by a core command namespace: install it under another name with --name", name)
	}
	return nil
}

// Update fetches the plugin again from where it was installed (at
// committish, for git; the default branch when empty) and replaces it,
// keeping its enabled state and data.
func (m *Manager) Update(ctx context.Context, name, committish string, out io.Writer) (Plugin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.Get(name)
	if err != nil {
		return Plugin{}, err
	}
	if p.Source.Kind == "" {
		return Plugin{}, fmt.Errorf("plugin %s has no recorded source: uninstall and install it again", name)
	}
	if committish != "" && p.Source.Kind != SourceGit {
		return Plugin{}, fmt.Errorf("plugin %s was not installed from git: --committish does not apply", name)
	}
	stage, err := os.MkdirTemp(m.tmpDir(), "update-")
	if err != nil {
		return Plugin{}, fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	src, tree, err := m.fetch(ctx, p.Source.Location, committish, stage, out)
	if err != nil {
		return Plugin{}, err
	}
	if _, err := ReadMeta(tree); err != nil {
		return Plugin{}, err
	}
	if err := os.Chmod(tree, 0o755); err != nil {
		return Plugin{}, fmt.Errorf("update plugin %s: %w", name, err)
	}
	old := filepath.Join(stage, "old")
	if err := os.Rename(p.Dir, old); err != nil {
		return Plugin{}, fmt.Errorf("update plugin %s: %w", name, err)
	}
	if err := os.Rename(tree, p.Dir); err != nil {
		os.Rename(old, p.Dir)
		return Plugin{}, fmt.Errorf("update plugin %s: %w", name, err)
	}
	src.InstalledAt = time.Now().UTC()
	if err := m.writeSource(name, src); err != nil {
		return Plugin{}, err
	}
	return m.Get(name)
}

// Uninstall disables and removes a plugin's code. Its data directory stays.
func (m *Manager) Uninstall(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.Get(name)
	if err != nil {
		return err
	}
	if err := m.disable(name); err != nil {
		return err
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("remove plugin %s: %w", name, err)
	}
	os.Remove(filepath.Join(m.sourcesDir(), name+".json"))
	return nil
}

// Enable enables an installed plugin.
func (m *Manager) Enable(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.Get(name); err != nil {
		return err
	}
	return m.enable(name)
}

// Disable disables a plugin: its triggers and commands stop running.
func (m *Manager) Disable(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.Get(name); err != nil {
		return err
	}
	return m.disable(name)
}

func (m *Manager) enable(name string) error {
	link := filepath.Join(m.EnabledDir(), name)
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	if err := os.Symlink(filepath.Join("..", "available", name), link); err != nil {
		return fmt.Errorf("enable plugin %s: %w", name, err)
	}
	return nil
}

func (m *Manager) disable(name string) error {
	if err := os.Remove(filepath.Join(m.EnabledDir(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable plugin %s: %w", name, err)
	}
	return nil
}

// fetch gets src into stage and returns its record and the plugin's tree.
func (m *Manager) fetch(ctx context.Context, src, committish, stage string, out io.Writer) (Source, string, error) {
	kind, err := ClassifySource(src)
	if err != nil {
		return Source{}, "", err
	}
	if committish != "" {
		if kind != SourceGit {
			return Source{}, "", errors.New("--committish only applies to a git URL")
		}
		if err := validate.GitRef(committish); err != nil {
			return Source{}, "", err
		}
	}
	rec := Source{Kind: kind, Location: src, Committish: committish}
	tree := filepath.Join(stage, "tree")
	switch kind {
	case SourceDir:
		ui.Step(out, "Copying plugin from %s", src)
		fi, err := os.Stat(src)
		if err != nil {
			return rec, "", fmt.Errorf("plugin directory %s: %w", src, err)
		}
		if !fi.IsDir() {
			return rec, "", fmt.Errorf("plugin source %s is not a directory (a tarball needs a file:// URL)", src)
		}
		if err := copyTree(src, tree); err != nil {
			return rec, "", err
		}
	case SourceGit:
		ui.Step(out, "Cloning plugin repository %s", src)
		if err := git(ctx, "", "clone", "--quiet", "--", src, tree); err != nil {
			return rec, "", err
		}
		if committish != "" {
			ui.Detail(out, "checking out %s", committish)
			if err := git(ctx, tree, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", committish, "--"); err != nil {
				return rec, "", err
			}
		}
		rev, err := gitOutput(ctx, tree, "rev-parse", "HEAD")
		if err != nil {
			return rec, "", err
		}
		rec.Commit = rev
	case SourceTarball:
		ui.Step(out, "Downloading plugin %s", src)
		file := filepath.Join(stage, "download")
		if err := download(ctx, src, file); err != nil {
			return rec, "", err
		}
		f, err := os.Open(file)
		if err != nil {
			return rec, "", err
		}
		defer f.Close()
		if err := os.Mkdir(tree, 0o755); err != nil {
			return rec, "", err
		}
		// Entries that would land outside the plugin (absolute or ".."
		// paths, escaping links, devices) are refused.
		if err := untar.Extract(f, tree, false, untar.Limits{MaxBytes: maxUnpacked, MaxEntries: maxTarEntries}); err != nil {
			return rec, "", fmt.Errorf("plugin tarball %s: %w", src, err)
		}
		tree = singleTopDir(tree)
	}
	return rec, tree, nil
}

// singleTopDir descends into the one directory a tarball holds, when it
// holds nothing else (GitHub release tarballs).
func singleTopDir(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || !ents[0].IsDir() {
		return dir
	}
	return filepath.Join(dir, ents[0].Name())
}

// gitEnv keeps git from prompting for credentials.
func gitEnv() []string {
	return append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false", "GCM_INTERACTIVE=never")
}

func git(ctx context.Context, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, gitCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("git %s: %s", args[firstNonOption(args)], msg)
	}
	return nil
}

func firstNonOption(args []string) int {
	for i := 0; i < len(args); i++ {
		if args[i] == "-c" {
			i++
			continue
		}
		if !strings.HasPrefix(args[i], "-") {
			return i
		}
	}
	return 0
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// download copies a tarball URL (http, https, file) into dst, at most
// maxTarball bytes.
func download(ctx context.Context, src, dst string) error {
	u, err := url.Parse(src)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", src, err)
	}
	var body io.ReadCloser
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if err != nil {
			return fmt.Errorf("open plugin tarball: %w", err)
		}
		body = f
	} else {
		ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return fmt.Errorf("download %s: %w", src, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("download %s: %w", src, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("download %s: HTTP %s", src, resp.Status)
		}
		body = resp.Body
	}
	defer body.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(body, maxTarball+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", src, err)
	}
	if n > maxTarball {
		return fmt.Errorf("download %s: larger than %d MiB", src, maxTarball>>20)
	}
	return nil
}

// insidePath refuses absolute paths and paths that climb out with "..".
func insidePath(name string) error {
	if name == "" {
		return errors.New("entry with an empty name")
	}
	if path.IsAbs(name) || filepath.IsAbs(name) || strings.HasPrefix(name, `\`) {
		return fmt.Errorf("entry %q has an absolute path", name)
	}
	for _, part := range strings.Split(filepath.ToSlash(name), "/") {
		if part == ".." {
			return fmt.Errorf("entry %q climbs out of the plugin directory", name)
		}
	}
	return nil
}

// copyTree copies a plugin directory (without .git at its root). Symlinks
// must stay inside the tree; other special files are refused.
func copyTree(src, dst string) error {
	src = filepath.Clean(src)
	return walkFiles(src, func(p string, d fs.DirEntry) error {
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == ".git" && d.IsDir() {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(link) || insidePath(filepath.Join(filepath.Dir(rel), link)) != nil {
				return fmt.Errorf("%s is a symlink pointing outside the plugin (%s)", p, link)
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s is not a regular file, directory or symlink", p)
		}
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
