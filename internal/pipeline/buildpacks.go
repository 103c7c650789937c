package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-paas/berth/internal/builder/buildpack"
	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/ui"
)

// Buildpack settings (buildpacks:set-property --global).
const (
	SettingStack   = "buildpacks-stack"
	SettingRuntime = "buildpacks-runtime"
)

// CacheDir is app's buildpack cache on the host (repo:purge-cache empties it).
func (p *Pipeline) CacheDir(app string) string {
	return filepath.Join(p.opts.DataDir, "cache", app)
}

// BuildpackImages returns the stack and runtime images buildpack builds use.
func (p *Pipeline) BuildpackImages(ctx context.Context) (stack, runtime string, err error) {
	if stack, err = p.AppSetting(ctx, "", SettingStack); err != nil {
		return "", "", err
	}
	if runtime, err = p.AppSetting(ctx, "", SettingRuntime); err != nil {
		return "", "", err
	}
	if stack == "" {
		stack = buildpack.DefaultStack
	}
	if runtime == "" {
		runtime = buildpack.DefaultRuntime
	}
	return stack, runtime, nil
}

// buildpackList says which buildpacks build app and where that came from:
// buildpacks:add/set, then .buildpacks, then BUILDPACK_URL, then the global
// list.
func (p *Pipeline) buildpackList(ctx context.Context, app, dir string, env map[string]string) ([]string, string, error) {
	list, err := p.store.Buildpacks(ctx, app)
	if err != nil || len(list) > 0 {
		return list, "buildpacks:set", err
	}
	if data, err := readTreeFile(dir, ".buildpacks"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			l := strings.TrimSpace(sc.Text())
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if err := treeBuildpack(l); err != nil {
				return nil, "", fmt.Errorf(".buildpacks line %d: %w", n, err)
			}
			list = append(list, l)
		}
		if len(list) > 0 {
			return list, ".buildpacks", sc.Err()
		}
	}
	if u := strings.TrimSpace(env["BUILDPACK_URL"]); u != "" {
		if err := treeBuildpack(u); err != nil {
			return nil, "", fmt.Errorf("BUILDPACK_URL: %w", err)
		}
		return []string{u}, "BUILDPACK_URL", nil
	}
	list, err = p.GlobalBuildpacks(ctx)
	return list, "global buildpacks", err
}

// treeBuildpack validates a buildpack named by the app itself (.buildpacks,
// BUILDPACK_URL): it may not point at the server's own files (a path or a
// file:// repository) — only buildpacks:add, an admin command, can.
func treeBuildpack(spec string) error {
	if err := buildpack.ValidateSpec(spec); err != nil {
		return err
	}
	if strings.HasPrefix(spec, "/") || strings.HasPrefix(strings.ToLower(spec), "file:") {
		return fmt.Errorf("buildpack %s is on the server: only buildpacks:add (an admin command) may name server paths", spec)
	}
	return nil
}

// SettingGlobalBuildpacks holds the global buildpack list (JSON).
const SettingGlobalBuildpacks = "buildpacks-global"

// GlobalBuildpacks returns the buildpacks apps without their own use.
func (p *Pipeline) GlobalBuildpacks(ctx context.Context) ([]string, error) {
	v, ok, err := p.store.Setting(ctx, "", SettingGlobalBuildpacks)
	if err != nil || !ok {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("global buildpacks: %w", err)
	}
	return list, nil
}

// SetGlobalBuildpacks replaces the global buildpack list.
func (p *Pipeline) SetGlobalBuildpacks(ctx context.Context, list []string) error {
	if len(list) == 0 {
		return p.store.SetSetting(ctx, "", SettingGlobalBuildpacks, "")
	}
	b, _ := json.Marshal(list)
	return p.store.SetSetting(ctx, "", SettingGlobalBuildpacks, string(b))
}

// ResourceLimits are resource:limit values of one process type (or build).
type ResourceLimits struct {
	Memory   int64   `json:"memory,omitempty"` // bytes
	CPUs     float64 `json:"cpus,omitempty"`
	PidsMax  int64   `json:"pids,omitempty"`
	MemSwap  int64   `json:"memory-swap,omitempty"`
	Reserved int64   `json:"memory-reservation,omitempty"`
}

