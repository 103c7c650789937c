package commands

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/berth-paas/berth/internal/ui"
)

func (h *handlers) registerEvents(r *Registry) {
	r.AddNamespace("events", "Show an app's history: deploys, releases, scaling, cron runs")
	r.Add(&Command{Name: "events", Usage: "<app> [-n N] [--format json]", Help: "Show an app's last events, oldest first", MinArgs: 1, MaxArgs: 1,
		Flags: []Flag{{Name: "num", Short: "n", Value: true, Help: "how many events (default 50)"}, formatFlag}, Run: h.events})
}

func (h *handlers) events(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	n := 50
	if v := c.Flag("num"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("invalid count %s: use a whole number from 1 to 10000", quoteArg(v))
		}
	}
	evs, err := h.Store.Events(ctx, a.Name, n)
	if err != nil {
		return err
	}
	if asJSON {
		type event struct {
			At      time.Time `json:"at"`
			Kind    string    `json:"kind"`
			Message string    `json:"message"`
		}
		out := []event{}
		for _, e := range evs {
			out = append(out, event{e.At, e.Kind, e.Message})
		}
		return ui.JSON(c.Stdout, out)
	}
	for _, e := range evs {
		fmt.Fprintf(c.Stdout, "%s %-14s %s\n", e.At.Format("2006-01-02T15:04:05Z"), e.Kind, e.Message)
	}
	return nil
}
