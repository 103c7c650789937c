package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A push builds, releases and deploys; the app answers through the proxy by
// Host header; config changes make a new release the app sees.
func TestPushDeployConfigAndScale(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("web")
	r := newRepo(t, nil)
	out := s.mustPush(r, app)
	for _, want := range []string{"Creating " + app, "Building " + app + " from Dockerfile", "Releasing " + app, "Application deployed:", "http://" + host(app)} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "proc=web index=1 release=v1") {
		t.Fatalf("unexpected body %q", body)
	}
	if got := s.mustGet(host(app), "/env?k=GIT_REV"); got != strings.TrimSpace(r.git("rev-parse", "HEAD")) {
		t.Errorf("GIT_REV = %q", got)
	}
	if got := s.mustGet(host(app), "/env?k=APP_NAME"); got != app {
		t.Errorf("APP_NAME = %q", got)
	}
	if got := containers(t, app); len(got) != 1 || got[0] != app+".web.1" {
		t.Errorf("containers = %v, want [%s.web.1]", got, app)
	}
	if got := docker(t, "inspect", "-f", `{{index .Config.Labels "berth.release"}} {{.HostConfig.RestartPolicy.Name}} {{.Config.Image}}`, app+".web.1"); got != "1 unless-stopped berth/"+app+":v1" {
		t.Errorf("container labels/policy/image = %q", got)
	}

	// Headers set by the proxy.
	hdr := s.mustGet(host(app), "/headers")
	if !strings.Contains(hdr, "host="+host(app)) || !strings.Contains(hdr, "xff=127.0.0.1") || !strings.Contains(hdr, "proto=http") || !strings.Contains(hdr, "xhost="+host(app)) {
		t.Errorf("forwarded headers: %s", hdr)
	}

	// config:set redeploys with the new env as a new release.
	out = s.mustBerth("config:set", app, "MSG=hello world")
	if !strings.Contains(out, "Restarting app "+app) {
		t.Errorf("config:set output:\n%s", out)
	}
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=hello world") || !strings.Contains(body, "release=v2") {
		t.Fatalf("after config:set: %q", body)
	}
	if got := strings.TrimSpace(s.mustBerth("config:get", app, "MSG")); got != "hello world" {
		t.Errorf("config:get = %q", got)
	}
	// --no-restart records without redeploying.
	s.mustBerth("config:set", "--no-restart", app, "MSG=later")
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=hello world") {
		t.Errorf("--no-restart redeployed: %q", body)
	}
	s.mustBerth("ps:restart", app)
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg=later") {
		t.Errorf("after ps:restart: %q", body)
	}
	s.mustBerth("config:unset", app, "MSG")
	if body := s.mustGet(host(app), "/"); !strings.Contains(body, "msg= ") {
		t.Errorf("after config:unset: %q", body)
	}

	// Scale web to 2: both containers serve, round robin.
	s.mustBerth("ps:scale", app, "web=2")
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		body := s.mustGet(host(app), "/")
		for _, idx := range []string{"index=1", "index=2"} {
			if strings.Contains(body, idx) {
				seen[idx] = true
			}
		}
	}
	if !seen["index=1"] || !seen["index=2"] {
		t.Errorf("both web containers should serve; saw %v", seen)
	}
	var ps struct {
		Deployed   bool           `json:"deployed"`
		Formation  map[string]int `json:"formation"`
		Containers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"containers"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if !ps.Deployed || ps.Formation["web"] != 2 || len(ps.Containers) != 2 {
		t.Errorf("ps:report = %+v", ps)
	}
	s.mustBerth("ps:scale", app, "web=1")
	eventually(t, 20*time.Second, func() error {
		if got := containers(t, app); len(got) != 1 {
			return fmt.Errorf("after scaling down: %v", got)
		}
		return nil
	})
}