// ResourceKey is the setting holding the limits of a process type.
func ResourceKey(process string) string { return "resource-limit:" + process }

// Limits returns the resource limits of process for app (the app's
// "_default_" limits apply to process types without their own).
func (p *Pipeline) Limits(ctx context.Context, app, process string) (ResourceLimits, error) {
	var l ResourceLimits
	for _, proc := range []string{process, "_default_"} {
		v, ok, err := p.store.Setting(ctx, app, ResourceKey(proc))
		if err != nil {
			return l, err
		}
		if ok {
			if err := json.Unmarshal([]byte(v), &l); err != nil {
				return l, fmt.Errorf("resource limits of %s: %w", proc, err)
			}
			return l, nil
		}
		if process == "build" {
			break
		}
	}
	return l, nil
}

// apply sets limits on docker options.
func (l ResourceLimits) apply(o *dockeropts.Options) {
	if l.Memory > 0 {
		o.Host.Memory = l.Memory
	}
	if l.CPUs > 0 {
		o.Host.NanoCPUs = int64(l.CPUs * 1e9)
	}
	if l.PidsMax > 0 {
		n := l.PidsMax
		o.Host.PidsLimit = &n
	}
	if l.MemSwap != 0 {
		o.Host.MemorySwap = l.MemSwap
	}
	if l.Reserved > 0 {
		o.Host.MemoryReservation = l.Reserved
	}
}

// buildpackBuild builds dir with the app's buildpacks.
func (p *Pipeline) buildpackBuild(ctx context.Context, app, dir string, labels map[string]string, bopts *dockeropts.Options, out io.Writer) (built, error) {
	env, err := p.store.MergedConfig(ctx, app)
	if err != nil {
		return built{}, err
	}
	specs, from, err := p.buildpackList(ctx, app, dir, env)
	if err != nil {
		return built{}, err
	}
	if len(specs) == 0 {
		return built{}, fmt.Errorf("no Dockerfile and no buildpack for %s: add a Dockerfile, or buildpacks with buildpacks:add %s URL, a .buildpacks file or BUILDPACK_URL", app, app)
	}
	stack, runtime, err := p.BuildpackImages(ctx)
	if err != nil {
		return built{}, err
	}
	ui.Step(out, "Building %s with buildpacks (from %s) on %s", app, from, stack)
	tmp, err := p.tmpDir()
	if err != nil {
		return built{}, err
	}
	work, err := os.MkdirTemp(tmp, app+"-buildpacks-")
	if err != nil {
		return built{}, err
	}
	defer os.RemoveAll(work)
	packs := make([]buildpack.Pack, 0, len(specs))
	for _, s := range specs {
		ui.Detail(out, "Fetching buildpack %s", s)
		pk, err := buildpack.Fetch(ctx, s, work)
		if err != nil {
			return built{}, err
		}
		packs = append(packs, pk)
	}
	limits, err := p.Limits(ctx, app, "build")
	if err != nil {
		return built{}, err
	}
	var lo dockeropts.Options
	limits.apply(&lo)
	rev := ""
	if v, ok := ctx.Value(sourceRevKey{}).(string); ok {
		rev = v
	}
	iw := ui.NewBuildWriter(out)
	res, err := p.buildpacks.Build(ctx, buildpack.Options{
		App: app, Dir: dir, Packs: packs, Env: env, CacheDir: p.CacheDir(app),
		Stack: stack, Runtime: runtime, Labels: labels,
		ContainerLabels: map[string]string{scheduler.LabelInstance: p.sched.Instance(), scheduler.LabelOneOff: app, scheduler.LabelApp: "", "berth.kind": "build"},
		Memory:          lo.Host.Memory, NanoCPUs: lo.Host.NanoCPUs, SourceVersion: rev,
	}, iw)
	iw.Flush()
	if err != nil {
		return built{}, err
	}
	_ = bopts // build args do not apply to buildpack builds (ENV_DIR carries the config)
	return built{imageID: res.ImageID, builder: BuilderHerokuish, defaultProcs: res.DefaultProcs, configVars: res.ConfigVars}, nil
}

// sourceRevKey carries the git revision being built to the builders.
type sourceRevKey struct{}
