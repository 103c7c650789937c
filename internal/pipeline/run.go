package pipeline

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
)

// RunOptions describe a one-off command.
type RunOptions struct {
	App string
	// Cmd is the command's argv; with Shell it is one shell command line.
	Cmd []string
	// Shell runs Cmd[0] through /bin/sh -c when the image has a shell
	// (cron and task commands), or splits it into words when it has none.
	Shell bool
	// Env overrides the release's env.
	Env    map[string]string
	Stdin  io.Reader
	Detach bool
	Kind   string // run (default) or cron
}

// Run runs a one-off container of app's current release and returns its
// exit code (or, detached, its container name).
func (p *Pipeline) Run(ctx context.Context, o RunOptions, stdout, stderr io.Writer) (int, string, error) {
	a, err := p.store.App(ctx, o.App)
	if err != nil {
		return 0, "", err
	}
	rel, err := p.currentRelease(ctx, a)
	if err != nil {
		return 0, "", err
	}
	for k, v := range o.Env {
		if rel.Env == nil {
			rel.Env = map[string]string{}
		}
		rel.Env[k] = v
	}
	kind := o.Kind
	if kind == "" {
		kind = "run"
	}
	cmd := o.Cmd
	if o.Shell {
		if cmd, err = p.taskCommand(ctx, rel, strings.Join(o.Cmd, " ")); err != nil {
			return 0, "", err
		}
	}
	s, err := p.spec(rel, kind, 1)
	if err != nil {
		return 0, "", err
	}
	opts, err := p.dockerOptions(ctx, o.App, dockeropts.Run, o.App, s.Image)
	if err != nil {
		return 0, "", err
	}
	return p.sched.RunOneOff(ctx, scheduler.OneOff{
		App: o.App, Release: rel.Version, Image: s.Image, Kind: kind, Cmd: cmd, Env: s.Env,
		Stdin: o.Stdin, Detach: o.Detach, Options: opts,
	}, stdout, stderr)
}

// CronJob is a scheduled command of an app.
type CronJob struct {
	App      string
	ID       string
	Schedule string
	Command  string
	Next     time.Time
}

// cronTable runs the app.json cron entries of every app's current release.
type cronTable struct {
	mu      sync.Mutex
	c       *cron.Cron
	entries map[string]map[string]cron.EntryID // app -> job id -> entry
	// ctx is the server's: a job still running at shutdown is interrupted
	// (its one-off container removed); stopped is closed once every job
	// has returned.
	ctx     context.Context
	stopped chan struct{}
}

// StartCron starts the scheduler of app.json cron entries and loads every
// app's entries; it stops when ctx is done.
func (p *Pipeline) StartCron(ctx context.Context) error {
	p.cron.c = cron.New(cron.WithParser(cronScheduleParser{}), cron.WithLocation(time.UTC))
	p.cron.entries = map[string]map[string]cron.EntryID{}
	apps, err := p.store.Apps(ctx)
	if err != nil {
		return err
	}
	for _, a := range apps {
		p.SyncCron(ctx, a.Name)
	}
	p.cron.ctx, p.cron.stopped = ctx, make(chan struct{})
	p.cron.c.Start()
	go func() {
		<-ctx.Done()
		<-p.cron.c.Stop().Done()
		close(p.cron.stopped)
	}()
	return nil
}

// WaitCron waits (at most until ctx is done) for cron jobs still running
// after the server's context ended.
func (p *Pipeline) WaitCron(ctx context.Context) {
	if p.cron.stopped == nil {
		return
	}
	select {
	case <-p.cron.stopped:
	case <-ctx.Done():
	}
}

type cronScheduleParser struct{}

func (cronScheduleParser) Parse(spec string) (cron.Schedule, error) {
	return appjson.ParseSchedule(spec)
}

// SyncCron makes the scheduled jobs of app match its current release.
func (p *Pipeline) SyncCron(ctx context.Context, app string) {
	if p.cron.c == nil {
		return
	}
	var entries []appjson.CronEntry
	a, err := p.store.App(ctx, app)
	if err == nil && a.CurrentRelease > 0 {
		if rel, err := p.store.Release(ctx, app, a.CurrentRelease); err == nil {
			if aj, err := AppJSONOf(rel); err == nil {
				entries = aj.CronEntries()
			}
		}
	}
	p.cron.mu.Lock()
	defer p.cron.mu.Unlock()
	p.unscheduleLocked(app)
	if len(entries) == 0 {
		return
	}
	ids := map[string]cron.EntryID{}
	for _, e := range entries {
		e := e
		sched, err := appjson.ParseSchedule(e.Schedule)
		if err != nil {
			continue
		}
		ids[e.ID()] = p.cron.c.Schedule(sched, cron.FuncJob(func() { p.runCron(app, e) }))
	}
	p.cron.entries[app] = ids
}

// unscheduleCron removes app's cron jobs from the schedule.
func (p *Pipeline) unscheduleCron(app string) {
	if p.cron.c == nil {
		return
	}
	p.cron.mu.Lock()
	defer p.cron.mu.Unlock()
	p.unscheduleLocked(app)
}

func (p *Pipeline) unscheduleLocked(app string) {
	for _, id := range p.cron.entries[app] {
		p.cron.c.Remove(id)
	}
	delete(p.cron.entries, app)
}

func (p *Pipeline) runCron(app string, e appjson.CronEntry) {
	ctx := p.cron.ctx
	if a, err := p.store.App(ctx, app); err != nil || a.Stopped {
		if err == nil {
			p.event(ctx, app, "cron", "cron %s (%s) skipped: the app is stopped", e.ID(), e.Command)
		}
		return
	}
	var out strings.Builder
	code, _, err := p.Run(ctx, RunOptions{App: app, Cmd: []string{e.Command}, Shell: true, Kind: "cron"}, &out, &out)
	switch {
	case err != nil:
		p.event(ctx, app, "cron", "cron %s (%s) failed to run: %v", e.ID(), e.Command, err)
	case code != 0:
		p.event(ctx, app, "cron", "cron %s (%s) exited with code %d: %s", e.ID(), e.Command, code, lastLine(out.String()))
	default:
		p.event(ctx, app, "cron", "cron %s (%s) succeeded", e.ID(), e.Command)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// CronJobs lists the scheduled jobs of app's current release.
func (p *Pipeline) CronJobs(ctx context.Context, a store.App) ([]CronJob, error) {
	if a.CurrentRelease == 0 {
		return nil, nil
	}
	rel, err := p.store.Release(ctx, a.Name, a.CurrentRelease)
	if err != nil {
		return nil, err
	}
	aj, err := AppJSONOf(rel)
	if err != nil {
		return nil, err
	}
	var out []CronJob
	for _, e := range aj.CronEntries() {
		j := CronJob{App: a.Name, ID: e.ID(), Schedule: e.Schedule, Command: e.Command}
		if s, err := appjson.ParseSchedule(e.Schedule); err == nil {
			j.Next = s.Next(time.Now().UTC())
		}
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RunCron runs one cron job of app now, streaming its output.
func (p *Pipeline) RunCron(ctx context.Context, a store.App, id string, detach bool, stdout, stderr io.Writer) (int, string, error) {
	jobs, err := p.CronJobs(ctx, a)
	if err != nil {
		return 0, "", err
	}
	for _, j := range jobs {
		if j.ID == id {
			return p.Run(ctx, RunOptions{App: a.Name, Cmd: []string{j.Command}, Shell: true, Kind: "cron", Detach: detach}, stdout, stderr)
		}
	}
	return 0, "", fmt.Errorf("app %s has no cron job %s (see cron:list %s)", a.Name, id, a.Name)
}
