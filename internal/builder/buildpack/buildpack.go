// Package buildpack builds apps with Heroku buildpacks (bin/detect,
// bin/compile, bin/release) inside a build container of a stack image, then
// copies the result into a runtime image whose entrypoint sources
// .profile.d/*.sh before running the process command.
package buildpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"gopkg.in/yaml.v3"
)

// Name is the builder's name (Dokku's, for compatibility).
const Name = "herokuish"

// Default images made by `berth images:bootstrap`.
const (
	DefaultStack   = "berth/stack:bookworm"
	DefaultRuntime = "berth/base:bookworm"
)

// Pack is a fetched buildpack: a directory on the host with bin/detect,
// bin/compile and (optionally) bin/release.
type Pack struct {
	Name string // what the user gave (URL or path)
	Dir  string
}

// Options are the inputs of one build.
type Options struct {
	App   string
	Dir   string // the source tree
	Packs []Pack
	// Env becomes ENV_DIR (one file per variable).
	Env map[string]string
	// CacheDir is the app's cache dir on the host, mounted as CACHE_DIR.
	CacheDir string
	Stack    string
	Runtime  string
	// Labels go on the result image; ContainerLabels on the build
	// containers (so leftovers can be found).
	Labels          map[string]string
	ContainerLabels map[string]string
	// Memory and NanoCPUs cap the build container (0: no cap).
	Memory   int64
	NanoCPUs int64
	// SourceVersion is the git revision, if any.
	SourceVersion string
}

// Result describes a built image.
type Result struct {
	ImageID string
	// DefaultProcs are bin/release default_process_types (later
	// buildpacks win).
	DefaultProcs map[string]string
	// ConfigVars are bin/release config_vars.
	ConfigVars map[string]string
	// Used names the buildpacks that detected the app.
	Used []string
}

// NoBuildpackError says no buildpack detected the app.
type NoBuildpackError struct{ Tried []string }

func (e *NoBuildpackError) Error() string {
	return "no buildpack detected this app (tried: " + strings.Join(e.Tried, ", ") + ")"
}

// CompileError is a buildpack step that failed.
type CompileError struct{ Code int }

func (e *CompileError) Error() string {
	return fmt.Sprintf("the buildpack build failed (exit code %d)", e.Code)
}

// Builder builds with buildpacks on a Docker Engine.
type Builder struct{ cli *client.Client }

// New returns a buildpack builder on cli.
func New(cli *client.Client) *Builder { return &Builder{cli: cli} }

// exit codes of the driver script
const exitNoBuildpack = 3

// driver runs inside the build container.
const driver = `#!/bin/bash
set -o pipefail
build=/tmp/build cache=/tmp/cache envdir=/tmp/env
mkdir -p "$cache" "$envdir" /tmp/berth/release
export STACK SOURCE_VERSION
tried=() used=()
for bp in /tmp/buildpacks/*/; do
  bp=${bp%/}
  name=$(cat "$bp/.berth-name")
  tried+=("$name")
  chmod -f +x "$bp"/bin/* || true
  if [ ! -x "$bp/bin/detect" ] || [ ! -x "$bp/bin/compile" ]; then
    echo " !     $name is not a buildpack: bin/detect and bin/compile are required"
    exit 4
  fi
  if ! detected=$("$bp/bin/detect" "$build"); then
    echo "       $name: not detected"
    continue
  fi
  echo "-----> ${detected:-$name} app detected ($name)"
  if ! "$bp/bin/compile" "$build" "$cache" "$envdir"; then
    echo " !     $name: bin/compile failed"
    exit 5
  fi
  if [ -f "$bp/export" ]; then . "$bp/export"; fi
  if [ -x "$bp/bin/release" ]; then
    if ! "$bp/bin/release" "$build" > "/tmp/berth/release/$(basename "$bp").yml"; then
      echo " !     $name: bin/release failed"
      exit 6
    fi
  fi
  used+=("$name")
done
if [ ${#used[@]} -eq 0 ]; then
  printf '%s\n' "${tried[@]}" > /tmp/berth/tried
  exit 3
fi
`

// launcher is the runtime image's entrypoint.
const launcher = `#!/bin/bash
export HOME=/app
cd /app || exit 1
for f in /app/.profile.d/*.sh; do
  if [ -r "$f" ]; then . "$f"; fi
done
if [ -r /app/.profile ]; then . /app/.profile; fi
exec "$@"
`