// A Procfile defines the process types; non-web types start at 0 and scale.
func TestProcfileWorker(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("proc")
	r := newRepo(t, map[string]string{"Procfile": "# processes\nweb: /fixture web\nworker: /fixture worker --port $PORT\n"})
	s.mustPush(r, app)
	var ps struct {
		Formation map[string]int `json:"formation"`
	}
	s.jsonOut(&ps, "ps:report", app, "--format", "json")
	if ps.Formation["web"] != 1 || ps.Formation["worker"] != 0 {
		t.Fatalf("first deploy formation = %v, want web=1 worker=0", ps.Formation)
	}
	s.mustBerth("ps:scale", app, "worker=1")
	if got := docker(t, "inspect", "-f", "{{json .Config.Cmd}}", app+".worker.1"); got != `["/fixture","worker","--port","5000"]` {
		t.Errorf("worker command = %s", got)
	}
	eventually(t, 10*time.Second, func() error {
		out := s.mustBerth("logs", app, "-p", "worker", "-n", "5")
		if !strings.Contains(out, "app[worker.1]: worker tick") {
			return fmt.Errorf("logs lack worker ticks:\n%s", out)
		}
		return nil
	})
	out, code := s.berth("ps:scale", app, "clock=1")
	if code == 0 || !strings.Contains(out, "process type clock is not defined") {
		t.Errorf("scaling an undefined process: exit %d\n%s", code, out)
	}
	out, code = s.berth("ps:scale", app, "web=x")
	if code == 0 || !strings.Contains(out, "invalid count") {
		t.Errorf("bad count: exit %d\n%s", code, out)
	}
}

// A failed build, a bad Procfile and a crashing app each fail the push and
// leave the previous release serving.
func TestFailedDeploysKeepPreviousRelease(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("fail")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	before := s.mustGet(host(app), "/")

	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"build", map[string]string{"Dockerfile": "FROM scratch\nCOPY does-not-exist /x\n"}, "Dockerfile build failed"},
		{"procfile", map[string]string{"Procfile": "web /fixture\n"}, "Procfile line 1"},
		{"crash", map[string]string{"Procfile": "web: /fixture crash\n"}, "web.1 exited with code 3"},
		{"no dockerfile", map[string]string{"Dockerfile": ""}, "no Dockerfile"},
	}
	for _, tc := range cases {
		r.write(tc.files)
		r.commit(tc.name)
		out, code := s.push(r, app)
		if code == 0 {
			t.Errorf("%s: push succeeded:\n%s", tc.name, out)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: push output lacks %q:\n%s", tc.name, tc.want, out)
		}
		if got := s.mustGet(host(app), "/"); got != before {
			t.Errorf("%s: app changed to %q", tc.name, got)
		}
		r.git("reset", "-q", "--hard", "HEAD~1")
	}
	if got := containers(t, app); len(got) != 1 {
		t.Errorf("containers after failed deploys: %v", got)
	}
	out := s.mustBerth("apps:report", app)
	if !strings.Contains(out, "v1") {
		t.Errorf("current release should still be v1:\n%s", out)
	}
	// The crash output shows the container's last lines.
	r.write(map[string]string{"Procfile": "web: /fixture crash\n"})
	r.commit("crash again")
	out, _ = s.push(r, app)
	if !strings.Contains(out, "crashing on purpose") {
		t.Errorf("failed start should show the app's output:\n%s", out)
	}
}

// Pushing another branch is refused; pushing to an unknown app creates it
// unless autocreation is disabled.
func TestPushRules(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("rules")
	r := newRepo(t, nil)
	out, code := s.push(r, app, "main:refs/heads/feature")
	if code == 0 || !strings.Contains(out, "pushing refs/heads/feature is not supported") {
		t.Errorf("feature branch push: exit %d\n%s", code, out)
	}
	s.mustPush(r, app, "main:refs/heads/master")
	s.mustGet(host(app), "/")

	s.mustBerth("apps:set", "--global", "disable-autocreation", "true")
	other := appName("nope")
	out, code = s.push(r, other)
	if code == 0 || !strings.Contains(out, "auto-creation is disabled") {
		t.Errorf("push with autocreation disabled: exit %d\n%s", code, out)
	}
	if _, code := s.berth("apps:exists", other); code == 0 {
		t.Errorf("app %s was created", other)
	}
	s.mustBerth("apps:create", other)
	s.mustPush(r, other)
	s.mustBerth("apps:set", "--global", "disable-autocreation")

	out, code = s.push(r, "Bad_Name")
	if code == 0 || !strings.Contains(out, "invalid app name") {
		t.Errorf("bad app name push: exit %d\n%s", code, out)
	}
}

