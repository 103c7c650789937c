// Package scheduler turns releases into running containers on the local
// Docker Engine (the "docker-local" scheduler) and reports what runs. It
// never touches routing.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/berth-paas/berth/internal/dockeropts"
)

// Labels every berth container carries.
const (
	LabelApp     = "berth.app"
	LabelRelease = "berth.release"
	LabelProcess = "berth.process"
	LabelIndex   = "berth.index"
	LabelPort    = "berth.port"
	// LabelInstance ties a container to the berth server (data dir) that
	// made it, so servers sharing an engine never touch each other's.
	LabelInstance = "berth.instance"
)

// Container is a container of an app as the scheduler sees it.
type Container struct {
	ID      string
	Name    string
	App     string
	Release int
	Process string
	Index   int
	Port    int
	// State is Docker's: created, running, exited…
	State string
	// IP is the container's address on the scheduler's network, if any.
	IP      string
	Created time.Time
}

// Running reports whether the container is running.
func (c Container) Running() bool { return c.State == "running" }

// CanonicalName is the name a container of app/process/index should have.
func CanonicalName(app, process string, index int) string {
	return app + "." + process + "." + strconv.Itoa(index)
}

// Spec describes one container to start.
type Spec struct {
	App     string
	Release int
	Image   string
	Process string
	Index   int
	// Cmd replaces the image's CMD when not nil.
	Cmd  []string
	Env  []string
	Port int
	// Name is the container name; CanonicalName when empty.
	Name string
	// Options are extra docker options (docker-options, plugin triggers).
	Options *dockeropts.Options
}

// applyOptions merges docker options into a container's config; berth's own
// labels, network and restart policy always win.
func applyOptions(o *dockeropts.Options, cfg *container.Config, host *container.HostConfig) {
	if o == nil {
		return
	}
	own := host.RestartPolicy
	network := host.NetworkMode
	logCfg := host.LogConfig
	*host = o.Host
	host.RestartPolicy, host.NetworkMode = own, network
	if host.LogConfig.Type == "" {
		host.LogConfig = logCfg
	}
	for k, v := range o.Labels {
		if _, taken := cfg.Labels[k]; !taken {
			cfg.Labels[k] = v
		}
	}
	cfg.Env = append(cfg.Env, o.Env...)
	if o.User != "" {
		cfg.User = o.User
	}
	if o.WorkDir != "" {
		cfg.WorkingDir = o.WorkDir
	}
}

// Docker is the docker-local scheduler.
type Docker struct {
	cli      *client.Client
	network  string
	instance string
}

// NewDocker returns a scheduler that runs containers on cli, attached to the
// bridge network named network, labelled as belonging to instance.
func NewDocker(cli *client.Client, network, instance string) *Docker {
	return &Docker{cli: cli, network: network, instance: instance}
}

// Instance returns the instance label value of this server's containers.
func (d *Docker) Instance() string { return d.instance }

// Network returns the name of the network containers are attached to.
func (d *Docker) Network() string { return d.network }

// EnsureNetwork creates the bridge network containers attach to, if missing.
func (d *Docker) EnsureNetwork(ctx context.Context) error {
	_, err := d.cli.NetworkInspect(ctx, d.network, network.InspectOptions{})
	if err == nil {
		return nil
	}
	if !errdefs.IsNotFound(err) {
		return fmt.Errorf("inspect network %s: %w", d.network, err)
	}
	_, err = d.cli.NetworkCreate(ctx, d.network, network.CreateOptions{Driver: "bridge", Labels: map[string]string{"berth.network": "true"}})
	if err != nil && !errdefs.IsConflict(err) {
		return fmt.Errorf("create network %s: %w", d.network, err)
	}
	return nil
}

// Start creates and starts a container for spec.
func (d *Docker) Start(ctx context.Context, s Spec) (Container, error) {
	name := s.Name
	if name == "" {
		name = CanonicalName(s.App, s.Process, s.Index)
	}
	labels := map[string]string{
		LabelApp:      s.App,
		LabelRelease:  strconv.Itoa(s.Release),
		LabelProcess:  s.Process,
		LabelIndex:    strconv.Itoa(s.Index),
		LabelPort:     strconv.Itoa(s.Port),
		LabelInstance: d.instance,
		// Blank what an image may have inherited from a one-off.
		LabelOneOff:  "",
		"berth.kind": "",
	}
	cfg := &container.Config{
		Image:    s.Image,
		Env:      s.Env,
		Labels:   labels,
		Hostname: fmt.Sprintf("%s-%s-%d", s.App, s.Process, s.Index),
	}
	if s.Cmd != nil {
		cfg.Cmd = s.Cmd
	}
	// No restart policy until the container passed its checks (Keep): a
	// crash during checks then shows its real exit code at once.
	host := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
		NetworkMode:   container.NetworkMode(d.network),
	}
	applyOptions(s.Options, cfg, host)
	created, err := d.cli.ContainerCreate(ctx, cfg, host, &network.NetworkingConfig{}, nil, name)
	if err != nil {
		return Container{}, fmt.Errorf("create container %s: %w", name, err)
	}
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return Container{}, fmt.Errorf("start container %s: %w", name, err)
	}
	return Container{ID: created.ID, Name: name, App: s.App, Release: s.Release, Process: s.Process, Index: s.Index, Port: s.Port, State: "running", Created: time.Now()}, nil
}

