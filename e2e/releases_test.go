package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const healthAppJSON = `{
  "healthchecks": {
    "web": [
      {"type": "startup", "name": "health endpoint", "path": "/health", "content": "ok", "attempts": 2, "wait": 1, "timeout": 2}
    ]
  }
}`

// A release whose check fails leaves the previous one serving and says why.
func TestFailingCheckKeepsPreviousRelease(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("chk")
	r := newRepo(t, map[string]string{"app.json": healthAppJSON})
	out := s.mustPush(r, app)
	if !strings.Contains(out, `web.1 passed check "health endpoint"`) {
		t.Errorf("push output lacks the passed check:\n%s", out)
	}
	out, code := s.berth("config:set", app, "HEALTH=fail", "MSG=two")
	if code == 0 {
		t.Fatalf("config:set with a failing check succeeded:\n%s", out)
	}
	for _, want := range []string{`failed check "health endpoint"`, "/health", "HTTP 500", "unhealthy on purpose"} {
		if !strings.Contains(out, want) {
			t.Errorf("failure output lacks %q:\n%s", want, out)
		}
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v1") {
		t.Errorf("v1 should still serve, got %q", body)
	}
	if got := containers(t, app); len(got) != 1 || got[0] != app+".web.1" {
		t.Errorf("containers after the failed release: %v", got)
	}
	var info struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	s.jsonOut(&info, "releases:info", app, "2", "--format", "json")
	if info.Status != "failed" || !strings.Contains(info.Error, "health endpoint") {
		t.Errorf("release v2 = %+v, want failed with the check's name", info)
	}
	// checks:skip lets the unhealthy release through; checks:run then fails.
	s.mustBerth("checks:skip", app)
	s.mustBerth("ps:restart", app)
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=two") {
		t.Errorf("skipped checks: %q", body)
	}
	out, code = s.berth("checks:run", app)
	if code == 0 || !strings.Contains(out, "HTTP 500") {
		t.Errorf("checks:run on an unhealthy app: exit %d\n%s", code, out)
	}
	s.mustBerth("checks:enable", app)
	var rep struct {
		Skipped []string            `json:"skipped"`
		Checks  map[string][]string `json:"checks"`
	}
	s.jsonOut(&rep, "checks:report", app, "--format", "json")
	if len(rep.Skipped) != 0 || len(rep.Checks["web"]) != 1 {
		t.Errorf("checks:report = %+v", rep)
	}
}

// The legacy CHECKS file works, with a deprecation notice.
func TestLegacyChecksFile(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("legacy")
	r := newRepo(t, map[string]string{"CHECKS": "WAIT=1\nATTEMPTS=2\n/health ok\n"})
	out := s.mustPush(r, app)
	if !strings.Contains(out, "Deprecated: the CHECKS file") || !strings.Contains(out, `passed check "check-1"`) {
		t.Errorf("push output:\n%s", out)
	}
	r.write(map[string]string{"CHECKS": "WAIT=1\nATTEMPTS=2\n/health this-is-not-in-the-body\n"})
	r.commit("bad check")
	out, code := s.push(r, app)
	if code == 0 || !strings.Contains(out, "lacks \"this-is-not-in-the-body\"") {
		t.Errorf("failing CHECKS: exit %d\n%s", code, out)
	}
}