// Build runs the buildpacks over o.Dir and returns the runtime image.
func (b *Builder) Build(ctx context.Context, o Options, out io.Writer) (Result, error) {
	for _, img := range []string{o.Stack, o.Runtime} {
		if _, err := b.cli.ImageInspect(ctx, img); err != nil {
			if client.IsErrNotFound(err) {
				return Result{}, fmt.Errorf("image %s is not on this server: run `berth images:bootstrap` (or point buildpacks:set-property --global stack|runtime at an image you have)", img)
			}
			return Result{}, fmt.Errorf("inspect %s: %w", img, err)
		}
	}
	if len(o.Packs) == 0 {
		return Result{}, errors.New("no buildpack is configured: add one with buildpacks:add, a .buildpacks file or BUILDPACK_URL")
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return Result{}, fmt.Errorf("create cache dir: %w", err)
	}
	ctxTar, err := b.buildContext(o)
	if err != nil {
		return Result{}, err
	}
	env := []string{"STACK=" + filepath.Base(strings.SplitN(o.Stack, ":", 2)[0]), "SOURCE_VERSION=" + o.SourceVersion}
	buildC, err := b.cli.ContainerCreate(ctx, &container.Config{
		Image: o.Stack, Cmd: []string{"/bin/bash", "/tmp/berth/build.sh"}, Env: env, Labels: o.ContainerLabels,
	}, &container.HostConfig{
		Binds:     []string{o.CacheDir + ":/tmp/cache"},
		Resources: container.Resources{Memory: o.Memory, NanoCPUs: o.NanoCPUs},
	}, nil, nil, "")
	if err != nil {
		return Result{}, fmt.Errorf("create build container: %w", err)
	}
	defer b.cli.ContainerRemove(context.WithoutCancel(ctx), buildC.ID, container.RemoveOptions{Force: true})
	if err := b.cli.CopyToContainer(ctx, buildC.ID, "/", bytes.NewReader(ctxTar), container.CopyToContainerOptions{}); err != nil {
		return Result{}, fmt.Errorf("copy the source into the build container: %w", err)
	}
	code, err := b.run(ctx, buildC.ID, out)
	if err != nil {
		return Result{}, err
	}
	switch code {
	case 0:
	case exitNoBuildpack:
		tried := []string{}
		if data, err := b.readFile(ctx, buildC.ID, "/tmp/berth/tried"); err == nil {
			tried = strings.Fields(string(data))
		}
		return Result{}, &NoBuildpackError{Tried: tried}
	default:
		return Result{}, &CompileError{Code: code}
	}
	res := Result{DefaultProcs: map[string]string{}, ConfigVars: map[string]string{}}
	if err := b.readReleases(ctx, buildC.ID, &res); err != nil {
		return Result{}, err
	}
	id, err := b.runtimeImage(ctx, buildC.ID, o)
	if err != nil {
		return Result{}, err
	}
	res.ImageID = id
	return res, nil
}

// run starts the build container, streams its output and returns its exit
// code.
func (b *Builder) run(ctx context.Context, id string, out io.Writer) (int, error) {
	att, err := b.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("attach to the build container: %w", err)
	}
	defer att.Close()
	waitC, errC := b.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := b.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return 0, fmt.Errorf("start the build container: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		stdcopy.StdCopy(out, out, att.Reader)
		close(copied)
	}()
	select {
	case res := <-waitC:
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		return int(res.StatusCode), nil
	case err := <-errC:
		if ctx.Err() != nil {
			return 0, fmt.Errorf("build interrupted: %w", ctx.Err())
		}
		return 0, fmt.Errorf("wait for the build container: %w", err)
	}
}

