package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

func filtersArgs(k, v string) filters.Args { return filters.NewArgs(filters.Arg(k, v)) }

// ErrNoRelease means the app was never deployed.
var ErrNoRelease = errors.New("app has not been deployed")

func (p *Pipeline) currentRelease(ctx context.Context, a store.App) (store.Release, error) {
	if a.CurrentRelease == 0 {
		return store.Release{}, fmt.Errorf("app %s has not been deployed: %w", a.Name, ErrNoRelease)
	}
	return p.store.Release(ctx, a.Name, a.CurrentRelease)
}

// CreateApp creates an app and fires post-create.
func (p *Pipeline) CreateApp(ctx context.Context, app string, out io.Writer) error {
	if err := p.store.CreateApp(ctx, app); err != nil {
		return err
	}
	p.event(ctx, app, "create", "app created")
	if err := p.RefreshRoutes(ctx, app, true); err != nil {
		p.log.Warn("route new app", "app", app, "err", err)
	}
	return p.fire(ctx, out, "post-create", app)
}

// Redeploy makes a new release of app's current one with its current config
// (after a config change) and deploys it. With no release yet it does
// nothing; when the app is stopped the release is recorded and applies on
// ps:start.
func (p *Pipeline) Redeploy(ctx context.Context, app, reason, by string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	if a.CurrentRelease == 0 {
		return nil
	}
	cur, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	env, err := p.store.MergedConfig(ctx, app)
	if err != nil {
		return err
	}
	return p.redeploy(ctx, a, cur, env, reason, by, out)
}

// redeploy releases cur's image and processes with env; the caller holds
// the app's lock.
func (p *Pipeline) redeploy(ctx context.Context, a store.App, cur store.Release, env map[string]string, reason, by string, out io.Writer) error {
	app := a.Name
	if cur.Builder != BuilderHerokuish {
		if err := checkCommands(cur.Processes, env); err != nil {
			return err
		}
	}
	formation, err := p.store.Formation(ctx, app)
	if err != nil {
		return err
	}
	appEnv, err := p.store.Config(ctx, app)
	if err != nil {
		return err
	}
	rel, err := p.store.CreateRelease(ctx, store.Release{
		App: app, ImageID: cur.ImageID, GitRev: cur.GitRev, Env: env, AppEnv: appEnv, Processes: cur.Processes,
		Formation: formation, Reason: reason, CreatedBy: by, AppJSON: cur.AppJSON, Builder: cur.Builder,
	})
	if err != nil {
		return err
	}
	if err := p.docker.ImageTag(ctx, cur.ImageID, ImageTag(app, rel.Version)); err != nil {
		err = fmt.Errorf("tag image: %w", err)
		p.failRelease(ctx, rel, err)
		return err
	}
	if a.Stopped {
		if err := p.store.PromoteRelease(ctx, app, rel.Version, a.DeploySource, a.SourceMeta); err != nil {
			return err
		}
		ui.Step(out, "Release v%d recorded; %s is stopped, it runs on ps:start", rel.Version, app)
		return nil
	}
	ui.Step(out, "Releasing %s (v%d: %s)...", app, rel.Version, reason)
	return p.deploy(ctx, a, rel, a.DeploySource, a.SourceMeta, out)
}

// Restart replaces every container of app's current release with a fresh
// one, health-gated like a deploy.
func (p *Pipeline) Restart(ctx context.Context, app, by string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	rel, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	env, err := p.store.MergedConfig(ctx, app)
	if err != nil {
		return err
	}
	if !maps.Equal(env, rel.Env) {
		// Config changed with --no-restart since this release: restarting
		// applies it, as a new release (and starts a stopped app).
		a.Stopped = false
		return p.redeploy(ctx, a, rel, env, "ps:restart with changed config", by, out)
	}
	ui.Step(out, "Restarting %s (release v%d)", app, rel.Version)
	if err := p.replace(ctx, a, rel, a.DeploySource, a.SourceMeta, out); err != nil {
		return err
	}
	p.event(ctx, app, "restart", "restarted release v%d", rel.Version)
	return nil
}

