package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/builder/dockerfile"
	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// LabelImageApp labels the images built for an app. (Not berth.app:
// containers inherit image labels, and berth.app marks process containers.)
const LabelImageApp = "berth.image.app"

// Builder names.
const (
	BuilderDockerfile = dockerfile.Name
	BuilderHerokuish  = "herokuish"
	BuilderImage      = "image"
)

// App settings of the builders (builder:set, app-json:set, ps:set).
const (
	SettingBuilder      = "builder-selected"
	SettingBuildDir     = "builder-build-dir"
	SettingAppJSONPath  = "app-json-path"
	SettingProcfilePath = "ps-procfile-path"
)

// source is a tree to build and where it came from.
type source struct {
	dir  string // the extracted tree
	rev  string // git revision, if any
	kind string // git, archive, git-sync
	meta string // revision, URL…
}

// built is what a builder produced.
type built struct {
	imageID string
	builder string
	// defaultProcs are process types the image brings (buildpack
	// default_process_types); the Procfile wins over them.
	defaultProcs map[string]string
	// configVars are defaults a buildpack asked for (bin/release).
	configVars map[string]string
}

// AppSetting reads an app setting, falling back to the global one.
func (p *Pipeline) AppSetting(ctx context.Context, app, key string) (string, error) {
	v, _, err := p.store.EffectiveSetting(ctx, app, key)
	return v, err
}

// treeDir resolves the build directory rel (may be "") of the source tree
// at src; it must stay inside the tree, also through symlinks.
func treeDir(src, rel string) (string, error) {
	p, err := subPath(src, rel)
	if err != nil {
		return "", fmt.Errorf("build-dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("build-dir %s does not exist in the source tree", rel)
	}
	base, err := filepath.EvalSymlinks(src)
	if err != nil {
		return "", fmt.Errorf("resolve the source tree: %w", err)
	}
	if real != base && !strings.HasPrefix(real, base+string(filepath.Separator)) {
		return "", fmt.Errorf("build-dir %s leaves the source tree", rel)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("build-dir %s is not a directory of the source tree", rel)
	}
	return real, nil
}

// readTreeFile reads rel inside dir; symlinks are followed only as long as
// they stay inside dir (a pushed tree may hold links to the server's files).
func readTreeFile(dir, rel string) ([]byte, error) {
	if _, err := subPath(dir, rel); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.ReadFile(filepath.Clean(rel))
}

// subPath joins a relative setting path under root, refusing escapes.
func subPath(root, rel string) (string, error) {
	if rel == "" {
		return root, nil
	}
	clean := filepath.Clean(rel)
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("path %q leaves the source tree", rel)
	}
	return filepath.Join(root, clean), nil
}

// selectBuilder picks the builder for the tree in dir: a builder-detect
// plugin, then builder:set, then a Dockerfile, then buildpacks.
func (p *Pipeline) selectBuilder(ctx context.Context, app, dir string) (string, error) {
	if out, err := p.triggers.Fire(ctx, "builder-detect", app, dir); err != nil {
		return "", err
	} else if first, _, _ := strings.Cut(strings.TrimSpace(out), "\n"); first != "" {
		return validBuilder(strings.TrimSpace(first))
	}
	sel, err := p.AppSetting(ctx, app, SettingBuilder)
	if err != nil {
		return "", err
	}
	if sel != "" {
		return validBuilder(sel)
	}
	if dockerfile.Detect(dir) {
		return BuilderDockerfile, nil
	}
	return BuilderHerokuish, nil
}

func validBuilder(b string) (string, error) {
	switch b {
	case BuilderDockerfile, BuilderHerokuish:
		return b, nil
	case BuilderImage:
		return "", errors.New("the image builder deploys images (git:from-image), not pushed trees")
	}
	return "", fmt.Errorf("unknown builder %q (dockerfile, herokuish or image)", b)
}

// buildAndDeploy builds a source tree, makes a release of it and deploys it.
// The build's output is kept (builds:output), also when it fails.
func (p *Pipeline) buildAndDeploy(ctx context.Context, a store.App, src source, reason, by string, out io.Writer) error {
	app := a.Name
	root, err := p.AppSetting(ctx, app, SettingBuildDir)
	if err != nil {
		return err
	}
	dir, err := treeDir(src.dir, root)
	if err != nil {
		return err
	}
	procs, hasProcfile, err := p.readProcfile(ctx, app, dir)
	if err != nil {
		return err
	}
	aj, err := p.readAppJSON(ctx, app, dir, out)
	if err != nil {
		return err
	}
	builder, err := p.selectBuilder(ctx, app, dir)
	if err != nil {
		return err
	}
	bctx := context.WithValue(ctx, sourceRevKey{}, src.rev)
	b, err := p.recordBuild(ctx, app, src, builder, out, func(out io.Writer) (built, error) {
		return p.build(bctx, app, builder, dir, out)
	})
	if err != nil {
		return err
	}
	if !hasProcfile {
		procs = map[string]string{}
	}
	for name, cmd := range b.defaultProcs {
		if _, ok := procs[name]; !ok {
			procs[name] = cmd
		}
	}
	if len(nonRelease(procs)) == 0 {
		img, err := p.docker.ImageInspect(ctx, b.imageID)
		if err != nil {
			return fmt.Errorf("inspect built image: %w", err)
		}
		if img.Config == nil || (len(img.Config.Cmd) == 0 && len(img.Config.Entrypoint) == 0) {
			return errors.New("the image has no CMD or ENTRYPOINT and the Procfile defines no process: add one of them")
		}
		procs["web"] = ""
	}
	for k, v := range b.configVars {
		if aj.Env == nil {
			aj.Env = map[string]appjson.EnvVar{}
		}
		if _, set := aj.Env[k]; !set {
			aj.Env[k] = appjson.EnvVar{Value: v}
		}
	}
	return p.release(ctx, a, b, procs, aj, src, reason, by, out)
}

