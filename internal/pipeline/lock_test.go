package pipeline

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newLocks() *locks { return &locks{m: map[string]*appLock{}} }

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLockAcquireRelease(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	var out bytes.Buffer
	release, tok, err := l.acquire(ctx, "shop", "", &out)
	if err != nil || tok == "" {
		t.Fatalf("acquire = %q, %v", tok, err)
	}
	if out.Len() != 0 {
		t.Fatalf("an uncontended acquire printed %q", out.String())
	}
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("tryAcquire succeeded while the lock is held")
	}
	// Other apps are independent.
	relOther, ok := l.tryAcquire("blog")
	if !ok {
		t.Fatal("another app's lock is blocked")
	}
	relOther()
	release()
	rel2, tok2, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok {
		t.Fatal("a new holder got the previous holder's token")
	}
	rel2()
}

func TestLockReleaseIsIdempotent(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	r1, _, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r1()
	r2, _, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r1() // a stale second release must not free the new holder's lock
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("a second call of an old release freed someone else's lock")
	}
	r2()
	if rel, ok := l.tryAcquire("shop"); !ok {
		t.Fatal("lock not free after its holder released it")
	} else {
		rel()
	}
}

func TestLockTokenReentry(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	release, tok, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A nested call with the holder's token returns at once, with a
	// release that does not free the outer lock.
	var out bytes.Buffer
	done := make(chan struct{})
	var nested func()
	var nestedTok string
	go func() {
		defer close(done)
		nested, nestedTok, err = l.acquire(ctx, "shop", tok, &out)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("acquire with the holder's token waited for the lock")
	}
	if err != nil || nestedTok != tok {
		t.Fatalf("nested acquire = %q, %v; want the holder's token", nestedTok, err)
	}
	if out.Len() != 0 {
		t.Fatalf("nested acquire printed %q", out.String())
	}
	nested()
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("the nested release freed the outer lock")
	}

	// A token of another app, or a stale one, does not get in.
	relBlog, blogTok, err := l.acquire(ctx, "blog", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, _, err := l.acquire(short, "shop", blogTok, nil); err == nil {
		t.Fatal("another app's token took the lock")
	}
	cancel()
	relBlog()
	release()
	r2, _, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := l.acquire(short, "shop", tok, nil); err == nil {
		t.Fatal("a released holder's token took the lock of the next holder")
	}
	r2()
}

func TestLockStaleTokenOnFreeLock(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	release, tok, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	// The lock is free; its last holder's token must not pass for holding it.
	r, tok2, err := l.acquire(ctx, "shop", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok {
		t.Fatal("a released holder's token was accepted as holding the lock")
	}
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("acquire with a stale token returned without taking the lock")
	}
	r()
}

func TestLockWaiterProceedsAfterRelease(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	release, _, err := l.acquire(ctx, "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	var got atomic.Bool
	var released atomic.Bool
	done := make(chan error, 1)
	go func() {
		rel, _, err := l.acquire(ctx, "shop", "", &out)
		if err == nil {
			if !released.Load() {
				err = errors.New("the waiter got the lock before it was released")
			}
			got.Store(true)
			rel()
		}
		done <- err
	}()
	waitFor(t, "the waiting message", func() bool { return out.String() != "" })
	if want := "-----> Waiting for another operation on shop to finish...\n"; out.String() != want {
		t.Fatalf("waiter printed %q, want %q", out.String(), want)
	}
	time.Sleep(20 * time.Millisecond)
	if got.Load() {
		t.Fatal("the waiter got the lock while it was held")
	}
	released.Store(true)
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not proceed after release")
	}
	if rel, ok := l.tryAcquire("shop"); !ok {
		t.Fatal("lock not free after the waiter released it")
	} else {
		rel()
	}
}

func TestLockWaitCanceled(t *testing.T) {
	l := newLocks()
	release, _, err := l.acquire(context.Background(), "shop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		rel, _, err := l.acquire(ctx, "shop", "", &out)
		if rel != nil {
			rel()
		}
		done <- err
	}()
	waitFor(t, "the waiter to wait", func() bool { return strings.Contains(out.String(), "Waiting") })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "shop") {
			t.Fatalf("canceled wait = %v, want a context.Canceled error naming the app", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("canceling the context did not end the wait")
	}
	// The canceled waiter left the lock to its holder.
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("a canceled waiter freed the holder's lock")
	}
	release()
	if rel, ok := l.tryAcquire("shop"); !ok {
		t.Fatal("the canceled waiter took the lock after all")
	} else {
		rel()
	}
}

func TestTryAcquire(t *testing.T) {
	l := newLocks()
	rel, ok := l.tryAcquire("shop")
	if !ok {
		t.Fatal("tryAcquire of a free lock failed")
	}
	if _, ok := l.tryAcquire("shop"); ok {
		t.Fatal("tryAcquire succeeded twice")
	}
	// acquire waits for a tryAcquire holder.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if _, _, err := l.acquire(short, "shop", "", &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire while tryAcquire holds = %v", err)
	}
	if !strings.Contains(out.String(), "Waiting for another operation on shop") {
		t.Fatalf("acquire printed %q", out.String())
	}
	rel()
	rel2, ok := l.tryAcquire("shop")
	if !ok {
		t.Fatal("tryAcquire failed after release")
	}
	rel2()
}

func TestLockMutualExclusion(t *testing.T) {
	l := newLocks()
	ctx := context.Background()
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				rel, _, err := l.acquire(ctx, "shop", "", nil)
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				time.Sleep(50 * time.Microsecond)
				inside.Add(-1)
				rel()
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
}

func TestPipelineLocked(t *testing.T) {
	p := &Pipeline{locks: locks{m: map[string]*appLock{}}}
	if p.Locked("shop") {
		t.Fatal("Locked before any lock")
	}
	rel, tok, err := p.Lock(context.Background(), "shop", nil)
	if err != nil || tok == "" {
		t.Fatalf("Lock = %q, %v", tok, err)
	}
	if !p.Locked("shop") || p.Locked("blog") {
		t.Fatal("Locked does not reflect the held lock")
	}
	rel()
	if p.Locked("shop") {
		t.Fatal("Locked after release")
	}
}

// The holder's release waits for a nested call on its token: the app is
// not free while the nested call still runs.
func TestLockHolderWaitsForNested(t *testing.T) {
	l := &locks{m: map[string]*appLock{}}
	ctx := context.Background()
	outer, tok, err := l.acquire(ctx, "app", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, _, err := l.acquire(ctx, "app", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		outer()
		close(released)
	}()
	select {
	case <-released:
		t.Fatal("the holder's release returned while a nested call still held the app")
	case <-time.After(100 * time.Millisecond):
	}
	if _, ok := l.tryAcquire("app"); ok {
		t.Fatal("the app was free while a nested call still ran")
	}
	inner()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder's release did not return after the nested call ended")
	}
	rel, ok := l.tryAcquire("app")
	if !ok {
		t.Fatal("the app is not free after both released")
	}
	rel()
}