// Scale sets how many containers of each process type run and converges.
func (p *Pipeline) Scale(ctx context.Context, app string, want map[string]int, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	if err := p.CheckScale(ctx, a, want); err != nil {
		return err
	}
	formation, err := p.store.Formation(ctx, app)
	if err != nil {
		return err
	}
	maps.Copy(formation, want)
	if a.CurrentRelease != 0 && !a.Stopped {
		if err := p.converge(ctx, a, formation, out); err != nil {
			return err
		}
	}
	if err := p.store.SetFormation(ctx, app, want); err != nil {
		return err
	}
	p.event(ctx, app, "scale", "scaled to %s", FormatFormation(formation))
	return nil
}

// CheckScale refuses a scale of process types the current release does not
// define, of the release task, and of types app.json fixes.
func (p *Pipeline) CheckScale(ctx context.Context, a store.App, want map[string]int) error {
	app := a.Name
	for proc := range want {
		if proc == ReleaseProcess {
			return errors.New("the release process runs once per deploy; it cannot be scaled")
		}
	}
	if a.CurrentRelease == 0 {
		return nil
	}
	rel, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	aj, err := AppJSONOf(rel)
	if err != nil {
		return err
	}
	for proc := range want {
		if f, ok := aj.Formation[proc]; ok && f.Quantity != nil {
			return fmt.Errorf("the app.json of %s sets the formation of %s: change it there", app, proc)
		}
		if _, ok := rel.Processes[proc]; !ok {
			return fmt.Errorf("process type %s is not defined by release v%d of %s (it defines: %s)", proc, rel.Version, app, strings.Join(ui.SortedKeys(rel.Processes), ", "))
		}
	}
	return nil
}

// FormatFormation renders a formation as "web=2 worker=1".
func FormatFormation(f map[string]int) string {
	parts := make([]string, 0, len(f))
	for _, k := range ui.SortedKeys(f) {
		parts = append(parts, k+"="+strconv.Itoa(f[k]))
	}
	return strings.Join(parts, " ")
}

// Stop stops every container of app; its hosts answer 502 until ps:start.
func (p *Pipeline) Stop(ctx context.Context, app string, out io.Writer) error {
	_, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	p.waitRetired(app)
	if err := p.store.SetStopped(ctx, app, true); err != nil {
		return err
	}
	if err := p.setRoutes(ctx, app, nil); err != nil {
		return err
	}
	cs, err := p.sched.List(ctx, app)
	if err != nil {
		return err
	}
	policy, err := p.Policy(ctx, app)
	if err != nil {
		return err
	}
	ui.Step(out, "Stopping %s", app)
	for _, c := range cs {
		if c.Running() {
			if err := p.sched.Stop(ctx, c.ID, policy.StopTimeout); err != nil {
				return err
			}
			ui.Detail(out, "stopped %s", c.Name)
		}
	}
	p.event(ctx, app, "stop", "stopped")
	return p.fire(ctx, out, "post-stop", app)
}

// Start starts a stopped app (or any missing container of a running one).
func (p *Pipeline) Start(ctx context.Context, app string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	if _, err := p.currentRelease(ctx, a); err != nil {
		return err
	}
	formation, err := p.store.Formation(ctx, app)
	if err != nil {
		return err
	}
	a.Stopped = false
	if err := p.fire(ctx, out, "pre-start", app); err != nil {
		return err
	}
	ui.Step(out, "Starting %s", app)
	if err := p.converge(ctx, a, formation, out); err != nil {
		return err
	}
	if err := p.store.SetStopped(ctx, app, false); err != nil {
		return err
	}
	p.event(ctx, app, "start", "started")
	return nil
}