// Rollback deploys the previous release's image and env as a new release;
// keep removes old images.
func TestRollbackAndKeep(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("rb")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("config:set", app, "MSG=one")
	s.mustBerth("config:set", app, "MSG=two")
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=two ") || !strings.Contains(body, "release=v3") {
		t.Fatalf("before rollback: %q", body)
	}
	out := s.mustBerth("releases:rollback", app)
	if !strings.Contains(out, "Rolling back "+app+" to release v2") {
		t.Errorf("rollback output:\n%s", out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=one ") || !strings.Contains(body, "release=v4") {
		t.Errorf("after rollback: %q", body)
	}
	if got := strings.TrimSpace(s.mustBerth("config:get", app, "MSG")); got != "one" {
		t.Errorf("config after rollback: MSG=%q, want one", got)
	}
	s.mustBerth("releases:rollback", app, "v1")
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg= ") {
		t.Errorf("after rollback to v1: %q", body)
	}
	var rels []struct {
		Version int    `json:"version"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Current bool   `json:"current"`
	}
	s.jsonOut(&rels, "releases:list", app, "--format", "json")
	if len(rels) != 5 || !rels[0].Current || rels[0].Reason != "rollback to v1" || rels[1].Reason != "rollback to v2" {
		t.Errorf("releases:list = %+v", rels)
	}
	list := s.mustBerth("releases:list", app)
	if !strings.Contains(list, "v5*") || !strings.Contains(list, "succeeded") {
		t.Errorf("releases:list:\n%s", list)
	}
	out, code := s.berth("releases:rollback", app, "v9")
	if code == 0 || !strings.Contains(out, "has no release v9") {
		t.Errorf("rollback to a missing release: exit %d %s", code, out)
	}

	s.mustBerth("releases:set", app, "keep", "2")
	s.mustBerth("config:set", app, "MSG=six")
	tags := docker(t, "images", "--format", "{{.Tag}}", "berth/"+app)
	if got := strings.Fields(tags); len(got) != 2 || !strings.Contains(tags, "v6") || !strings.Contains(tags, "v5") {
		t.Errorf("images kept with keep=2: %v", got)
	}
	out, code = s.berth("releases:rollback", app, "2")
	if code == 0 || !strings.Contains(out, "was removed") {
		t.Errorf("rollback to a pruned release: exit %d %s", code, out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=six") {
		t.Errorf("after a refused rollback: %q", body)
	}
}

// app.json scripts and the Procfile release task run at their stages; a
// failing one aborts the deploy.
func TestDeployTasks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("tasks")
	aj := `{"scripts": {"dokku": {"predeploy": "/fixture task-ok predeploy", "postdeploy": "/fixture task-ok postdeploy"}},
	        "env": {"FROM_APPJSON": "default", "SECRET_KEY": {"generator": "secret"}, "OPTIONAL": {"required": false}}}`
	r := newRepo(t, map[string]string{"app.json": aj, "Procfile": "web: /fixture\nrelease: /fixture task-ok release\n"})
	out := s.mustPush(r, app)
	pre := strings.Index(out, "task ran: predeploy release=v1")
	rel := strings.Index(out, "task ran: release release=v1")
	start := strings.Index(out, "Starting web")
	post := strings.Index(out, "task ran: postdeploy release=v1")
	if pre < 0 || rel < 0 || post < 0 || !(pre < rel && rel < start && start < post) {
		t.Errorf("tasks did not run in order predeploy, release, start, postdeploy:\n%s", out)
	}
	if got := s.mustGet(host(app), "/env?k=FROM_APPJSON"); got != "default" {
		t.Errorf("app.json env default: %q", got)
	}
	secret := s.mustGet(host(app), "/env?k=SECRET_KEY")
	if len(secret) != 64 {
		t.Errorf("generated secret %q", secret)
	}
	var ps struct {
		Formation map[string]int `json:"formation"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if _, ok := ps.Formation["release"]; ok {
		t.Errorf("the release task got a formation entry: %v", ps.Formation)
	}
	// The secret stays the same on the next deploy.
	r.commit("again")
	s.mustPush(r, app)
	if got := s.mustGet(host(app), "/env?k=SECRET_KEY"); got != secret {
		t.Errorf("secret changed on redeploy")
	}

	for _, tc := range []struct{ name, appJSON, procfile, want string }{
		{"predeploy", `{"scripts": {"dokku": {"predeploy": "/fixture task-fail"}}}`, "web: /fixture\n", `predeploy task "/fixture task-fail" exited with code 4`},
		{"release", `{}`, "web: /fixture\nrelease: /fixture task-fail\n", `release task "/fixture task-fail" exited with code 4`},
		{"required env", `{"env": {"MUST_SET": {"required": true}}}`, "web: /fixture\n", "requires config var MUST_SET"},
	} {
		r.write(map[string]string{"app.json": tc.appJSON, "Procfile": tc.procfile})
		r.commit(tc.name)
		out, code := s.push(r, app)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, output lacks %q:\n%s", tc.name, code, tc.want, out)
		}
		if strings.Contains(out, "Starting web") {
			t.Errorf("%s: containers started after the task failed", tc.name)
		}
		if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v2") {
			t.Errorf("%s: v2 should still serve: %q", tc.name, body)
		}
		r.git("reset", "-q", "--hard", "HEAD~1")
	}
}

