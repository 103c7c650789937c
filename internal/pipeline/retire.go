package pipeline

import (
	"context"
	"io"
	"sync"

	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/ui"
)

// retirements tracks old containers being drained and stopped after a
// switch: a deploy returns as soon as traffic moved, and the next operation
// on the app waits for its retirements to finish.
type retirements struct {
	mu  sync.Mutex
	wg  map[string]*sync.WaitGroup
	ids map[string]bool
	all sync.WaitGroup
}

// retireLater retires old containers in the background, then runs then.
func (p *Pipeline) retireLater(ctx context.Context, app string, old []scheduler.Container, pol CheckPolicy, out io.Writer, then func()) {
	if len(old) == 0 {
		then()
		return
	}
	ui.Step(out, "Retiring %d old container(s) once their requests finish (up to %s)", len(old), pol.WaitToRetire)
	r := &p.retiring
	r.mu.Lock()
	if r.wg == nil {
		r.wg, r.ids = map[string]*sync.WaitGroup{}, map[string]bool{}
	}
	wg := r.wg[app]
	if wg == nil {
		wg = &sync.WaitGroup{}
		r.wg[app] = wg
	}
	for _, c := range old {
		r.ids[c.ID] = true
	}
	wg.Add(1)
	r.all.Add(1)
	r.mu.Unlock()
	bg := context.WithoutCancel(ctx)
	go func() {
		defer r.all.Done()
		defer wg.Done()
		p.retire(bg, old, pol, io.Discard)
		r.mu.Lock()
		for _, c := range old {
			delete(r.ids, c.ID)
		}
		r.mu.Unlock()
		then()
	}()
}

// waitRetired waits until the background retirements of app are done.
func (p *Pipeline) waitRetired(app string) {
	p.retiring.mu.Lock()
	wg := p.retiring.wg[app]
	p.retiring.mu.Unlock()
	if wg != nil {
		wg.Wait()
	}
}

// isRetiring reports whether a container is being retired.
func (p *Pipeline) isRetiring(id string) bool {
	p.retiring.mu.Lock()
	defer p.retiring.mu.Unlock()
	return p.retiring.ids[id]
}

// WaitRetirements waits (at most until ctx is done) for every background
// retirement, so a server shutting down leaves no half-retired container.
func (p *Pipeline) WaitRetirements(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		p.retiring.all.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
