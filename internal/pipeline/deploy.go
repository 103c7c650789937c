package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"
	shellwords "github.com/mattn/go-shellwords"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/checks"
	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/procfile"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// GitDeploy asks for a deploy of a pushed revision.
type GitDeploy struct {
	App string
	Rev string
	// GitEnv carries the quarantine variables of the push in progress.
	GitEnv []string
	// LockToken is the token of the push holding the app's lock, if any.
	LockToken string
	// By names who pushed (an SSH key name).
	By string
}

// DeployGit builds the pushed revision of an app, releases it and deploys
// it, streaming every step to out.
func (p *Pipeline) DeployGit(ctx context.Context, d GitDeploy, out io.Writer) error {
	release, _, err := p.locks.acquire(ctx, d.App, d.LockToken, out)
	if err != nil {
		return err
	}
	defer release()
	return p.deployRev(withPhases(ctx, "receive"), d.App, d.Rev, d.GitEnv, "git push", d.By, out)
}

// Rebuild rebuilds the git revision of app's current release and deploys it.
func (p *Pipeline) Rebuild(ctx context.Context, app, by string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	rel, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	if rel.GitRev == "" {
		return fmt.Errorf("app %s has no git deploy to rebuild: push it first", app)
	}
	return p.deployRev(withPhases(ctx, "receive"), app, rel.GitRev, nil, "ps:rebuild", by, out)
}

func (p *Pipeline) deployRev(ctx context.Context, app, rev string, gitEnv []string, reason, by string, out io.Writer) error {
	a, err := p.store.App(ctx, app)
	if err != nil {
		return fmt.Errorf("app %s: %w", app, err)
	}
	p.event(ctx, app, "deploy", "%s of %s started by %s", reason, short(rev), by)
	if err := p.fire(ctx, out, "receive-app", app, rev); err != nil {
		return err
	}
	tmp, err := p.tmpDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(tmp, app+"-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := p.extract(ctx, app, rev, gitEnv, dir); err != nil {
		return err
	}
	if err := p.fire(ctx, out, "post-extract", app, dir, rev); err != nil {
		return err
	}
	err = p.buildAndDeploy(ctx, a, source{dir: dir, rev: rev, kind: "git", meta: rev}, reason, by, out)
	if err != nil {
		p.event(ctx, app, "deploy-failed", "%s of %s failed: %v", reason, short(rev), err)
	}
	return err
}

// nonRelease returns the process types other than the release task.
func nonRelease(procs map[string]string) []string {
	var out []string
	for p := range procs {
		if p != ReleaseProcess {
			out = append(out, p)
		}
	}
	return out
}

// ReleaseProcess is the Procfile entry run once per release before the
// switch; it never runs as a long-lived container.
const ReleaseProcess = "release"

// readAppJSON reads an app.json and a legacy CHECKS file; CHECKS becomes the
// web checks when app.json defines none.
func readAppJSON(dir, rel string, out io.Writer) (*appjson.AppJSON, error) {
	aj := &appjson.AppJSON{}
	data, err := readTreeFile(dir, rel)
	switch {
	case err == nil:
		if aj, err = appjson.Parse(data); err != nil {
			return nil, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read app.json: %w", err)
	}
	data, err = readTreeFile(dir, "CHECKS")
	switch {
	case err == nil:
		checks, err := appjson.ParseChecks(data)
		if err != nil {
			return nil, err
		}
		if len(aj.Healthchecks["web"]) > 0 {
			ui.Warn(out, "Deprecated: the CHECKS file is ignored because app.json defines healthchecks for web")
			break
		}
		ui.Warn(out, "Deprecated: the CHECKS file still works but will go away; move its checks to app.json healthchecks.web")
		if aj.Healthchecks == nil {
			aj.Healthchecks = map[string][]appjson.Check{}
		}
		aj.Healthchecks["web"] = checks
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read CHECKS: %w", err)
	}
	return aj, nil
}

// applyAppJSONEnv sets the app.json env defaults that the app's config lacks
// (generated secrets included); a required variable without a value fails.
func (p *Pipeline) applyAppJSONEnv(ctx context.Context, a store.App, aj *appjson.AppJSON, out io.Writer) error {
	if len(aj.Env) == 0 {
		return nil
	}
	cur, err := p.store.MergedConfig(ctx, a.Name)
	if err != nil {
		return err
	}
	set := map[string]string{}
	for _, k := range ui.SortedKeys(aj.Env) {
		v := aj.Env[k]
		if _, ok := cur[k]; ok {
			continue
		}
		switch {
		case v.Generator == "secret":
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return fmt.Errorf("generate %s: %w", k, err)
			}
			set[k] = hex.EncodeToString(b)
		case v.Value != "":
			set[k] = v.Value
		case v.Required == nil || *v.Required:
			return fmt.Errorf("app.json requires config var %s: set it with config:set %s %s=…", k, a.Name, k)
		}
	}
	if len(set) == 0 {
		return nil
	}
	if err := p.store.UpdateConfig(ctx, a.Name, set, nil, false); err != nil {
		return err
	}
	ui.Step(out, "Setting default config vars (app.json, buildpacks): %s", strings.Join(ui.SortedKeys(set), ", "))
	return nil
}