// Two pushes to one app at once run one after the other; both deploy.
func TestConcurrentPushesSerialize(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("conc")
	a := newRepo(t, map[string]string{"Procfile": "web: /fixture\n"})
	s.mustPush(a, app)
	b := newRepo(t, map[string]string{"Procfile": "web: /fixture web\n"})
	a.write(map[string]string{"STARTUP": "a"})
	a.commit("a")
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i, r := range []*Repo{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = s.push(r, app, "--force")
		}()
	}
	wg.Wait()
	for i := range outs {
		if codes[i] != 0 {
			t.Fatalf("push %d failed:\n%s", i, outs[i])
		}
	}
	if !strings.Contains(outs[0]+outs[1], "Waiting for another operation on "+app) {
		t.Errorf("neither push said it waited:\n%s\n---\n%s", outs[0], outs[1])
	}
	var rels []string
	for _, out := range outs {
		i := strings.Index(out, "(release v")
		if i < 0 {
			t.Fatalf("no release in output:\n%s", out)
		}
		rels = append(rels, out[i:i+12])
	}
	if rels[0] == rels[1] {
		t.Errorf("both pushes made the same release: %v", rels)
	}
	s.mustGet(host(app), "/")
}

// Rename moves the app, its containers and its host; destroy removes
// everything.
func TestRenameAndDestroy(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("ren")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("config:set", app, "MSG=kept")
	to := appName("moved")
	s.apps.Store(to, true)
	s.mustBerth("apps:rename", app, to)
	if body := s.mustGet(host(to), "/"); !strings.Contains(body, "msg=kept") {
		t.Errorf("renamed app body %q", body)
	}
	if code, _ := s.get(host(app), "/"); code != 404 {
		t.Errorf("old host answers %d, want 404", code)
	}
	if got := containers(t, app); len(got) != 0 {
		t.Errorf("old containers remain: %v", got)
	}
	if got := containers(t, to); len(got) != 1 || got[0] != to+".web.1" {
		t.Errorf("new containers = %v", got)
	}
	// Pushing to the new name continues the history.
	r.commit("after rename")
	s.mustPush(r, to)

	out, code := s.berthIn("wrong\n", "apps:destroy", to)
	if code == 0 || !strings.Contains(out, "Confirmation did not match") {
		t.Errorf("destroy with a wrong confirmation: exit %d\n%s", code, out)
	}
	s.mustGet(host(to), "/")
	s.mustBerth("apps:destroy", "--force", to)
	if _, code := s.berth("apps:exists", to); code == 0 {
		t.Error("app still exists")
	}
	if got := containers(t, to); len(got) != 0 {
		t.Errorf("containers remain: %v", got)
	}
	if imgs := docker(t, "images", "-q", "berth/"+to); imgs != "" {
		t.Errorf("images remain: %s", imgs)
	}
	for _, name := range []string{app, to} {
		if imgs := docker(t, "images", "-q", "--filter", "label=berth.image.app="+name); imgs != "" {
			t.Errorf("build images of %s remain: %s", name, imgs)
		}
	}
	if code, _ := s.get(host(to), "/"); code != 404 {
		t.Errorf("destroyed app answers %d", code)
	}
}

// Restarting the server keeps apps serving; containers of unknown apps and
// of unfinished releases are removed, missing ones restarted.
func TestServerRestartReconciles(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	app := appName("rec")
	r := newRepo(t, nil)
	s.mustPush(r, app)
	s.mustBerth("ps:scale", app, "web=2")

	s.stop(syscall.SIGTERM)
	// The app keeps running while the server is down.
	if got := docker(t, "inspect", "-f", "{{.State.Running}}", app+".web.1"); got != "true" {
		t.Fatalf("container stopped with the server: %s", got)
	}
	// A leftover of an aborted deploy, and a container removed behind
	// berth's back.
	instance := docker(t, "inspect", "-f", `{{index .Config.Labels "berth.instance"}}`, app+".web.1")
	docker(t, "run", "-d", "--name", app+".web.1.stale", "--label", "berth.app="+app, "--label", "berth.release=9",
		"--label", "berth.process=web", "--label", "berth.index=1", "--label", "berth.instance="+instance, "berth/"+app+":v1")
	docker(t, "rm", "-f", app+".web.2")

	s.start(t)
	eventually(t, 20*time.Second, func() error {
		got := containers(t, app)
		if len(got) != 2 {
			return fmt.Errorf("containers after restart: %v", got)
		}
		return nil
	})
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		body := s.mustGet(host(app), "/")
		seen[body] = true
	}
	if len(seen) != 2 {
		t.Errorf("both web containers should serve after restart: %v", seen)
	}

	// kill -9: nothing graceful happens, the next start adopts.
	s.stop(syscall.SIGKILL)
	s.start(t)
	s.mustGet(host(app), "/")
	r.commit("after kill")
	s.mustPush(r, app)
}
