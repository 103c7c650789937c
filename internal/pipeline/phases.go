package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// phases times the steps of one deploy (receive, build, release, start,
// checks, switch) so the deploy can say where its time went.
type phases struct {
	mu      sync.Mutex
	start   time.Time
	current string
	since   time.Time
	done    []phaseTime
}

type phaseTime struct {
	name string
	d    time.Duration
}

type phasesKey struct{}

// withPhases starts timing a deploy whose first phase is first.
func withPhases(ctx context.Context, first string) context.Context {
	now := time.Now()
	return context.WithValue(ctx, phasesKey{}, &phases{start: now, current: first, since: now})
}

// phase ends the current phase of the deploy in ctx and starts next.
func phase(ctx context.Context, next string) {
	p, _ := ctx.Value(phasesKey{}).(*phases)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.current != "" {
		p.done = append(p.done, phaseTime{p.current, now.Sub(p.since)})
	}
	p.current, p.since = next, now
}

// phaseSummary ends timing and renders "2.1s (receive 0.1s, build 0.8s…)".
func phaseSummary(ctx context.Context) string {
	p, _ := ctx.Value(phasesKey{}).(*phases)
	if p == nil {
		return ""
	}
	phase(ctx, "")
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := make([]string, 0, len(p.done))
	for _, d := range p.done {
		parts = append(parts, fmt.Sprintf("%s %.2fs", d.name, d.d.Seconds()))
	}
	return fmt.Sprintf("%.2fs (%s)", time.Since(p.start).Seconds(), strings.Join(parts, ", "))
}