// buildContext packs the source, env dir, buildpacks and driver.
func (b *Builder) buildContext(o Options) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := addTree(tw, o.Dir, "tmp/build"); err != nil {
		return nil, fmt.Errorf("pack the source: %w", err)
	}
	if err := addFile(tw, "tmp/env/", nil, 0o755|fs.ModeDir); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := addFile(tw, "tmp/env/"+k, []byte(o.Env[k]), 0o600); err != nil {
			return nil, err
		}
	}
	for i, p := range o.Packs {
		prefix := fmt.Sprintf("tmp/buildpacks/%02d", i+1)
		if err := addTree(tw, p.Dir, prefix); err != nil {
			return nil, fmt.Errorf("pack buildpack %s: %w", p.Name, err)
		}
		if err := addFile(tw, prefix+"/.berth-name", []byte(p.Name), 0o644); err != nil {
			return nil, err
		}
	}
	if err := addFile(tw, "tmp/berth/build.sh", []byte(driver), 0o755); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addFile(tw *tar.Writer, name string, data []byte, mode fs.FileMode) error {
	h := &tar.Header{Name: name, Mode: int64(mode.Perm()), Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
	if mode.IsDir() {
		h.Typeflag, h.Size = tar.TypeDir, 0
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// addTree adds the tree at dir under prefix, keeping modes and symlinks.
func addTree(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if d.Name() == ".git" && d.IsDir() {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(filepath.Join(prefix, rel))
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
}

// readFile reads one file out of a container.
func (b *Builder) readFile(ctx context.Context, id, path string) ([]byte, error) {
	rc, _, err := b.cli.CopyFromContainer(ctx, id, path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(tr, 1<<20))
}

// releaseYAML is what bin/release prints.
type releaseYAML struct {
	DefaultProcessTypes map[string]string `yaml:"default_process_types"`
	ConfigVars          map[string]string `yaml:"config_vars"`
	Addons              []string          `yaml:"addons"`
}

// readReleases merges every buildpack's bin/release output.
func (b *Builder) readReleases(ctx context.Context, id string, res *Result) error {
	rc, _, err := b.cli.CopyFromContainer(ctx, id, "/tmp/berth/release")
	if err != nil {
		return fmt.Errorf("read bin/release output: %w", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	type entry struct {
		name string
		data []byte
	}
	var files []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read bin/release output: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".yml") {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return err
		}
		files = append(files, entry{h.Name, data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		var r releaseYAML
		if err := yaml.Unmarshal(f.data, &r); err != nil {
			return fmt.Errorf("bin/release printed invalid YAML (%s): %w", filepath.Base(f.name), err)
		}
		for k, v := range r.DefaultProcessTypes {
			res.DefaultProcs[k] = v
		}
		for k, v := range r.ConfigVars {
			res.ConfigVars[k] = v
		}
	}
	return nil
}

// runtimeImage copies the compiled /tmp/build of the build container to
// /app in a container of the runtime image, adds the launcher and commits.
func (b *Builder) runtimeImage(ctx context.Context, buildID string, o Options) (string, error) {
	rc, _, err := b.cli.CopyFromContainer(ctx, buildID, "/tmp/build")
	if err != nil {
		return "", fmt.Errorf("read the compiled app: %w", err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(rebase(rc, pw, "build", "app"))
	}()
	// No labels here: the committed image would keep them.
	runC, err := b.cli.ContainerCreate(ctx, &container.Config{Image: o.Runtime}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("create the runtime container: %w", err)
	}
	defer b.cli.ContainerRemove(context.WithoutCancel(ctx), runC.ID, container.RemoveOptions{Force: true})
	if err := b.cli.CopyToContainer(ctx, runC.ID, "/", pr, container.CopyToContainerOptions{}); err != nil {
		return "", fmt.Errorf("copy the compiled app: %w", err)
	}
	var lt bytes.Buffer
	tw := tar.NewWriter(&lt)
	addFile(tw, "start", []byte(launcher), 0o755)
	tw.Close()
	if err := b.cli.CopyToContainer(ctx, runC.ID, "/", &lt, container.CopyToContainerOptions{}); err != nil {
		return "", fmt.Errorf("add the launcher: %w", err)
	}
	img, err := b.cli.ImageInspect(ctx, o.Runtime)
	if err != nil {
		return "", err
	}
	env := []string{"HOME=/app"}
	if img.Config != nil {
		env = append(append([]string{}, img.Config.Env...), env...)
	}
	resp, err := b.cli.ContainerCommit(ctx, runC.ID, container.CommitOptions{
		Config: &container.Config{Entrypoint: []string{"/start"}, Cmd: []string{"/bin/bash"}, WorkingDir: "/app", Env: env, Labels: o.Labels},
	})
	if err != nil {
		return "", fmt.Errorf("commit the app image: %w", err)
	}
	return resp.ID, nil
}

// rebase copies a tar stream, renaming the top directory from to to.
func rebase(r io.Reader, w io.Writer, from, to string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		if h.Name == from || strings.HasPrefix(h.Name, from+"/") {
			h.Name = to + strings.TrimPrefix(h.Name, from)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
