package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerLogs(r *Registry) {
	r.AddNamespace("logs", "Show an app's logs")
	r.Add(&Command{Name: "logs", Usage: "<app> [-t] [-n N] [-p PROCESS] [-q]", Help: "Display the last lines of an app's logs, or follow them with -t",
		MinArgs: 1, MaxArgs: 1, Flags: []Flag{
			{Name: "tail", Short: "t", Help: "keep following the logs, across restarts and deploys"},
			{Name: "num", Short: "n", Value: true, Help: "lines per container (default 100; 0: all, or with -t only new lines)"},
			{Name: "ps", Short: "p", Value: true, Help: "only this process type"},
			{Name: "quiet", Short: "q", Help: "raw lines, without timestamp and container prefix"},
		}, Run: h.logs})
}

type logLine struct {
	ts, text string
}

// logStreamer reads one container's log stream line by line.
type logStreamer struct {
	sched  *scheduler.Docker
	quiet  bool
	mu     sync.Mutex // serialises writes to out
	out    io.Writer
	follow bool
}

func (l *logStreamer) format(ct scheduler.Container, line logLine) string {
	if l.quiet {
		return line.text + "\n"
	}
	return fmt.Sprintf("%s app[%s.%d]: %s\n", line.ts, ct.Process, ct.Index, line.text)
}

// stream reads ct's logs with opts, calling emit for each line; it returns
// the timestamp of the last line seen.
func (l *logStreamer) stream(ctx context.Context, ct scheduler.Container, opts scheduler.LogOptions, emit func(logLine)) (string, error) {
	rc, err := l.sched.Logs(ctx, ct.ID, opts)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	last := ""
	for sc.Scan() {
		ts, text, _ := strings.Cut(sc.Text(), " ")
		last = ts
		emit(logLine{ts: ts, text: text})
	}
	return last, nil
}

func (h *handlers) logs(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	n := 100
	if v := c.Flag("num"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			return fmt.Errorf("invalid line count %s: use a whole number", quoteArg(v))
		}
	}
	proc := c.Flag("ps")
	if proc != "" {
		if err := validate.ProcessType(proc); err != nil {
			return err
		}
	}
	cs, err := h.logContainers(ctx, a, proc)
	if err != nil {
		return err
	}
	if len(cs) == 0 && !c.Bool("tail") {
		if proc != "" {
			return fmt.Errorf("app %s has no %s container", a.Name, proc)
		}
		return fmt.Errorf("app %s has no container", a.Name)
	}
	ls := &logStreamer{sched: h.Pipeline.Scheduler(), quiet: c.Bool("quiet"), out: c.Stdout}
	if c.Bool("tail") {
		return h.followLogs(ctx, ls, a.Name, proc, n)
	}
	if n == 0 {
		n = -1 // every line
	}
	type entry struct {
		ct scheduler.Container
		l  logLine
	}
	var mu sync.Mutex
	var collected []entry
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	for _, ct := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ls.stream(ctx, ct, scheduler.LogOptions{Tail: n}, func(l logLine) {
				mu.Lock()
				collected = append(collected, entry{ct, l})
				mu.Unlock()
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	sort.SliceStable(collected, func(i, j int) bool { return collected[i].l.ts < collected[j].l.ts })
	var b strings.Builder
	for _, e := range collected {
		b.WriteString(ls.format(e.ct, e.l))
	}
	io.WriteString(c.Stdout, b.String())
	return <-errs
}

// logContainers lists the containers of a's current release (one process
// type when proc is set).
func (h *handlers) logContainers(ctx context.Context, a store.App, proc string) ([]scheduler.Container, error) {
	all, err := h.Pipeline.Scheduler().List(ctx, a.Name)
	if err != nil {
		return nil, err
	}
	var cs []scheduler.Container
	for _, ct := range all {
		if ct.Release == a.CurrentRelease && (proc == "" || ct.Process == proc) {
			cs = append(cs, ct)
		}
	}
	return cs, nil
}

// followLogs streams the logs of the app's running containers until the
// caller goes away, picking up containers that start later (restarts,
// deploys, scaling) and resuming a restarted container where it stopped.
func (h *handlers) followLogs(ctx context.Context, ls *logStreamer, app, proc string, n int) error {
	var mu sync.Mutex
	streaming := map[string]bool{}
	lastTS := map[string]string{}
	first := true
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a, err := h.Store.App(ctx, app)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cs, err := h.logContainers(ctx, a, proc)
		if err != nil && ctx.Err() == nil {
			return err
		}
		for _, ct := range cs {
			mu.Lock()
			busy, since := streaming[ct.ID], lastTS[ct.ID]
			if !busy && ct.Running() {
				streaming[ct.ID] = true
			}
			mu.Unlock()
			if busy || !ct.Running() {
				continue
			}
			opts := scheduler.LogOptions{Follow: true, Tail: n}
			switch {
			case since != "":
				t, _ := time.Parse(time.RFC3339Nano, since)
				opts.Tail, opts.Since = -1, t.Add(time.Nanosecond)
			case !first:
				opts.Tail = -1 // a container that started while following
			}
			go func() {
				last, _ := ls.stream(ctx, ct, opts, func(l logLine) {
					ls.mu.Lock()
					io.WriteString(ls.out, ls.format(ct, l))
					ls.mu.Unlock()
				})
				mu.Lock()
				streaming[ct.ID] = false
				if last != "" {
					lastTS[ct.ID] = last
				}
				mu.Unlock()
			}()
		}
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
