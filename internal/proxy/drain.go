package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Polling interval bounds of Drain.
const (
	drainPollMin = time.Millisecond
	drainPollMax = 50 * time.Millisecond
)

// InFlight reports how many requests (including upgraded/WebSocket
// connections) are currently being proxied to target addr.
func (r *Router) InFlight(addr string) int {
	r.mu.Lock()
	s := r.stats[addr]
	r.mu.Unlock()
	if s == nil {
		return 0
	}
	return int(s.inflight.Load())
}

// Drain waits until no request is in flight to any of addrs, or until ctx is
// done.
//
// The caller must first take addrs out of routing with [Router.Set] or
// [Router.Remove]; once Set has returned, no new request can start on them,
// so Drain returning nil means the old containers can be stopped without
// cutting a request. On success Drain also closes the idle keep-alive
// connections to addrs.
//
// When ctx is done first, Drain force-closes every connection still open to
// addrs, which ends upgraded (WebSocket) connections and aborts requests
// still running, and returns ctx.Err() wrapped. Addresses that are still
// routed (a caller mistake, logged as a warning) are waited for but their
// connections are never closed.
func (r *Router) Drain(ctx context.Context, addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	r.mu.Lock()
	stats := make([]*addrStats, 0, len(addrs))
	closable := make(map[string]*addrStats, len(addrs))
	routed := routedAddrs(r.table.Load())
	for _, addr := range addrs {
		s := r.stats[addr]
		if s == nil {
			continue // never used, or already drained and forgotten
		}
		stats = append(stats, s)
		if _, ok := routed[addr]; ok {
			r.logger.Warn("proxy: draining a target that is still routed", "target", addr)
			continue
		}
		closable[addr] = s
	}
	r.mu.Unlock()

	wait := drainPollMin
	var timer *time.Timer
	for {
		busy := 0
		for _, s := range stats {
			busy += int(s.inflight.Load())
		}
		if busy == 0 {
			r.closeUnrouted(closable)
			r.mu.Lock()
			r.gcStatsLocked(r.table.Load())
			r.mu.Unlock()
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			closed := r.closeUnrouted(closable)
			r.logger.Warn("proxy: drain timed out, closed upstream connections",
				"targets", addrs, "in_flight", busy, "closed_conns", closed)
			return fmt.Errorf("proxy: drain %s: %d requests still in flight: %w",
				strings.Join(addrs, ","), busy, ctx.Err())
		case <-timer.C:
		}
		wait = min(2*wait, drainPollMax)
	}
}

// routedAddrs returns the set of target addresses routed by tbl.
func routedAddrs(tbl *table) map[string]struct{} {
	out := make(map[string]struct{})
	for _, st := range tbl.apps {
		for _, t := range st.targets {
			out[t.addr] = struct{}{}
		}
	}
	for _, st := range tbl.ports {
		for _, t := range st.targets {
			out[t.addr] = struct{}{}
		}
	}
	return out
}

// closeUnrouted closes the upstream connections of the given addresses that
// are not routed right now (re-checked, in case a Set re-added one while
// Drain was waiting) and returns how many it closed.
func (r *Router) closeUnrouted(stats map[string]*addrStats) int {
	r.mu.Lock()
	routed := routedAddrs(r.table.Load())
	r.mu.Unlock()
	closed := 0
	for addr, s := range stats {
		if _, ok := routed[addr]; !ok {
			closed += s.closeConns()
		}
	}
	return closed
}
