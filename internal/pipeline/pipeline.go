// Package pipeline owns an app's lifecycle: receive → build → release →
// deploy, and every operation that changes what runs (scale, stop, start,
// restart, rename, destroy), each under a per-app lock and recorded as
// events. A deploy is all-or-nothing: a failure at any step leaves the
// previous release serving.
package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/berth-paas/berth/internal/builder/buildpack"
	"github.com/berth-paas/berth/internal/builder/dockerfile"
	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
)

// Defaults for waits during a deploy.
const (
	DefaultStartTimeout = 60 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	DefaultPort         = 5000
)

// Options configure a Pipeline.
type Options struct {
	DataDir string
	// Domain is the global domain apps answer under (APP.DOMAIN) unless
	// domains:set-global changed it.
	Domain string
	// HTTPPort is the proxy's public port, used to print app URLs.
	HTTPPort int
	// HTTPSPort is the proxy's public HTTPS port (0: HTTPS is off), and
	// SecureHost says whether a host of an app has a certificate: its URL
	// is then https://.
	HTTPSPort  int
	SecureHost func(app, host string) bool
	// Executable is the berth binary git hooks call back into.
	Executable string
	Logger     *slog.Logger
	// PortsHost is the address the extra listeners of port mappings bind
	// (the --http-addr host; "" for every interface), and ReservedPorts
	// the other host ports berth listens on (port -> what), which no
	// mapping may take.
	PortsHost     string
	ReservedPorts map[int]string
}

// Pipeline runs deploys and lifecycle operations.
type Pipeline struct {
	store      *store.Store
	docker     *client.Client
	sched      *scheduler.Docker
	builder    *dockerfile.Builder
	buildpacks *buildpack.Builder
	router     *proxy.Router
	triggers   *plugins.Bus
	opts       Options
	log        *slog.Logger
	locks      locks
	cron       cronTable
	retiring   retirements
	// pendingRefresh holds apps whose container events came while an
	// operation held their lock.
	pendingRefresh sync.Map
	ports          portsState
}

// New assembles a pipeline.
func New(st *store.Store, cli *client.Client, sched *scheduler.Docker, router *proxy.Router, bus *plugins.Bus, o Options) *Pipeline {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Pipeline{
		store: st, docker: cli, sched: sched, builder: dockerfile.New(cli), buildpacks: buildpack.New(cli), router: router, triggers: bus,
		opts: o, log: o.Logger, locks: locks{m: map[string]*appLock{}},
	}
}

// Scheduler returns the scheduler the pipeline deploys with.
func (p *Pipeline) Scheduler() *scheduler.Docker { return p.sched }

// Router returns the proxy router the pipeline switches.
func (p *Pipeline) Router() *proxy.Router { return p.router }

// Triggers returns the trigger bus.
func (p *Pipeline) Triggers() *plugins.Bus { return p.triggers }

// Docker returns the engine client.
func (p *Pipeline) Docker() *client.Client { return p.docker }

// DataDir returns the data directory.
func (p *Pipeline) DataDir() string { return p.opts.DataDir }

// ImageRepo is the repository images of app are tagged in.
func ImageRepo(app string) string { return "berth/" + app }

// ImageTag is the tag of release version of app.
func ImageTag(app string, version int) string {
	return ImageRepo(app) + ":v" + strconv.Itoa(version)
}

func (p *Pipeline) tmpDir() (string, error) {
	d := filepath.Join(p.opts.DataDir, "tmp")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", d, err)
	}
	return d, nil
}

// event records an app event, logging (not failing) when the store refuses.
func (p *Pipeline) event(ctx context.Context, app, kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if err := p.store.AddEvent(context.WithoutCancel(ctx), app, kind, msg); err != nil {
		p.log.Warn("record event", "app", app, "kind", kind, "err", err)
	}
	p.log.Info(msg, "app", app, "event", kind)
}

// fire runs a trigger; its output (if any) is shown indented.
func (p *Pipeline) fire(ctx context.Context, out io.Writer, trigger string, args ...string) error {
	res, err := p.triggers.Fire(ctx, trigger, args...)
	if res != "" && out != nil {
		io.WriteString(out, indent(res))
	}
	return err
}

// GlobalDomains returns the domains every app answers under as APP.DOMAIN.
func (p *Pipeline) GlobalDomains(ctx context.Context) ([]string, error) {
	v, ok, err := p.store.Setting(ctx, "", "global-domains")
	if err != nil {
		return nil, err
	}
	if !ok {
		if p.opts.Domain == "" {
			return nil, nil
		}
		return []string{p.opts.Domain}, nil
	}
	var ds []string
	if err := json.Unmarshal([]byte(v), &ds); err != nil {
		return nil, fmt.Errorf("read global domains: %w", err)
	}
	return ds, nil
}

// SetGlobalDomains replaces the global domains and re-routes every app.
func (p *Pipeline) SetGlobalDomains(ctx context.Context, ds []string) error {
	b, _ := json.Marshal(append([]string{}, ds...))
	if err := p.store.SetSetting(ctx, "", "global-domains", string(b)); err != nil {
		return err
	}
	apps, err := p.store.Apps(ctx)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := p.RefreshRoutes(ctx, a.Name, true); err != nil {
			p.log.Warn("refresh routes", "app", a.Name, "err", err)
		}
	}
	return nil
}

// Hosts returns every host name app answers to: its custom domains, then
// APP.DOMAIN for each global domain.
func (p *Pipeline) Hosts(ctx context.Context, app string) ([]string, error) {
	custom, err := p.store.Domains(ctx, app)
	if err != nil {
		return nil, err
	}
	globals, err := p.GlobalDomains(ctx)
	if err != nil {
		return nil, err
	}
	hosts := append([]string{}, custom...)
	for _, g := range globals {
		hosts = append(hosts, app+"."+g)
	}
	return hosts, nil
}

// URLs returns the URLs app answers at.
func (p *Pipeline) URLs(ctx context.Context, app string) ([]string, error) {
	hosts, err := p.Hosts(ctx, app)
	if err != nil {
		return nil, err
	}
	port := ""
	if p.opts.HTTPPort != 0 && p.opts.HTTPPort != 80 {
		port = ":" + strconv.Itoa(p.opts.HTTPPort)
	}
	sport := ""
	if p.opts.HTTPSPort != 0 && p.opts.HTTPSPort != 443 {
		sport = ":" + strconv.Itoa(p.opts.HTTPSPort)
	}
	urls := make([]string, 0, len(hosts))
	for _, h := range hosts {
		switch {
		case strings.HasPrefix(h, "*."):
		case p.opts.HTTPSPort != 0 && p.opts.SecureHost != nil && p.opts.SecureHost(app, h):
			urls = append(urls, "https://"+h+sport)
		default:
			urls = append(urls, "http://"+h+port)
		}
	}
	return urls, nil
}