func readProcfile(dir, rel string) (map[string]string, bool, error) {
	data, err := readTreeFile(dir, rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read Procfile: %w", err)
	}
	procs, err := procfile.Parse(data)
	if err != nil {
		return nil, false, err
	}
	if len(procs) == 0 {
		return nil, false, errors.New("the Procfile defines no process type")
	}
	return procs, true, nil
}

// checkCommands makes sure every process command splits into words.
func checkCommands(procs map[string]string, env map[string]string) error {
	for name, cmd := range procs {
		if cmd == "" {
			continue
		}
		if _, err := splitCommand(cmd, env); err != nil {
			return fmt.Errorf("Procfile process %s: %w", name, err)
		}
	}
	return nil
}

// splitCommand turns a Procfile command into argv, expanding $VARS from env
// (no shell runs: images built FROM scratch have none).
func splitCommand(cmd string, env map[string]string) ([]string, error) {
	parser := shellwords.NewParser()
	parser.ParseEnv = true
	parser.Getenv = func(k string) string { return env[k] }
	args, err := parser.Parse(cmd)
	if err != nil {
		return nil, fmt.Errorf("cannot split command %q: %w", cmd, err)
	}
	if parser.Position >= 0 {
		return nil, fmt.Errorf("command %q uses shell syntax (;, &&, |, redirection) but runs without a shell: write /bin/sh -c '…' if the image has a shell", cmd)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("command %q is empty", cmd)
	}
	return args, nil
}