// run passes exit codes and env; cron entries fire and run on demand.
func TestRunAndCron(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("run")
	aj := `{"cron": [{"command": "/fixture task-ok cron", "schedule": "@every 2s"}]}`
	r := newRepo(t, map[string]string{"app.json": aj})
	s.mustPush(r, app)
	s.mustBerth("config:set", app, "MSG=from-config")

	out, code := s.berth("run", app, "/fixture", "task-fail")
	if code != 4 || !strings.Contains(out, "task failing") {
		t.Errorf("run task-fail: exit %d, want 4\n%s", code, out)
	}
	out, code = s.ssh("", "run", app, "/fixture", "task-fail")
	if code != 4 {
		t.Errorf("run over ssh: exit %d, want 4\n%s", code, out)
	}
	if out := s.mustBerth("run", app, "/fixture", "printenv", "MSG"); strings.TrimSpace(out) != "from-config" {
		t.Errorf("run sees config: %q", out)
	}
	if out := s.mustBerth("run", "-e", "MSG=override", app, "/fixture", "printenv", "MSG"); strings.TrimSpace(out) != "override" {
		t.Errorf("run -e: %q", out)
	}
	name := strings.TrimSpace(s.mustBerth("run:detached", app, "/fixture", "worker"))
	if !strings.HasPrefix(name, app+".run.") {
		t.Errorf("run:detached printed %q", name)
	}
	docker(t, "rm", "-f", name)
	if got := containers(t, app); len(got) != 1 {
		t.Errorf("one-off containers are listed as the app's: %v", got)
	}

	var jobs []struct {
		ID       string `json:"id"`
		Schedule string `json:"schedule"`
		Command  string `json:"command"`
	}
	s.jsonOut(&jobs, "cron:list", app, "--format", "json")
	if len(jobs) != 1 || jobs[0].Schedule != "@every 2s" {
		t.Fatalf("cron:list = %+v", jobs)
	}
	out = s.mustBerth("cron:run", app, jobs[0].ID)
	if !strings.Contains(out, "task ran: cron") {
		t.Errorf("cron:run output %q", out)
	}
	eventually(t, 30*time.Second, func() error {
		var evs []struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		}
		s.jsonOut(&evs, "events", app, "--format", "json")
		for _, e := range evs {
			if e.Kind == "cron" && strings.Contains(e.Message, "succeeded") {
				return nil
			}
		}
		return fmt.Errorf("no cron run recorded in events: %+v", evs)
	})
	out, code = s.berth("cron:run", app, "nosuchid")
	if code == 0 || !strings.Contains(out, "no cron job nosuchid") {
		t.Errorf("cron:run unknown id: exit %d %s", code, out)
	}
	// Destroying the app stops its schedule and leaves no one-off behind.
	s.mustBerth("apps:destroy", "--force", app)
	time.Sleep(3 * time.Second)
	if left := docker(t, "ps", "-a", "-q", "--filter", "label=berth.oneoff.app="+app); left != "" {
		t.Errorf("one-off containers of a destroyed app remain: %s", left)
	}
}