// Keep gives a container that passed its checks the restart policy
// unless-stopped, so the engine restarts it after a crash or a reboot.
func (d *Docker) Keep(ctx context.Context, id string) error {
	_, err := d.cli.ContainerUpdate(ctx, id, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}})
	if err != nil {
		return fmt.Errorf("set restart policy of %s: %w", shortID(id), err)
	}
	return nil
}

// List returns the containers of app (of every app when app is ""), sorted
// by process, index and creation time.
func (d *Docker) List(ctx context.Context, app string) ([]Container, error) {
	f := filters.NewArgs(filters.Arg("label", LabelInstance+"="+d.instance))
	if app == "" {
		f.Add("label", LabelApp)
	} else {
		f.Add("label", LabelApp+"="+app)
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(list))
	for _, c := range list {
		if c.Labels[LabelApp] == "" || c.Labels["berth.kind"] != "" {
			continue // a one-off container
		}
		rel, _ := strconv.Atoi(c.Labels[LabelRelease])
		idx, _ := strconv.Atoi(c.Labels[LabelIndex])
		port, _ := strconv.Atoi(c.Labels[LabelPort])
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		ip := ""
		if c.NetworkSettings != nil {
			if n, ok := c.NetworkSettings.Networks[d.network]; ok && n != nil {
				ip = n.IPAddress
			}
		}
		out = append(out, Container{
			ID: c.ID, Name: name, App: c.Labels[LabelApp], Release: rel, Process: c.Labels[LabelProcess],
			Index: idx, Port: port, State: string(c.State), IP: ip, Created: time.Unix(c.Created, 0),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.App != b.App {
			return a.App < b.App
		}
		if a.Process != b.Process {
			return a.Process < b.Process
		}
		if a.Index != b.Index {
			return a.Index < b.Index
		}
		return a.Created.Before(b.Created)
	})
	return out, nil
}

// Inspect returns the state of a container, its IP on the scheduler's
// network and, when it exited, its exit code.
func (d *Docker) Inspect(ctx context.Context, id string) (State, error) {
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return State{}, fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	st := State{RestartCount: info.RestartCount}
	if info.State != nil {
		st.Status = string(info.State.Status)
		st.Running = info.State.Running
		st.Restarting = info.State.Restarting
		st.ExitCode = info.State.ExitCode
		st.Error = info.State.Error
		if t, err := time.Parse(time.RFC3339Nano, info.State.StartedAt); err == nil {
			st.StartedAt = t
		}
	}
	if info.NetworkSettings != nil {
		if n, ok := info.NetworkSettings.Networks[d.network]; ok && n != nil {
			st.IP = n.IPAddress
		}
	}
	return st, nil
}

// State is what Inspect reports.
type State struct {
	Status     string
	Running    bool
	Restarting bool
	ExitCode   int
	Error      string
	IP         string
	StartedAt  time.Time
	// RestartCount counts restarts by the restart policy.
	RestartCount int
}

// StartExisting starts a stopped container.
func (d *Docker) StartExisting(ctx context.Context, id string) error {
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", shortID(id), err)
	}
	return nil
}

// Stop stops a container, sending SIGTERM and SIGKILL after timeout.
func (d *Docker) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Seconds())
	if err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", shortID(id), err)
	}
	return nil
}

// Remove stops (after timeout) and removes a container; a missing container
// is not an error.
func (d *Docker) Remove(ctx context.Context, id string, timeout time.Duration) error {
	if timeout > 0 {
		if err := d.Stop(ctx, id, timeout); err != nil {
			return err
		}
	}
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

// Rename renames a container.
func (d *Docker) Rename(ctx context.Context, id, name string) error {
	if err := d.cli.ContainerRename(ctx, id, name); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", shortID(id), name, err)
	}
	return nil
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow bool
	// Tail is the number of lines from the end; negative means all.
	Tail  int
	Since time.Time
}

// Logs returns a container's multiplexed log stream (stdout and stderr,
// timestamped), to be split with stdcopy.
func (d *Docker) Logs(ctx context.Context, id string, o LogOptions) (io.ReadCloser, error) {
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: o.Follow}
	if o.Tail >= 0 {
		opts.Tail = strconv.Itoa(o.Tail)
	}
	if !o.Since.IsZero() {
		opts.Since = o.Since.Format(time.RFC3339Nano)
	}
	rc, err := d.cli.ContainerLogs(ctx, id, opts)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", shortID(id), err)
	}
	return rc, nil
}

// IsNotFound reports whether err means a container or image does not exist.
func IsNotFound(err error) bool {
	return errdefs.IsNotFound(err) || errors.Is(err, errdefs.ErrNotFound)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
