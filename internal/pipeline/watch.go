package pipeline

import (
	"context"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/berth-paas/berth/internal/scheduler"
)

// WatchContainers follows the engine's container events and re-routes an
// app when one of its containers starts or dies outside a berth operation
// (a crash, a restart by the restart policy, a manual docker stop), so the
// proxy never keeps sending traffic to a dead target.
func (p *Pipeline) WatchContainers(ctx context.Context) {
	go p.refreshPending(ctx)
	backoff := time.Second
	for ctx.Err() == nil {
		f := filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", scheduler.LabelInstance+"="+p.sched.Instance()),
			filters.Arg("event", "start"),
			filters.Arg("event", "die"),
			filters.Arg("event", "stop"),
			filters.Arg("event", "pause"),
			filters.Arg("event", "unpause"),
		)
		msgs, errs := p.docker.Events(ctx, events.ListOptions{Filters: f})
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				backoff = time.Second
				app := m.Actor.Attributes[scheduler.LabelApp]
				if app == "" {
					continue
				}
				if err := p.RefreshRoutes(ctx, app, false); err != nil {
					p.log.Warn("refresh routes after container event", "app", app, "event", m.Action, "err", err)
				}
			case err := <-errs:
				if ctx.Err() == nil {
					p.log.Warn("docker events stream ended; reconnecting", "err", err, "in", backoff)
				}
				break loop
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		// Events may have been missed while disconnected.
		if apps, err := p.store.Apps(ctx); err == nil {
			for _, a := range apps {
				p.RefreshRoutes(ctx, a.Name, false)
			}
		}
	}
}

// refreshPending re-routes, every two seconds, the apps whose container
// events arrived while they were locked, once they are not.
func (p *Pipeline) refreshPending(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.pendingRefresh.Range(func(k, _ any) bool {
			app := k.(string)
			if p.Locked(app) {
				return true
			}
			p.pendingRefresh.Delete(app)
			if err := p.RefreshRoutes(ctx, app, false); err != nil {
				p.log.Warn("refresh routes", "app", app, "err", err)
			}
			return true
		})
	}
}