// formationFor returns the formation of app for the given process types:
// app.json formation quantities win; a type seen for the first time gets
// web=1, others 0. The release task never gets containers.
func (p *Pipeline) formationFor(ctx context.Context, app string, procs map[string]string, aj *appjson.AppJSON) (map[string]int, error) {
	cur, err := p.store.Formation(ctx, app)
	if err != nil {
		return nil, err
	}
	add := map[string]int{}
	f := map[string]int{}
	for name := range procs {
		if name == ReleaseProcess {
			continue
		}
		q, ok := cur[name]
		if fe, set := aj.Formation[name]; set && fe.Quantity != nil {
			if !ok || q != *fe.Quantity {
				add[name] = *fe.Quantity
			}
			q = *fe.Quantity
		} else if !ok {
			q = 0
			if name == "web" {
				q = 1
			}
			add[name] = q
		}
		f[name] = q
	}
	if len(add) > 0 {
		if err := p.store.SetFormation(ctx, app, add); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (p *Pipeline) failRelease(ctx context.Context, rel store.Release, cause error) {
	if err := p.store.FinishRelease(context.WithoutCancel(ctx), rel.App, rel.Version, store.ReleaseFailed, cause.Error()); err != nil {
		p.log.Warn("record failed release", "app", rel.App, "release", rel.Version, "err", err)
	}
}

// deploy runs a stored release: pre-deploy, the predeploy script and the
// Procfile release task, containers, checks, switch, postdeploy script,
// post-deploy trigger, image cleanup.
func (p *Pipeline) deploy(ctx context.Context, a store.App, rel store.Release, source, meta string, out io.Writer) (err error) {
	app := a.Name
	promoted := false
	defer func() {
		if err != nil && !promoted {
			p.failRelease(ctx, rel, err)
		}
	}()
	aj, err := AppJSONOf(rel)
	if err != nil {
		return err
	}
	tag := ImageTag(app, rel.Version)
	if err := p.fire(ctx, out, "pre-deploy", app, tag); err != nil {
		return err
	}
	if script := aj.Scripts.Dokku.Predeploy; script != "" {
		ui.Step(out, "Running predeploy task: %s", script)
		if err := p.runTask(ctx, rel, "predeploy", script, out); err != nil {
			return err
		}
	}
	if cmd := rel.Processes[ReleaseProcess]; cmd != "" {
		ui.Step(out, "Running release task from Procfile: %s", cmd)
		if err := p.runTask(ctx, rel, ReleaseProcess, cmd, out); err != nil {
			return err
		}
	}
	phase(ctx, "start")
	ui.Step(out, "Deploying %s (release v%d) via the docker-local scheduler...", app, rel.Version)
	if err := p.replace(ctx, a, rel, source, meta, out); err != nil {
		return err
	}
	promoted = true
	phase(ctx, "post-deploy")
	p.event(ctx, app, "release", "release v%d deployed (%s)", rel.Version, rel.Reason)
	p.SyncCron(ctx, app)
	if script := aj.Scripts.Dokku.Postdeploy; script != "" {
		ui.Step(out, "Running postdeploy task: %s", script)
		if err := p.runTask(ctx, rel, "postdeploy", script, out); err != nil {
			// The release already serves: the deploy stands, the failure
			// is reported and recorded.
			ui.Warn(out, "%v (release v%d is serving)", err, rel.Version)
			p.event(ctx, app, "postdeploy-failed", "postdeploy of v%d failed: %v", rel.Version, err)
		}
	}
	port, ip := strconv.Itoa(releasePort(rel)), ""
	if cs, err := p.sched.List(ctx, app); err == nil {
		for _, c := range cs {
			if c.Process == "web" && c.Release == rel.Version && c.Running() {
				ip, port = c.IP, strconv.Itoa(c.Port)
				break
			}
		}
	}
	if err := p.fire(ctx, out, "post-deploy", app, port, ip, tag); err != nil {
		ui.Warn(out, "post-deploy: %v", err)
	}
	p.pruneImages(ctx, app, out)
	urls, err := p.URLs(ctx, app)
	if err != nil {
		return err
	}
	if took := phaseSummary(ctx); took != "" {
		ui.Step(out, "Deployed in %s", took)
	}
	_, hasWeb := rel.Processes["web"]
	switch {
	case !hasWeb || rel.Formation["web"] == 0:
		ui.Section(out, "Application deployed (no web process runs, so no URL)")
	case len(urls) == 0:
		ui.Section(out, "Application deployed (it has no domain yet: add one with domains:add)")
	default:
		ui.Section(out, "Application deployed:")
		for _, u := range urls {
			ui.Detail(out, "%s", u)
		}
	}
	return nil
}

// runTask runs a deploy task (predeploy, postdeploy, the release process)
// in a one-off container of rel and fails when it exits non-zero. With a
// shell in the image the task runs through /bin/sh -c; without one (images
// FROM scratch) it is split into words like a Procfile command.
func (p *Pipeline) runTask(ctx context.Context, rel store.Release, kind, script string, out io.Writer) error {
	cmd, err := p.taskCommand(ctx, rel, script)
	if err != nil {
		return fmt.Errorf("%s task: %w", kind, err)
	}
	s, err := p.spec(rel, kind, 1)
	if err != nil {
		return err
	}
	opts, err := p.dockerOptions(ctx, rel.App, dockeropts.Run, rel.App, s.Image)
	if err != nil {
		return err
	}
	iw := ui.NewIndentWriter(out, ui.Indentation)
	code, _, err := p.sched.RunOneOff(ctx, scheduler.OneOff{App: rel.App, Release: rel.Version, Image: s.Image, Kind: kind, Cmd: cmd, Env: s.Env, Options: opts}, iw, iw)
	iw.Flush()
	if err != nil {
		return fmt.Errorf("%s task: %w", kind, err)
	}
	if code != 0 {
		return fmt.Errorf("%s task %q exited with code %d", kind, script, code)
	}
	return nil
}

// taskCommand turns a task's command line into argv for rel's image.
func (p *Pipeline) taskCommand(ctx context.Context, rel store.Release, script string) ([]string, error) {
	shell, err := p.sched.HasShell(ctx, ImageTag(rel.App, rel.Version))
	if err != nil {
		return nil, err
	}
	if shell {
		return []string{"/bin/sh", "-c", script}, nil
	}
	return splitCommand(script, rel.Env)
}

// releasePort is the port web containers of rel listen on.
func releasePort(rel store.Release) int {
	if v, ok := rel.Env["PORT"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65536 {
			return n
		}
	}
	return DefaultPort
}

// spec builds the container spec for one process instance of rel.
func (p *Pipeline) spec(rel store.Release, process string, index int) (scheduler.Spec, error) {
	port := releasePort(rel)
	env := maps.Clone(rel.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["PORT"] = strconv.Itoa(port)
	env["APP_NAME"] = rel.App
	env["GIT_REV"] = rel.GitRev
	env["BERTH_APP"] = rel.App
	env["BERTH_RELEASE"] = "v" + strconv.Itoa(rel.Version)
	env["BERTH_PROCESS_TYPE"] = process
	env["BERTH_PROCESS_INDEX"] = strconv.Itoa(index)
	env["DYNO"] = process + "." + strconv.Itoa(index)
	var cmd []string
	if c := rel.Processes[process]; c != "" {
		if rel.Builder == BuilderHerokuish {
			// As on Heroku: the image's launcher sources .profile.d, then
			// bash runs the Procfile command.
			cmd = []string{"/bin/bash", "-c", c}
		} else {
			var err error
			if cmd, err = splitCommand(c, env); err != nil {
				return scheduler.Spec{}, fmt.Errorf("process %s: %w", process, err)
			}
		}
	}
	list := make([]string, 0, len(env))
	for _, k := range ui.SortedKeys(env) {
		list = append(list, k+"="+env[k])
	}
	return scheduler.Spec{
		App: rel.App, Release: rel.Version, Image: ImageTag(rel.App, rel.Version),
		Process: process, Index: index, Cmd: cmd, Env: list, Port: port,
	}, nil
}

// processOrder lists the process types of formation to run, web first.
func processOrder(rel store.Release, formation map[string]int) []string {
	var names []string
	for name, q := range formation {
		if _, ok := rel.Processes[name]; ok && q > 0 {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "web") != (names[j] == "web") {
			return names[i] == "web"
		}
		return names[i] < names[j]
	})
	return names
}

// replace starts rel's containers beside the running ones, waits until they
// pass their checks, records rel as current, switches traffic to them and
// retires the old containers. On failure the new containers are removed and
// the old ones keep serving untouched. Processes whose checks are disabled
// are deployed stop-then-start instead (with downtime, as in Dokku).
func (p *Pipeline) replace(ctx context.Context, a store.App, rel store.Release, source, meta string, out io.Writer) error {
	app := a.Name
	p.waitRetired(app)
	old, err := p.sched.List(ctx, app)
	if err != nil {
		return err
	}
	formation, err := p.store.Formation(ctx, app)
	if err != nil {
		return err
	}
	policy, err := p.Policy(ctx, app)
	if err != nil {
		return err
	}
	// Stop-then-start: take old containers of processes with checks
	// disabled out of service first.
	var keep, stopped []scheduler.Container
	for _, c := range old {
		if policy.IsDisabled(c.Process) && c.Running() {
			stopped = append(stopped, c)
		} else {
			keep = append(keep, c)
		}
	}
	if len(stopped) > 0 {
		ui.Step(out, "Checks are disabled for %s: stopping the old containers first (downtime)", strings.Join(processesOf(stopped), ", "))
		if err := p.setRoutes(ctx, app, running(keep, "web")); err != nil {
			return err
		}
		for _, c := range stopped {
			if err := p.sched.Stop(ctx, c.ID, policy.StopTimeout); err != nil {
				return err
			}
		}
	}
	restoreStopped := func() {
		bg := context.WithoutCancel(ctx)
		for _, c := range stopped {
			if err := p.sched.StartExisting(bg, c.ID); err != nil {
				p.log.Warn("restart old container", "container", c.Name, "err", err)
			}
		}
		if len(stopped) > 0 {
			p.RefreshRoutesLocked(bg, app)
		}
	}
	taken := map[string]bool{}
	for _, c := range old {
		taken[c.Name] = true
	}
	var started []scheduler.Container
	cleanup := func() {
		if len(started) > 0 {
			ui.Detail(out, "Removing the containers of release v%d", rel.Version)
			p.removeAll(context.WithoutCancel(ctx), started, 0)
		}
		restoreStopped()
	}
	for _, proc := range processOrder(rel, formation) {
		q := formation[proc]
		ui.Step(out, "Starting %s (count=%d)", proc, q)
		for i := 1; i <= q; i++ {
			s, err := p.processSpec(ctx, rel, proc, i)
			if err != nil {
				cleanup()
				return err
			}
			if name := scheduler.CanonicalName(app, proc, i); taken[name] {
				s.Name = name + "." + newToken()[:8]
			}
			c, err := p.sched.Start(ctx, s)
			if err != nil {
				cleanup()
				return err
			}
			started = append(started, c)
		}
	}
	phase(ctx, "checks")
	healthy, err := p.waitHealthy(ctx, started, rel, policy, out)
	if err != nil {
		cleanup()
		return err
	}
	phase(ctx, "switch")
	if err := p.store.PromoteRelease(ctx, app, rel.Version, source, meta); err != nil {
		cleanup()
		return err
	}
	// The release is current now: what follows must finish even if the
	// caller goes away, and a failure is reported without undoing it.
	bg := context.WithoutCancel(ctx)
	if a.Stopped {
		if err := p.store.SetStopped(bg, app, false); err != nil {
			p.log.Error("record the app as started", "app", app, "err", err)
		}
	}
	if err := p.setRoutes(bg, app, healthy); err != nil {
		p.log.Error("route the new release", "app", app, "release", rel.Version, "err", err)
	}
	// The new containers take their canonical names now; the old ones,
	// still draining, move aside.
	retiring := append(keep, stopped...)
	for i, c := range retiring {
		if c.Name == scheduler.CanonicalName(c.App, c.Process, c.Index) {
			name := c.Name + ".retiring-" + newToken()[:6]
			if err := p.sched.Rename(bg, c.ID, name); err != nil {
				p.log.Warn("rename retiring container", "container", c.Name, "err", err)
				continue
			}
			retiring[i].Name = name
		}
	}
	p.canonicalise(bg, healthy)
	p.retireLater(ctx, app, retiring, policy, out, func() {})
	return nil
}

// running returns the running containers of process among cs.
func running(cs []scheduler.Container, process string) []scheduler.Container {
	var out []scheduler.Container
	for _, c := range cs {
		if c.Process == process && c.Running() {
			out = append(out, c)
		}
	}
	return out
}

func processesOf(cs []scheduler.Container) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cs {
		if !seen[c.Process] {
			seen[c.Process] = true
			out = append(out, c.Process)
		}
	}
	sort.Strings(out)
	return out
}

// setRoutes points app's hosts at the web containers among cs.
func (p *Pipeline) setRoutes(ctx context.Context, app string, cs []scheduler.Container) error {
	hosts, err := p.Hosts(ctx, app)
	if err != nil {
		return err
	}
	ms, hosts, err := p.portRouting(ctx, app, hosts)
	if err != nil {
		return err
	}
	var targets []string
	for _, c := range cs {
		if c.Process == "web" && c.IP != "" {
			targets = append(targets, webAddr(c))
		}
	}
	p.router.Set(app, hosts, targets)
	p.routePorts(app, ms, cs)
	return nil
}

// waitHealthy runs the deploy checks of rel on every container in cs, in
// parallel, and returns cs with their IPs. The first failure cancels the
// others; its container's last output is shown.
func (p *Pipeline) waitHealthy(ctx context.Context, cs []scheduler.Container, rel store.Release, policy CheckPolicy, out io.Writer) ([]scheduler.Container, error) {
	aj, err := AppJSONOf(rel)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runner := checks.NewRunner(p.sched)
	result := make([]scheduler.Container, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		ui.Detail(out, format, args...)
		mu.Unlock()
	}
	for i, c := range cs {
		list := checks.Deploy(aj.Healthchecks[c.Process])
		if policy.IsSkipped(c.Process) || policy.IsDisabled(c.Process) {
			list = []appjson.Check{{Name: "running (checks skipped)", Uptime: 1}}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := checks.Target{ID: c.ID, Process: c.Process, Index: c.Index, Port: c.Port}
			ip, err := runner.Run(ctx, t, list, policy.Settings, say)
			c.IP = ip
			if err == nil {
				// Plugins may add their own checks (Dokku's check-deploy).
				var res string
				res, err = p.triggers.Fire(ctx, "check-deploy", c.App, c.ID, c.Process, strconv.Itoa(c.Port), ip, strconv.Itoa(c.Index))
				if res != "" {
					say("%s", strings.TrimRight(res, "\n"))
				}
			}
			result[i], errs[i] = c, err
			if err != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			p.showLogs(context.WithoutCancel(ctx), cs[i], out)
			return nil, err
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for _, c := range result {
		if err := p.sched.Keep(ctx, c.ID); err != nil {
			return nil, err
		}
	}
	return result, nil
}

// showLogs prints the last lines a failed container wrote.
func (p *Pipeline) showLogs(ctx context.Context, c scheduler.Container, out io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := p.sched.Logs(ctx, c.ID, scheduler.LogOptions{Tail: 20})
	if err != nil {
		return
	}
	defer rc.Close()
	var buf strings.Builder
	stdcopy.StdCopy(&buf, &buf, rc)
	if buf.Len() == 0 {
		return
	}
	ui.Detail(out, "Last output of %s.%d:", c.Process, c.Index)
	iw := ui.NewIndentWriter(out, ui.Indentation+"  ")
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if _, msg, ok := strings.Cut(line, " "); ok {
			line = msg // drop the engine's timestamp
		}
		io.WriteString(iw, line+"\n")
	}
}

// retire takes old containers out of service: web targets are drained first
// (in-flight requests finish), then every container is stopped and removed.
func (p *Pipeline) retire(ctx context.Context, old []scheduler.Container, pol CheckPolicy, out io.Writer) {
	if len(old) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var addrs []string
	for _, c := range old {
		if c.Process == "web" && c.IP != "" {
			addrs = append(addrs, p.drainAddrs(ctx, c)...)
		}
	}
	ui.Step(out, "Retiring %d old container(s)", len(old))
	if len(addrs) > 0 {
		dctx, cancel := context.WithTimeout(ctx, pol.WaitToRetire)
		if err := p.router.Drain(dctx, addrs); err != nil {
			p.log.Warn("drain old targets", "targets", addrs, "err", err)
		}
		cancel()
	}
	p.removeAll(ctx, old, pol.StopTimeout)
}

// removeAll stops (after timeout) and removes containers in parallel.
func (p *Pipeline) removeAll(ctx context.Context, cs []scheduler.Container, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.sched.Remove(ctx, c.ID, timeout); err != nil {
				p.log.Warn("remove container", "container", c.Name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// canonicalise renames containers started under a temporary name (because
// their canonical name was taken by the container they replaced).
func (p *Pipeline) canonicalise(ctx context.Context, cs []scheduler.Container) {
	for _, c := range cs {
		want := scheduler.CanonicalName(c.App, c.Process, c.Index)
		if c.Name != want {
			if err := p.sched.Rename(context.WithoutCancel(ctx), c.ID, want); err != nil {
				p.log.Warn("rename container", "container", c.Name, "err", err)
			}
		}
	}
}

// removeImages removes every image of app (its release tags and untagged
// builds).
func (p *Pipeline) removeImages(ctx context.Context, app string) {
	ids := map[string]bool{}
	for _, key := range []string{"reference=" + ImageRepo(app), "label=" + LabelImageApp + "=" + app} {
		k, v, _ := strings.Cut(key, "=")
		f := filtersArgs(k, v)
		list, err := p.docker.ImageList(ctx, image.ListOptions{All: true, Filters: f})
		if err != nil {
			p.log.Warn("list images", "app", app, "err", err)
			continue
		}
		for _, im := range list {
			ids[im.ID] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		// Untagged parents stay: they are layer cache other apps' builds
		// may be using at this very moment.
		if _, err := p.docker.ImageRemove(ctx, id, image.RemoveOptions{Force: true}); err != nil && !scheduler.IsNotFound(err) {
			p.log.Warn("remove image", "app", app, "image", id, "err", err)
		}
	}
}
