// Package checks decides when a new container may take traffic: the
// Dokku-compatible app.json healthchecks (path, command, uptime, listening)
// and, when an app defines none, berth's default (a web container must
// accept connections on its port and answer HTTP; other processes must keep
// running).
package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/scheduler"
)

// Defaults of Dokku's healthchecks.
const (
	DefaultAttempts = 3
	DefaultTimeout  = 5
	DefaultWait     = 5
	// DefaultStartTimeout bounds how long a container may take to start
	// listening (and, with no checks, to answer HTTP).
	DefaultStartTimeout = 60 * time.Second
	// defaultUptime is how long a non-web process without checks must keep
	// running.
	defaultUptime = time.Second
	// Polls start fast (most apps are up within tens of milliseconds) and
	// slow down to maxPoll.
	firstPoll = 5 * time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// poller yields growing intervals: 5 ms, 10 ms, 20 ms… up to maxPoll.
type poller struct{ next time.Duration }

func (p *poller) wait(ctx context.Context) error {
	if p.next == 0 {
		p.next = firstPoll
	}
	d := p.next
	p.next = min(p.next*2, maxPoll)
	return sleep(ctx, d)
}

// Engine is what checks need from the container engine.
type Engine interface {
	Inspect(ctx context.Context, id string) (scheduler.State, error)
	Exec(ctx context.Context, id string, cmd []string) (int, string, error)
}

// Settings are an app's overrides of the check defaults (0: default).
type Settings struct {
	Attempts int
	Timeout  int
	Wait     int
	// StartTimeout bounds waiting for a container to listen; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// Target is a container to check.
type Target struct {
	ID      string
	Process string
	Index   int
	Port    int
}

// Label names the target as users know it ("web.1").
func (t Target) Label() string { return t.Process + "." + strconv.Itoa(t.Index) }

// Failure is a check that did not pass.
type Failure struct {
	Target Target
	Check  string
	URL    string
	// Last is the last response (status and body start) or error.
	Last string
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed check %q", f.Target.Label(), f.Check)
	if f.URL != "" {
		fmt.Fprintf(&b, " at %s", f.URL)
	}
	if f.Last != "" {
		fmt.Fprintf(&b, ": %s", f.Last)
	}
	return b.String()
}

// ExitedError is a container that stopped before it was ready.
type ExitedError struct {
	Target   Target
	ExitCode int
}

func (e *ExitedError) Error() string {
	return fmt.Sprintf("%s exited with code %d before it was ready", e.Target.Label(), e.ExitCode)
}

// Deploy returns the checks of a process that gate a deploy on the
// docker-local scheduler: startup and readiness ones (liveness checks are
// not run by this scheduler).
func Deploy(list []appjson.Check) []appjson.Check {
	var out []appjson.Check
	for _, c := range list {
		if c.Type == "" || c.Type == "startup" || c.Type == "readiness" {
			out = append(out, c)
		}
	}
	return out
}

// Name returns a check's name, or a description of it.
func Name(c appjson.Check) string {
	switch {
	case c.Name != "":
		return c.Name
	case c.Path != "":
		return "path " + c.Path
	case len(c.Command) > 0:
		return "command " + strings.Join(c.Command, " ")
	case c.Uptime > 0:
		return fmt.Sprintf("uptime %ds", c.Uptime)
	case c.Listening:
		return "listening"
	}
	return "check"
}

// Runner runs checks.
type Runner struct {
	Engine Engine
	client *http.Client
}

// NewRunner returns a runner on eng.
func NewRunner(eng Engine) *Runner {
	return &Runner{Engine: eng, client: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Say reports progress lines.
type Say func(format string, args ...any)

// Run checks one container: it waits for it to run, then runs list (or the
// default check when list is empty). It returns the container's IP.
func (r *Runner) Run(ctx context.Context, t Target, list []appjson.Check, s Settings, say Say) (string, error) {
	start := s.StartTimeout
	if start == 0 {
		start = DefaultStartTimeout
	}
	st, err := r.waitRunning(ctx, t, start)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		if t.Process != "web" {
			return st.IP, r.uptime(ctx, t, st, defaultUptime, say)
		}
		return st.IP, r.defaultWeb(ctx, t, st.IP, start, say)
	}
	// Web containers first have to listen: poll fast instead of spending
	// the checks' attempts on connection refusals.
	if t.Process == "web" && st.IP != "" && needsPort(list) {
		port := t.Port
		for _, c := range list {
			if c.Port != 0 && (c.Path != "" || c.Listening) {
				port = c.Port
				break
			}
		}
		if err := r.waitListening(ctx, t, st.IP, port, start, say); err != nil {
			return "", err
		}
	}
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.one(ctx, t, st, c, s, say)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			continue
		}
		if list[i].Warn {
			say("warning: %s (ignored: the check is marked warn)", err)
			continue
		}
		return "", err
	}
	return st.IP, nil
}

func needsPort(list []appjson.Check) bool {
	for _, c := range list {
		if c.Path != "" || c.Listening {
			return true
		}
	}
	return false
}

// waitRunning waits until the container runs and has an address.
func (r *Runner) waitRunning(ctx context.Context, t Target, limit time.Duration) (scheduler.State, error) {
	deadline := time.Now().Add(limit)
	var pl poller
	for {
		st, err := r.Engine.Inspect(ctx, t.ID)
		if err != nil {
			return st, err
		}
		if st.Restarting || (!st.Running && st.Status != "created") {
			return st, &ExitedError{Target: t, ExitCode: st.ExitCode}
		}
		if st.Running && st.IP != "" {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s did not start within %s", t.Label(), limit)
		}
		if err := pl.wait(ctx); err != nil {
			return st, err
		}
	}
}

// alive fails when the container stopped or restarted since st.
func (r *Runner) alive(ctx context.Context, t Target, st scheduler.State) error {
	now, err := r.Engine.Inspect(ctx, t.ID)
	if err != nil {
		return err
	}
	if !now.Running || now.Restarting || now.RestartCount != st.RestartCount || !now.StartedAt.Equal(st.StartedAt) {
		return &ExitedError{Target: t, ExitCode: now.ExitCode}
	}
	return nil
}

func (r *Runner) uptime(ctx context.Context, t Target, st scheduler.State, d time.Duration, say Say) error {
	var pl poller
	for {
		if err := r.alive(ctx, t, st); err != nil {
			return err
		}
		if time.Since(st.StartedAt) >= d {
			say("%s has been running for %s", t.Label(), d)
			return nil
		}
		if err := pl.wait(ctx); err != nil {
			return err
		}
	}
}

// defaultWeb waits until the container accepts connections on its port and
// answers an HTTP request (any status).
func (r *Runner) defaultWeb(ctx context.Context, t Target, ip string, limit time.Duration, say Say) error {
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(t.Port)) + "/"
	return r.poll(ctx, t, limit, "listen on port "+strconv.Itoa(t.Port), say, func(ctx context.Context) (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("User-Agent", "berth-healthcheck")
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := r.client.Do(req.WithContext(ctx))
		if err != nil {
			return false, shortErr(err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		say("%s answers HTTP on port %d (%s)", t.Label(), t.Port, resp.Status)
		return true, ""
	}, url)
}

func (r *Runner) waitListening(ctx context.Context, t Target, ip string, port int, limit time.Duration, say Say) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	return r.poll(ctx, t, limit, "listen on port "+strconv.Itoa(port), say, func(ctx context.Context) (bool, string) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, shortErr(err)
		}
		c.Close()
		say("%s is listening on port %d", t.Label(), port)
		return true, ""
	}, "tcp://"+addr)
}