// converge makes what runs for app match its current release and formation:
// containers of other releases, duplicates and extras go (web ones drained
// first), stopped ones start, missing ones are created; then routes follow.
func (p *Pipeline) converge(ctx context.Context, a store.App, formation map[string]int, out io.Writer) error {
	app := a.Name
	p.waitRetired(app)
	cs, err := p.sched.List(ctx, app)
	if err != nil {
		return err
	}
	if a.CurrentRelease == 0 {
		p.removeAll(ctx, cs, 0)
		return p.setRoutes(ctx, app, nil)
	}
	rel, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	type slot struct {
		proc string
		idx  int
	}
	keep := map[slot]scheduler.Container{}
	var extra []scheduler.Container
	better := func(c, than scheduler.Container) bool {
		if c.Running() != than.Running() {
			return c.Running()
		}
		return c.Name == scheduler.CanonicalName(app, c.Process, c.Index) && than.Name != c.Name
	}
	for _, c := range cs {
		_, defined := rel.Processes[c.Process]
		if c.Release != rel.Version || !defined || c.Index < 1 || c.Index > formation[c.Process] {
			extra = append(extra, c)
			continue
		}
		s := slot{c.Process, c.Index}
		if prev, ok := keep[s]; ok {
			if better(c, prev) {
				extra = append(extra, prev)
				keep[s] = c
			} else {
				extra = append(extra, c)
			}
			continue
		}
		keep[s] = c
	}
	policy, err := p.Policy(ctx, app)
	if err != nil {
		return err
	}
	if a.Stopped {
		if err := p.setRoutes(ctx, app, nil); err != nil {
			return err
		}
		p.removeAll(ctx, extra, policy.StopTimeout)
		return nil
	}
	var fresh, running []scheduler.Container
	var created []scheduler.Container
	taken := map[string]bool{}
	for _, c := range cs {
		taken[c.Name] = true
	}
	for _, proc := range processOrder(rel, formation) {
		for i := 1; i <= formation[proc]; i++ {
			c, ok := keep[slot{proc, i}]
			switch {
			case ok && c.Running():
				running = append(running, c)
			case ok:
				if err := p.sched.StartExisting(ctx, c.ID); err != nil {
					return err
				}
				ui.Detail(out, "started %s", c.Name)
				fresh = append(fresh, c)
			default:
				s, err := p.processSpec(ctx, rel, proc, i)
				if err != nil {
					return err
				}
				if name := scheduler.CanonicalName(app, proc, i); taken[name] {
					s.Name = name + "." + newToken()[:8]
				}
				c, err := p.sched.Start(ctx, s)
				if err != nil {
					p.removeAll(context.WithoutCancel(ctx), created, 0)
					return err
				}
				ui.Detail(out, "created %s", c.Name)
				created = append(created, c)
				fresh = append(fresh, c)
			}
		}
	}
	healthy, err := p.waitHealthy(ctx, fresh, rel, policy, out)
	if err != nil {
		p.removeAll(context.WithoutCancel(ctx), created, 0)
		return err
	}
	// Running containers need their current IPs for routing.
	for i, c := range running {
		st, err := p.sched.Inspect(ctx, c.ID)
		if err != nil {
			return err
		}
		running[i].IP = st.IP
	}
	live := append(running, healthy...)
	if err := p.setRoutes(ctx, app, live); err != nil {
		return err
	}
	if len(extra) > 0 {
		names := make([]string, 0, len(extra))
		for _, c := range extra {
			names = append(names, fmt.Sprintf("%s (v%d, %s)", c.Name, c.Release, c.State))
		}
		p.log.Info("removing containers that do not belong to the current release or formation", "app", app, "containers", names)
		p.retire(ctx, extra, policy, out)
	}
	p.canonicalise(ctx, live)
	return nil
}

// RefreshRoutes re-reads which web containers of app's current release run
// and routes its hosts to them. With wait false it does nothing when an
// operation holds the app's lock (that operation sets routes itself).
func (p *Pipeline) RefreshRoutes(ctx context.Context, app string, wait bool) error {
	if wait {
		release, _, err := p.locks.acquire(ctx, app, "", nil)
		if err != nil {
			return err
		}
		defer release()
	} else {
		release, ok := p.locks.tryAcquire(app)
		if !ok {
			// An operation holds the app: look again once it is done
			// (a container may have died during a long build).
			p.pendingRefresh.Store(app, true)
			return nil
		}
		defer release()
	}
	return p.RefreshRoutesLocked(ctx, app)
}

// RefreshRoutesLocked is RefreshRoutes for a caller holding app's lock.
func (p *Pipeline) RefreshRoutesLocked(ctx context.Context, app string) error {
	a, err := p.store.App(ctx, app)
	if errors.Is(err, store.ErrNotFound) {
		p.router.Remove(app)
		p.closePorts(app)
		return nil
	}
	if err != nil {
		return err
	}
	if a.Stopped || a.CurrentRelease == 0 {
		return p.setRoutes(ctx, app, nil)
	}
	cs, err := p.sched.List(ctx, app)
	if err != nil {
		return err
	}
	var live []scheduler.Container
	for _, c := range cs {
		if c.Release == a.CurrentRelease && c.Running() && !p.isRetiring(c.ID) {
			live = append(live, c)
		}
	}
	return p.setRoutes(ctx, app, live)
}