// build runs the chosen builder with its triggers.
func (p *Pipeline) build(ctx context.Context, app, builder, dir string, out io.Writer) (built, error) {
	phase(ctx, "build")
	if err := p.fire(ctx, out, "pre-build", builder, app, dir); err != nil {
		return built{}, err
	}
	bopts, err := p.dockerOptions(ctx, app, dockeropts.Build, app, builder)
	if err != nil {
		return built{}, err
	}
	labels := map[string]string{}
	for k, v := range bopts.Labels {
		labels[k] = v
	}
	labels[LabelImageApp] = app
	var b built
	switch builder {
	case BuilderDockerfile:
		if !dockerfile.Detect(dir) {
			return built{}, errors.New("the dockerfile builder is selected but the tree has no Dockerfile")
		}
		ui.Step(out, "Building %s from Dockerfile", app)
		limits, err := p.Limits(ctx, app, "build")
		if err != nil {
			return built{}, err
		}
		iw := ui.NewIndentWriter(out, ui.Indentation)
		res, err := p.builder.Build(ctx, dockerfile.Options{App: app, Dir: dir, Labels: labels, BuildArgs: bopts.BuildArgs,
			Memory: limits.Memory, CPUs: limits.CPUs}, iw)
		iw.Flush()
		if err != nil {
			return built{}, err
		}
		b = built{imageID: res.ImageID, builder: builder}
	case BuilderHerokuish:
		if b, err = p.buildpackBuild(ctx, app, dir, labels, bopts, out); err != nil {
			return built{}, err
		}
	}
	if err := p.fire(ctx, out, "post-build", builder, app, dir); err != nil {
		return built{}, err
	}
	return b, nil
}

// recordBuild runs fn with its output also captured into the app's build
// log, recorded as succeeded or failed.
func (p *Pipeline) recordBuild(ctx context.Context, app string, src source, builder string, out io.Writer, fn func(io.Writer) (built, error)) (built, error) {
	desc := src.kind
	switch {
	case src.rev != "":
		desc += " " + short(src.rev)
	case src.meta != "":
		desc += " " + src.meta
	}
	id, err := p.store.StartBuild(ctx, app, desc)
	if err != nil {
		return built{}, err
	}
	var log lockedBuffer
	b, err := fn(io.MultiWriter(out, &log))
	status := store.BuildSucceeded
	if err != nil {
		status = store.BuildFailed
		fmt.Fprintf(&log, " !     %v\n", err)
	}
	if ferr := p.store.FinishBuild(context.WithoutCancel(ctx), app, id, builder, status, b.imageID, log.Bytes()); ferr != nil {
		p.log.Warn("record build", "app", app, "err", ferr)
	}
	return b, err
}

// release stores a release of a built image and deploys it.
func (p *Pipeline) release(ctx context.Context, a store.App, b built, procs map[string]string, aj *appjson.AppJSON, src source, reason, by string, out io.Writer) error {
	app := a.Name
	if err := p.applyAppJSONEnv(ctx, a, aj, out); err != nil {
		return err
	}
	env, err := p.store.MergedConfig(ctx, app)
	if err != nil {
		return err
	}
	appEnv, err := p.store.Config(ctx, app)
	if err != nil {
		return err
	}
	if b.builder != BuilderHerokuish {
		if err := checkCommands(procs, env); err != nil {
			return err
		}
	}
	formation, err := p.formationFor(ctx, app, procs, aj)
	if err != nil {
		return err
	}
	ajRaw, err := json.Marshal(aj)
	if err != nil {
		return fmt.Errorf("encode app.json: %w", err)
	}
	phase(ctx, "release")
	ui.Step(out, "Releasing %s...", app)
	if err := p.fire(ctx, out, "pre-release-builder", b.builder, app, b.imageID); err != nil {
		return err
	}
	rel, err := p.store.CreateRelease(ctx, store.Release{
		App: app, ImageID: b.imageID, GitRev: src.rev, Env: env, AppEnv: appEnv, Processes: procs,
		Formation: formation, Reason: reason, CreatedBy: by, AppJSON: string(ajRaw), Builder: b.builder,
	})
	if err != nil {
		return err
	}
	if err := p.docker.ImageTag(ctx, b.imageID, ImageTag(app, rel.Version)); err != nil {
		err = fmt.Errorf("tag image: %w", err)
		p.failRelease(ctx, rel, err)
		return err
	}
	if err := p.fire(ctx, out, "post-release-builder", b.builder, app, ImageTag(app, rel.Version)); err != nil {
		p.failRelease(ctx, rel, err)
		return err
	}
	return p.deploy(ctx, a, rel, src.kind, src.meta, out)
}

// readProcfile reads the Procfile (at ps:set procfile-path, if set).
func (p *Pipeline) readProcfile(ctx context.Context, app, dir string) (map[string]string, bool, error) {
	rel, err := p.AppSetting(ctx, app, SettingProcfilePath)
	if err != nil {
		return nil, false, err
	}
	if rel == "" {
		rel = "Procfile"
	}
	return readProcfile(dir, rel)
}

// readAppJSON reads app.json (at app-json:set appjson-path, if set) and
// the legacy CHECKS file.
func (p *Pipeline) readAppJSON(ctx context.Context, app, dir string, out io.Writer) (*appjson.AppJSON, error) {
	rel, err := p.AppSetting(ctx, app, SettingAppJSONPath)
	if err != nil {
		return nil, err
	}
	if rel == "" {
		rel = "app.json"
	}
	return readAppJSON(dir, rel, out)
}

// lockedBuffer collects output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of what was written.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}
