// Package dockerfile builds an app's source tree into an image with the
// Docker Engine's build API, streaming the build output.
package dockerfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/moby/go-archive"
	"github.com/moby/patternmatcher/ignorefile"
)

// Name is the builder's name as shown to users and passed to triggers.
const Name = "dockerfile"

// Detect reports whether dir holds a Dockerfile (a symlink counts only if
// it stays inside dir).
func Detect(dir string) bool {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false
	}
	defer root.Close()
	fi, err := root.Stat("Dockerfile")
	return err == nil && fi.Mode().IsRegular()
}

// Builder builds Dockerfile apps.
type Builder struct {
	cli *client.Client
}

// New returns a Dockerfile builder on cli.
func New(cli *client.Client) *Builder { return &Builder{cli: cli} }

// Options are the inputs of one build.
type Options struct {
	App string
	// Dir is the source tree, with a Dockerfile at its root.
	Dir string
	// BuildArgs are passed as --build-arg.
	BuildArgs map[string]*string
	// Labels are set on the image.
	Labels map[string]string
	// Memory (bytes) and CPUs cap the build (resource:limit --process-type
	// build); 0 means no cap.
	Memory int64
	CPUs   float64
}

// Result describes a built image.
type Result struct {
	ImageID string
}

// BuildError is a build that ran and failed (as opposed to an engine error).
type BuildError struct{ Msg string }

func (e *BuildError) Error() string { return "Dockerfile build failed: " + e.Msg }

// Build builds o.Dir into an image, writing the build's output to out line by
// line as the engine produces it. Layers are cached by the engine between
// builds of the same app.
func (b *Builder) Build(ctx context.Context, o Options, out io.Writer) (Result, error) {
	excludes, err := readDockerignore(o.Dir)
	if err != nil {
		return Result{}, err
	}
	buildCtx, err := archive.TarWithOptions(o.Dir, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return Result{}, fmt.Errorf("pack build context: %w", err)
	}
	defer buildCtx.Close()
	resp, err := b.cli.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		BuildArgs:   o.BuildArgs,
		Labels:      o.Labels,
		Version:     build.BuilderV1,
		Memory:      o.Memory,
		CPUPeriod:   cpuPeriod(o.CPUs),
		CPUQuota:    int64(o.CPUs * 100000),
	})
	if err != nil {
		return Result{}, fmt.Errorf("start build: %w", err)
	}
	defer resp.Body.Close()

	var id string
	dec := json.NewDecoder(resp.Body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return Result{}, fmt.Errorf("read build output: %w", err)
		}
		if m.Error != nil || m.ErrorText != "" {
			msg := m.ErrorText
			if m.Error != nil && m.Error.Message != "" {
				msg = m.Error.Message
			}
			return Result{}, &BuildError{Msg: strings.TrimSpace(msg)}
		}
		if m.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		if m.Stream != "" {
			io.WriteString(out, m.Stream)
		} else if m.Status != "" {
			fmt.Fprintln(out, m.Status)
		}
	}
	if id == "" {
		return Result{}, &BuildError{Msg: "the engine reported no image id"}
	}
	return Result{ImageID: id}, nil
}

func cpuPeriod(cpus float64) int64 {
	if cpus > 0 {
		return 100000
	}
	return 0
}

// buildMessage is one JSON line of the engine's build output.
type buildMessage struct {
	Stream string           `json:"stream"`
	Status string           `json:"status"`
	Aux    *json.RawMessage `json:"aux"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	ErrorText string `json:"error"`
}

func readDockerignore(dir string) ([]string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer root.Close()
	f, err := root.Open(".dockerignore")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return patterns, nil
}