// Destroy removes an app: its routes, containers, images, repository and
// every stored row.
func (p *Pipeline) Destroy(ctx context.Context, app string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	p.waitRetired(app)
	tag := ImageRepo(app) + ":latest"
	if a.CurrentRelease > 0 {
		tag = ImageTag(app, a.CurrentRelease)
	}
	if err := p.fire(ctx, out, "pre-delete", app, tag); err != nil {
		return err
	}
	ui.Step(out, "Destroying %s", app)
	p.router.Remove(app)
	p.closePorts(app)
	cs, err := p.sched.List(ctx, app)
	if err != nil {
		return err
	}
	p.removeAll(ctx, cs, 0)
	p.unscheduleCron(app) // no new cron run starts for a gone app
	if err := p.sched.RemoveOneOffs(ctx, app); err != nil {
		p.log.Warn("remove one-off containers", "app", app, "err", err)
	}
	p.removeImages(ctx, app)
	if err := os.RemoveAll(p.RepoPath(app)); err != nil {
		return fmt.Errorf("remove repository of %s: %w", app, err)
	}
	if err := os.RemoveAll(p.CacheDir(app)); err != nil {
		return fmt.Errorf("remove the build cache of %s: %w", app, err)
	}
	if err := p.store.DeleteApp(ctx, app); err != nil {
		return err
	}
	p.log.Info("app destroyed", "app", app)
	p.SyncCron(ctx, app)
	return p.fire(ctx, out, "post-delete", app, tag)
}

// Rename renames an app. Its current release is started under the new name
// first (health-checked); only then do the stored state, repository, image
// tags and routes move, and the old containers are drained and removed. If
// the new containers fail, nothing has changed.
func (p *Pipeline) Rename(ctx context.Context, from, to string, out io.Writer) error {
	// Both locks, always in name order: rename a b and rename b a at once
	// must not wait on each other.
	first, second := from, to
	if second < first {
		first, second = second, first
	}
	releaseFrom, _, err := p.locks.acquire(ctx, first, "", out)
	if err != nil {
		return err
	}
	defer releaseFrom()
	releaseTo, _, err := p.locks.acquire(ctx, second, "", out)
	if err != nil {
		return err
	}
	defer releaseTo()
	a, err := p.store.App(ctx, from)
	if err != nil {
		return err
	}
	if _, err := p.store.App(ctx, to); err == nil {
		return store.ErrExists
	}
	p.waitRetired(from)
	old, err := p.sched.List(ctx, from)
	if err != nil {
		return err
	}
	rels, err := p.store.Releases(ctx, from)
	if err != nil {
		return err
	}
	ui.Step(out, "Renaming %s to %s", from, to)
	var newTags []string
	undoTags := func() {
		for _, t := range newTags {
			p.docker.ImageRemove(context.WithoutCancel(ctx), t, image.RemoveOptions{})
		}
	}
	for _, r := range rels {
		if _, err := p.docker.ImageInspect(ctx, ImageTag(from, r.Version)); err != nil {
			continue // pruned
		}
		if err := p.docker.ImageTag(ctx, ImageTag(from, r.Version), ImageTag(to, r.Version)); err != nil {
			undoTags()
			return fmt.Errorf("tag image of release v%d: %w", r.Version, err)
		}
		newTags = append(newTags, ImageTag(to, r.Version))
	}
	var healthy []scheduler.Container
	policy, err := p.Policy(ctx, from)
	if err != nil {
		undoTags()
		return err
	}
	if a.CurrentRelease != 0 && !a.Stopped {
		rel, err := p.currentRelease(ctx, a)
		if err != nil {
			undoTags()
			return err
		}
		formation, err := p.store.Formation(ctx, from)
		if err != nil {
			undoTags()
			return err
		}
		// The new containers keep the port mappings' $PORT (the
		// mappings move to the new name with the rest of the app).
		if rel, err = p.withMappedPort(ctx, rel); err != nil {
			undoTags()
			return err
		}
		rel.App = to
		var started []scheduler.Container
		fail := func(err error) error {
			p.removeAll(context.WithoutCancel(ctx), started, 0)
			undoTags()
			return err
		}
		for _, proc := range processOrder(rel, formation) {
			ui.Step(out, "Starting %s (count=%d) as %s", proc, formation[proc], to)
			for i := 1; i <= formation[proc]; i++ {
				s, err := p.processSpec(ctx, rel, proc, i)
				if err != nil {
					return fail(err)
				}
				c, err := p.sched.Start(ctx, s)
				if err != nil {
					return fail(err)
				}
				started = append(started, c)
			}
		}
		if healthy, err = p.waitHealthy(ctx, started, rel, policy, out); err != nil {
			return fail(err)
		}
	}
	if err := p.store.RenameApp(ctx, from, to); err != nil {
		p.removeAll(context.WithoutCancel(ctx), healthy, 0)
		undoTags()
		return err
	}
	for _, dirs := range [][2]string{{p.RepoPath(from), p.RepoPath(to)}, {p.CacheDir(from), p.CacheDir(to)}} {
		if _, err := os.Stat(dirs[0]); err == nil {
			if err := os.Rename(dirs[0], dirs[1]); err != nil {
				p.log.Error("move app directory after rename", "from", dirs[0], "to", dirs[1], "err", err)
				ui.Warn(out, "could not move %s: %v", dirs[0], err)
			}
		}
	}
	if err := p.setRoutes(ctx, to, healthy); err != nil {
		return err
	}
	p.router.Remove(from)
	p.retire(ctx, old, policy, out)
	for _, r := range rels {
		if _, err := p.docker.ImageRemove(ctx, ImageTag(from, r.Version), image.RemoveOptions{}); err != nil && !scheduler.IsNotFound(err) {
			p.log.Warn("remove old image tag", "tag", ImageTag(from, r.Version), "err", err)
		}
	}
	p.event(ctx, to, "rename", "renamed from %s", from)
	p.SyncCron(ctx, from)
	p.SyncCron(ctx, to)
	if err := p.fire(ctx, out, "post-app-rename", from, to); err != nil {
		ui.Warn(out, "post-app-rename: %v", err)
	}
	return nil
}

