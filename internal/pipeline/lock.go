package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// locks serialises operations per app. A holder may hand its token to a
// nested call (a git push holds the lock while git receive-pack runs the
// hook that deploys) so the nested call does not wait on itself.
type locks struct {
	mu sync.Mutex
	m  map[string]*appLock
}

type appLock struct {
	sem   chan struct{}
	token string
	// nested counts calls running on the holder's token; the holder's
	// release waits for them (a push whose client went away must not free
	// the app while its deploy still runs). Guarded by locks.mu.
	nested int
	done   *sync.Cond
}

func (l *locks) get(app string) *appLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	al := l.m[app]
	if al == nil {
		al = &appLock{sem: make(chan struct{}, 1), done: sync.NewCond(&l.mu)}
		l.m[app] = al
	}
	return al
}

// acquire takes app's lock, saying so on out when it has to wait. When token
// names the current holder it returns at once, and the holder's own release
// waits until this nested call released too.
func (l *locks) acquire(ctx context.Context, app, token string, out io.Writer) (func(), string, error) {
	al := l.get(app)
	if token != "" {
		l.mu.Lock()
		held := al.token == token
		if held {
			al.nested++
		}
		l.mu.Unlock()
		if held {
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					al.nested--
					al.done.Broadcast()
					l.mu.Unlock()
				})
			}, token, nil
		}
	}
	select {
	case al.sem <- struct{}{}:
	default:
		if out != nil {
			ui.Step(out, "Waiting for another operation on %s to finish...", app)
		}
		select {
		case al.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, "", fmt.Errorf("wait for the lock of %s: %w", app, ctx.Err())
		}
	}
	tok := newToken()
	l.mu.Lock()
	al.token = tok
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			for al.nested > 0 {
				al.done.Wait()
			}
			al.token = ""
			l.mu.Unlock()
			<-al.sem
		})
	}, tok, nil
}

// tryAcquire takes app's lock only if it is free.
func (l *locks) tryAcquire(app string) (func(), bool) {
	al := l.get(app)
	select {
	case al.sem <- struct{}{}:
		return func() { <-al.sem }, true
	default:
		return nil, false
	}
}

// lockApp takes app's lock (saying so on out when it has to wait) and reads
// the app; the caller releases the lock when done.
func (p *Pipeline) lockApp(ctx context.Context, app string, out io.Writer) (store.App, func(), error) {
	release, _, err := p.locks.acquire(ctx, app, "", out)
	if err != nil {
		return store.App{}, nil, err
	}
	a, err := p.store.App(ctx, app)
	if err != nil {
		release()
		return store.App{}, nil, err
	}
	return a, release, nil
}

// Locked reports whether an operation holds app's lock.
func (p *Pipeline) Locked(app string) bool {
	al := p.locks.get(app)
	return len(al.sem) > 0
}

// Lock takes app's lock for a caller that runs several steps (a git push),
// returning a token that nested pipeline calls accept instead of waiting.
func (p *Pipeline) Lock(ctx context.Context, app string, out io.Writer) (release func(), token string, err error) {
	return p.locks.acquire(ctx, app, "", out)
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
