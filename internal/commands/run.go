package commands

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerRun(r *Registry) {
	envFlag := Flag{Name: "env", Short: "e", Value: true, Help: "set KEY=VALUE for this run (repeatable)"}
	r.AddNamespace("run", "Run one-off commands in an app's current release")
	r.Add(&Command{Name: "run", Usage: "[-e KEY=VALUE]... <app> <command> [args...]", Help: "Run a one-off command and pass its exit code through",
		MinArgs: 2, MaxArgs: -1, FlagsFirst: true, Flags: []Flag{envFlag}, Run: h.run})
	r.Add(&Command{Name: "run:detached", Usage: "[-e KEY=VALUE]... <app> <command> [args...]", Help: "Start a one-off command in the background and print its container name",
		MinArgs: 2, MaxArgs: -1, FlagsFirst: true, Flags: []Flag{envFlag}, Run: h.run})
	r.AddNamespace("cron", "Scheduled commands from app.json cron")
	r.Add(&Command{Name: "cron:list", Usage: "<app> [--format json]", Help: "List an app's scheduled commands", MinArgs: 1, MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.cronList})
	r.Add(&Command{Name: "cron:run", Usage: "<app> <cron-id> [--detach]", Help: "Run a scheduled command now", MinArgs: 2, MaxArgs: 2,
		Flags: []Flag{{Name: "detach", Help: "run in the background"}}, Run: h.cronRun})
}

func (h *handlers) run(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	env := map[string]string{}
	for _, kv := range c.Flags("env") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("invalid -e %s: use KEY=VALUE", quoteArg(kv))
		}
		if err := validate.EnvKey(k); err != nil {
			return err
		}
		env[k] = v
	}
	detach := c.Command.Name == "run:detached"
	code, name, err := h.Pipeline.Run(ctx, pipeline.RunOptions{App: a.Name, Cmd: c.Args[1:], Env: env, Stdin: c.Stdin, Detach: detach}, c.Stdout, c.Stderr)
	if err != nil {
		return err
	}
	if detach {
		fmt.Fprintln(c.Stdout, name)
		return nil
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

func (h *handlers) cronList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	jobs, err := h.Pipeline.CronJobs(ctx, a)
	if err != nil {
		return err
	}
	if asJSON {
		type job struct {
			ID       string    `json:"id"`
			Schedule string    `json:"schedule"`
			Command  string    `json:"command"`
			Next     time.Time `json:"next"`
		}
		out := []job{}
		for _, j := range jobs {
			out = append(out, job{j.ID, j.Schedule, j.Command, j.Next})
		}
		return ui.JSON(c.Stdout, out)
	}
	ui.Section(c.Stdout, "%s cron jobs", a.Name)
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSchedule\tNext run (UTC)\tCommand")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.ID, j.Schedule, j.Next.Format("2006-01-02 15:04"), j.Command)
	}
	return tw.Flush()
}

func (h *handlers) cronRun(ctx context.Context, c *Call) error {
	a, err := h.deployed(ctx, c.Args[0])
	if err != nil {
		return err
	}
	code, name, err := h.Pipeline.RunCron(ctx, a, c.Args[1], c.Bool("detach"), c.Stdout, c.Stderr)
	if err != nil {
		return err
	}
	if c.Bool("detach") {
		fmt.Fprintln(c.Stdout, name)
		return nil
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