// Reconcile runs when the server starts: releases left deploying by a crash
// are marked failed, containers of unknown apps and of non-current releases
// are removed, containers of current releases are adopted (and missing ones
// started), and every app is routed.
func (p *Pipeline) Reconcile(ctx context.Context) error {
	if err := p.sched.EnsureNetwork(ctx); err != nil {
		return err
	}
	stale, err := p.store.ReleasesWithStatus(ctx, store.ReleaseDeploying)
	if err != nil {
		return err
	}
	for _, r := range stale {
		p.log.Warn("release left unfinished by a previous run", "app", r.App, "release", r.Version)
		p.failRelease(ctx, r, errors.New("the server stopped during the deploy"))
	}
	if err := p.store.FailRunningBuilds(ctx); err != nil {
		return err
	}
	apps, err := p.store.Apps(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, a := range apps {
		known[a.Name] = true
	}
	all, err := p.sched.List(ctx, "")
	if err != nil {
		return err
	}
	var orphans []scheduler.Container
	for _, c := range all {
		if !known[c.App] {
			orphans = append(orphans, c)
		}
	}
	if len(orphans) > 0 {
		p.log.Info("removing containers of unknown apps", "count", len(orphans))
		p.removeAll(ctx, orphans, 0)
	}
	for _, a := range apps {
		formation, err := p.store.Formation(ctx, a.Name)
		if err != nil {
			return err
		}
		release, _, err := p.locks.acquire(ctx, a.Name, "", nil)
		if err != nil {
			return err
		}
		err = p.converge(ctx, a, formation, io.Discard)
		release()
		if err != nil {
			p.log.Error("reconcile app", "app", a.Name, "err", err)
			continue
		}
		p.log.Info("app reconciled", "app", a.Name, "release", a.CurrentRelease, "stopped", a.Stopped)
	}
	return nil
}

// webAddr is the proxy target of a web container.
func webAddr(c scheduler.Container) string {
	return net.JoinHostPort(c.IP, strconv.Itoa(c.Port))
}
