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

	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerLogs(r *Registry) {
	r.AddNamespace("logs", "Show an app's logs")
	r.Add(&Command{Name: "logs", Usage: "<app> [-t] [-n N] [-p PROCESS] [-q]", Help: "Display the last lines of an app's logs, or follow them with -t",
		MinArgs: 1, MaxArgs: 1, Flags: []Flag{
			{Name: "tail", Short: "t", Help: "keep following the logs"},
			{Name: "num", Short: "n", Value: true, Help: "lines per container (default 100)"},
			{Name: "ps", Short: "p", Value: true, Help: "only this process type"},
			{Name: "quiet", Short: "q", Help: "raw lines, without timestamp and container prefix"},
		}, Run: h.logs})
}

type logLine struct {
	ts, text string
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
	all, err := h.Pipeline.Scheduler().List(ctx, a.Name)
	if err != nil {
		return err
	}
	var cs []scheduler.Container
	for _, ct := range all {
		if ct.Release == a.CurrentRelease && (proc == "" || ct.Process == proc) {
			cs = append(cs, ct)
		}
	}
	if len(cs) == 0 {
		if proc != "" {
			return fmt.Errorf("app %s has no %s container", a.Name, proc)
		}
		return fmt.Errorf("app %s has no container", a.Name)
	}
	quiet := c.Bool("quiet")
	format := func(ct scheduler.Container, l logLine) string {
		if quiet {
			return l.text + "\n"
		}
		return fmt.Sprintf("%s app[%s.%d]: %s\n", l.ts, ct.Process, ct.Index, l.text)
	}
	follow := c.Bool("tail")
	if n == 0 && !follow {
		n = -1 // all lines
	}
	opts := scheduler.LogOptions{Follow: follow, Tail: max(n, 0)}
	if n == 0 {
		opts.Tail = 1 // the engine treats 0 as "all"; show almost nothing
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	var collected []struct {
		ct scheduler.Container
		l  logLine
	}
	errs := make(chan error, len(cs))
	for _, ct := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := h.Pipeline.Scheduler().Logs(ctx, ct.ID, opts)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			pr, pw := io.Pipe()
			go func() {
				_, err := stdcopy.StdCopy(pw, pw, rc)
				pw.CloseWithError(err)
			}()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				ts, text, _ := strings.Cut(sc.Text(), " ")
				l := logLine{ts: ts, text: text}
				mu.Lock()
				if follow {
					io.WriteString(c.Stdout, format(ct, l))
				} else {
					collected = append(collected, struct {
						ct scheduler.Container
						l  logLine
					}{ct, l})
				}
				mu.Unlock()
			}
			pr.Close()
		}()
	}
	wg.Wait()
	close(errs)
	if !follow {
		sort.SliceStable(collected, func(i, j int) bool { return collected[i].l.ts < collected[j].l.ts })
		var b strings.Builder
		for _, e := range collected {
			b.WriteString(format(e.ct, e.l))
		}
		io.WriteString(c.Stdout, b.String())
	}
	if ctx.Err() != nil {
		return nil // the caller went away while following
	}
	return <-errs
}
