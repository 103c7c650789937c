package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berth-paas/berth/internal/dockeropts"
)

// LabelOneOff marks one-off containers (run, cron, release and deploy
// scripts) with their app. They do not carry LabelApp, so they are never
// mistaken for the app's process containers.
const LabelOneOff = "berth.oneoff.app"

// Exec runs cmd inside a running container and returns its exit code and
// combined output (the last 4 KiB).
func (d *Docker) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	created, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, "", fmt.Errorf("exec in %s: %w", shortID(id), err)
	}
	att, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("exec in %s: %w", shortID(id), err)
	}
	defer att.Close()
	var out tailBuffer
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&out, &out, att.Reader)
		done <- err
	}()
	select {
	case <-ctx.Done():
		return 0, out.String(), ctx.Err()
	case <-done:
	}
	info, err := d.cli.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return 0, out.String(), fmt.Errorf("exec in %s: %w", shortID(id), err)
	}
	return info.ExitCode, out.String(), nil
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.TrimSpace(t.b)) }

// OneOff describes a one-off container.
type OneOff struct {
	App     string
	Release int
	Image   string
	// Kind says what it is for: run, cron, predeploy, postdeploy, release.
	Kind string
	Cmd  []string
	Env  []string
	// Stdin, when not nil, is attached to the container's stdin.
	Stdin io.Reader
	// Detach starts the container and returns without waiting or removing.
	Detach bool
	// Options are extra docker options (docker-options run, docker-args-run).
	Options *dockeropts.Options
}

// RunOneOff runs a one-off container to completion, streaming its output to
// stdout and stderr, and returns its exit code. The container is removed.
// With o.Detach it returns once the container started (exit code 0).
func (d *Docker) RunOneOff(ctx context.Context, o OneOff, stdout, stderr io.Writer) (int, string, error) {
	name := fmt.Sprintf("%s.%s.%d", o.App, o.Kind, time.Now().UnixNano()%1_000_000_000)
	cfg := &container.Config{
		Image: o.Image, Cmd: o.Cmd, Env: o.Env,
		// LabelApp is blanked: images may carry it, and one-offs must never
		// count as the app's process containers.
		Labels:    map[string]string{LabelOneOff: o.App, LabelApp: "", LabelRelease: strconv.Itoa(o.Release), LabelInstance: d.instance, "berth.kind": o.Kind},
		OpenStdin: o.Stdin != nil, StdinOnce: o.Stdin != nil, AttachStdin: o.Stdin != nil,
		AttachStdout: !o.Detach, AttachStderr: !o.Detach,
	}
	host := &container.HostConfig{
		NetworkMode: container.NetworkMode(d.network),
		AutoRemove:  o.Detach,
		LogConfig:   container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "1"}},
	}
	applyOptions(o.Options, cfg, host)
	host.AutoRemove = o.Detach
	created, err := d.cli.ContainerCreate(ctx, cfg, host, &network.NetworkingConfig{}, nil, name)
	if err != nil {
		return 0, "", fmt.Errorf("create %s container: %w", o.Kind, err)
	}
	cleanup := func() {
		if !o.Detach {
			d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		}
	}
	if o.Detach {
		if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
			return 0, name, fmt.Errorf("start %s container: %w", o.Kind, err)
		}
		return 0, name, nil
	}
	defer cleanup()
	att, err := d.cli.ContainerAttach(ctx, created.ID, container.AttachOptions{Stream: true, Stdin: o.Stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return 0, name, fmt.Errorf("attach to %s container: %w", o.Kind, err)
	}
	defer att.Close()
	waitC, errC := d.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return 0, name, fmt.Errorf("start %s container: %w", o.Kind, err)
	}
	if o.Stdin != nil {
		go func() {
			io.Copy(att.Conn, o.Stdin)
			att.CloseWrite()
		}()
	}
	copied := make(chan struct{})
	go func() {
		stdcopy.StdCopy(stdout, stderr, att.Reader)
		close(copied)
	}()
	select {
	case res := <-waitC:
		// Let the output drain before reporting.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		if res.Error != nil && res.Error.Message != "" {
			return 0, name, fmt.Errorf("%s container: %s", o.Kind, res.Error.Message)
		}
		return int(res.StatusCode), name, nil
	case err := <-errC:
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return 0, name, fmt.Errorf("%s container interrupted: %w", o.Kind, ctx.Err())
		}
		return 0, name, fmt.Errorf("wait for %s container: %w", o.Kind, err)
	}
}

// HasShell reports whether image has /bin/sh (images FROM scratch do not).
func (d *Docker) HasShell(ctx context.Context, image string) (bool, error) {
	created, err := d.cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"/bin/sh"},
		Labels: map[string]string{LabelApp: "", LabelInstance: d.instance, "berth.kind": "probe"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return false, fmt.Errorf("probe image: %w", err)
	}
	defer d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	_, err = d.cli.ContainerStatPath(ctx, created.ID, "/bin/sh")
	if err != nil {
		if IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("probe image for /bin/sh: %w", err)
	}
	return true, nil
}

// RemoveOneOffs removes every one-off container of app (running or not).
func (d *Docker) RemoveOneOffs(ctx context.Context, app string) error {
	f := filters.NewArgs(filters.Arg("label", LabelInstance+"="+d.instance), filters.Arg("label", LabelOneOff+"="+app))
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list one-off containers of %s: %w", app, err)
	}
	for _, c := range list {
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !IsNotFound(err) {
			return fmt.Errorf("remove one-off container %s: %w", shortID(c.ID), err)
		}
	}
	return nil
}

// RemoveStaleOneOffs removes one-off containers left by a previous run of
// the server (a crash during a deploy script, say) that are not running.
func (d *Docker) RemoveStaleOneOffs(ctx context.Context) error {
	f := filters.NewArgs(filters.Arg("label", LabelInstance+"="+d.instance), filters.Arg("label", "berth.kind"))
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list one-off containers: %w", err)
	}
	for _, c := range list {
		if c.State == "running" && c.Labels["berth.kind"] != "probe" {
			continue
		}
		d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	return nil
}