// checks:disable deploys stop-then-start.
func TestChecksDisabledStopsFirst(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("dis")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("checks:disable", app)
	out := s.mustBerth("ps:restart", app)
	stop := strings.Index(out, "stopping the old containers first")
	start := strings.Index(out, "Starting web")
	if stop < 0 || start < stop {
		t.Errorf("checks:disable restart output:\n%s", out)
	}
	s.mustGet(host(app), "/")
	out, code := s.berth("checks:set", app, "wait-to-retire", "abc")
	if code == 0 || !strings.Contains(out, "invalid value") {
		t.Errorf("checks:set bad value: exit %d %s", code, out)
	}
	s.mustBerth("checks:set", app, "wait-to-retire", "5")
	var rep struct {
		Disabled     []string `json:"disabled"`
		WaitToRetire int      `json:"wait-to-retire"`
	}
	s.jsonOut(&rep, "checks:report", app, "--format", "json")
	if rep.WaitToRetire != 5 || len(rep.Disabled) != 1 || rep.Disabled[0] != "_all_" {
		t.Errorf("checks:report = %+v", rep)
	}
	s.mustBerth("ps:set", app, "stop-timeout-seconds", "3")
	var ps struct {
		StopTimeout int `json:"stop-timeout-seconds"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if ps.StopTimeout != 3 {
		t.Errorf("ps:report stop-timeout-seconds = %d, want 3", ps.StopTimeout)
	}
	if out, code := s.berth("ps:set", app, "restart-policy", "always"); code == 0 {
		t.Errorf("unknown ps setting accepted: %s", out)
	}
}

// Killing the server in the middle of a deploy: after a restart the last
// good release serves, the unfinished release's containers are gone, the
// release is failed, and the next deploy works.
func TestKillDuringDeployRecovers(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("kill")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("config:set", "--no-restart", app, "STARTUP_DELAY_MS=20000")
	cmd := exec.Command(berthBin, "--data-dir", s.DataDir, "ps:restart", app)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the new release's container exists, then kill -9.
	eventually(t, 30*time.Second, func() error {
		if n := len(containers(t, app)); n < 2 {
			return fmt.Errorf("new container not started yet (%d)", n)
		}
		return nil
	})
	s.stop(syscall.SIGKILL)
	cmd.Wait()
	s.start(t)
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v1") {
		t.Errorf("after the crash: %q", body)
	}
	if got := containers(t, app); len(got) != 1 || got[0] != app+".web.1" {
		t.Errorf("containers after the crash: %v\n%s", got, docker(t, "ps", "-a", "--filter", "label=berth.app="+app,
			"--format", `{{.Names}} {{.Status}} created={{.CreatedAt}} release={{.Label "berth.release"}}`))
	}
	var info struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	s.jsonOut(&info, "releases:info", app, "v2", "--format", "json")
	if info.Status != "failed" {
		t.Errorf("unfinished release = %+v, want failed", info)
	}
	s.mustBerth("config:unset", app, "STARTUP_DELAY_MS")
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "release=v3") {
		t.Errorf("next deploy: %q", body)
	}
}

// A request in flight to the old release when the traffic switches
// finishes; the old container is stopped only afterwards.
func TestDrainFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("drain")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	oldID := docker(t, "inspect", "-f", "{{.Id}}", app+".web.1")
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		code, body := s.get(host(app), "/slow?ms=4000")
		done <- result{code, body}
	}()
	time.Sleep(500 * time.Millisecond)
	s.mustBerth("ps:restart", app)
	// The old container still runs: its request is in flight.
	if got := docker(t, "inspect", "-f", "{{.State.Running}}", oldID); got != "true" {
		t.Errorf("old container stopped while a request was in flight: %s", got)
	}
	res := <-done
	if res.code != 200 || res.body != "slow done" {
		t.Errorf("in-flight request: %d %q", res.code, res.body)
	}
	eventually(t, 20*time.Second, func() error {
		if out, _ := exec.Command("docker", "inspect", oldID).CombinedOutput(); !strings.Contains(string(out), "No such") {
			return fmt.Errorf("old container still exists after the drain")
		}
		return nil
	})
	if got := containers(t, app); len(got) != 1 || got[0] != app+".web.1" {
		t.Errorf("containers after the drain: %v", got)
	}
}