// poll runs try, at growing intervals, until it passes, the container dies or
// limit passes, printing a progress line every 5 seconds.
func (r *Runner) poll(ctx context.Context, t Target, limit time.Duration, what string, say Say, try func(context.Context) (bool, string), url string) error {
	st, err := r.Engine.Inspect(ctx, t.ID)
	if err != nil {
		return err
	}
	start := time.Now()
	lastSaid := start
	last := ""
	var pl poller
	for {
		ok, msg := try(ctx)
		if ok {
			// The answer counts only if the container still runs: a
			// container that died released its IP, which another
			// container may have taken meanwhile.
			return r.alive(ctx, t, st)
		}
		last = msg
		if err := r.alive(ctx, t, st); err != nil {
			return err
		}
		if time.Since(start) > limit {
			return &Failure{Target: t, Check: "default: " + what, URL: url, Last: fmt.Sprintf("did not %s within %s (last error: %s; the app must listen on $PORT)", what, limit, last)}
		}
		if time.Since(lastSaid) >= 5*time.Second {
			lastSaid = time.Now()
			say("waiting for %s to %s (%ds)...", t.Label(), what, int(time.Since(start).Seconds()))
		}
		if err := pl.wait(ctx); err != nil {
			return err
		}
	}
}

// one runs one declared check with its attempts, timeout and wait.
func (r *Runner) one(ctx context.Context, t Target, st scheduler.State, c appjson.Check, s Settings, say Say) error {
	attempts := pick(c.Attempts, s.Attempts, DefaultAttempts)
	timeout := time.Duration(pick(c.Timeout, s.Timeout, DefaultTimeout)) * time.Second
	wait := time.Duration(pick(c.Wait, s.Wait, DefaultWait)) * time.Second
	name := Name(c)
	if d := time.Duration(c.InitialDelay)*time.Second - time.Since(st.StartedAt); d > 0 {
		say("%s: waiting %ds before check %q", t.Label(), c.InitialDelay, name)
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	if c.Uptime > 0 {
		return r.uptime(ctx, t, st, time.Duration(c.Uptime)*time.Second, say)
	}
	port := c.Port
	if port == 0 {
		port = t.Port
	}
	var fail *Failure
	for i := 1; i <= attempts; i++ {
		if err := r.alive(ctx, t, st); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		fail = r.attempt(actx, t, st.IP, port, c, name)
		cancel()
		if fail == nil {
			if err := r.alive(ctx, t, st); err != nil {
				return err
			}
			say("%s passed check %q", t.Label(), name)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		say("%s: check %q attempt %d/%d failed: %s", t.Label(), name, i, attempts, fail.Last)
		if i < attempts {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
		}
	}
	return fail
}

func (r *Runner) attempt(ctx context.Context, t Target, ip string, port int, c appjson.Check, name string) *Failure {
	switch {
	case len(c.Command) > 0:
		code, out, err := r.Engine.Exec(ctx, t.ID, c.Command)
		if err != nil {
			return &Failure{Target: t, Check: name, Last: shortErr(err)}
		}
		if code != 0 {
			return &Failure{Target: t, Check: name, Last: fmt.Sprintf("exit code %d: %s", code, clip(out))}
		}
		return nil
	case c.Listening:
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		d := net.Dialer{}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return &Failure{Target: t, Check: name, URL: "tcp://" + addr, Last: shortErr(err)}
		}
		conn.Close()
		return nil
	default:
		scheme := c.Scheme
		if scheme == "" {
			scheme = "http"
		}
		path := c.Path
		if path == "" {
			path = "/"
		}
		url := scheme + "://" + net.JoinHostPort(ip, strconv.Itoa(port)) + path
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return &Failure{Target: t, Check: name, URL: url, Last: err.Error()}
		}
		req.Header.Set("User-Agent", "berth-healthcheck")
		for _, h := range c.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
			} else {
				req.Header.Set(h.Name, h.Value)
			}
		}
		resp, err := r.client.Do(req)
		if err != nil {
			return &Failure{Target: t, Check: name, URL: url, Last: shortErr(err)}
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return &Failure{Target: t, Check: name, URL: url, Last: fmt.Sprintf("HTTP %s: %s", resp.Status, clip(string(body)))}
		}
		if c.Content != "" && !strings.Contains(string(body), c.Content) {
			return &Failure{Target: t, Check: name, URL: url, Last: fmt.Sprintf("HTTP %s, but the body lacks %q: %s", resp.Status, c.Content, clip(string(body)))}
		}
		return nil
	}
}

func pick(vals ...int) int {
	for _, v := range vals {
		if v > 0 {
			return v
		}
	}
	return 0
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ReplaceAll(s, "\n", " ")
}

func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
