package certs

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/store"
)

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "berth.db"), filepath.Join(dir, "config.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

func TestStorageFileSemantics(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	s := NewStorage(st, nil)

	if _, err := s.Load(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v", err)
	}
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v", err)
	}
	if _, err := s.List(ctx, "a", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of a missing dir: %v", err)
	}
	for k, v := range map[string]string{
		"certificates/ca/example.com/example.com.crt":  "crt",
		"certificates/ca/example.com/example.com.key":  "key",
		"certificates/ca/example.com/example.com.json": "{}",
		"certificates/ca/other.org/other.org.crt":      "crt2",
		"certificatesX/z":       "not below certificates",
		"acme/ca/users/x/x.key": "account key",
	} {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite.
	if err := s.Store(ctx, "certificates/ca/other.org/other.org.crt", []byte("crt3")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Load(ctx, "certificates/ca/other.org/other.org.crt"); err != nil || string(v) != "crt3" {
		t.Fatalf("Load after overwrite: %q %v", v, err)
	}
	if v, err := s.Load(ctx, "/certificates/ca/example.com/example.com.key/"); err != nil || string(v) != "key" {
		t.Fatalf("Load of a sealed key with slashes around: %q %v", v, err)
	}

	// "a" is a prefix of "a/b" but not of "ab/c".
	if !s.Exists(ctx, "certificates") || !s.Exists(ctx, "certificates/ca/example.com/example.com.crt") {
		t.Fatal("Exists of a directory and a file")
	}
	if s.Exists(ctx, "certificates/c") || s.Exists(ctx, "certif") {
		t.Fatal("Exists of a partial component")
	}

	got, err := s.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(got, []string{"certificates/ca"}) {
		t.Fatalf("List non-recursive: %v %v", got, err)
	}
	got, err = s.List(ctx, "certificates/ca", false)
	if err != nil || !slices.Equal(got, []string{"certificates/ca/example.com", "certificates/ca/other.org"}) {
		t.Fatalf("List non-recursive: %v %v", got, err)
	}
	got, err = s.List(ctx, "certificates/ca/example.com", false)
	if err != nil || len(got) != 3 {
		t.Fatalf("List of files: %v %v", got, err)
	}
	got, err = s.List(ctx, "certificates", true)
	if err != nil || !slices.Contains(got, "certificates/ca/example.com/example.com.key") || !slices.Contains(got, "certificates/ca/other.org") || slices.Contains(got, "certificatesX/z") {
		t.Fatalf("List recursive: %v %v", got, err)
	}

	fi, err := s.Stat(ctx, "certificates/ca/example.com/example.com.key")
	if err != nil || !fi.IsTerminal || fi.Size != 3 || fi.Modified.IsZero() || time.Since(fi.Modified) > time.Minute {
		t.Fatalf("Stat of a file: %+v %v", fi, err)
	}
	fi, err = s.Stat(ctx, "certificates/ca")
	if err != nil || fi.IsTerminal {
		t.Fatalf("Stat of a directory: %+v %v", fi, err)
	}

	// Delete of a directory removes what is below it only.
	if err := s.Delete(ctx, "certificates/ca/example.com"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/example.com") || !s.Exists(ctx, "certificates/ca/other.org") || !s.Exists(ctx, "certificatesX/z") {
		t.Fatal("Delete of a directory")
	}
	if err := s.Delete(ctx, "certificates/ca/example.com"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := s.Delete(ctx, ""); err == nil {
		t.Fatal("Delete of everything was allowed")
	}
}

func TestStoragePrivateKeysSealed(t *testing.T) {
	ctx := context.Background()
	st, dir := openStore(t)
	s := NewStorage(st, nil)
	secret := "-----BEGIN EC PRIVATE KEY-----\nsecret material\n-----END EC PRIVATE KEY-----\n"
	if err := s.Store(ctx, "certificates/ca/x/x.key", []byte(secret)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// The raw database must not hold the key in clear.
	raw := readFile(t, filepath.Join(dir, "berth.db")) + readFile(t, filepath.Join(dir, "berth.db-wal"))
	if contains(raw, "secret material") {
		t.Fatal("a private key is stored in clear")
	}
	st2, err := store.Open(ctx, filepath.Join(dir, "berth.db"), filepath.Join(dir, "config.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	v, err := NewStorage(st2, nil).Load(ctx, "certificates/ca/x/x.key")
	if err != nil || string(v) != secret {
		t.Fatalf("Load of a sealed key: %q %v", v, err)
	}
}

func TestStorageLocks(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	a, b := NewStorage(st, nil), NewStorage(st, nil) // two servers sharing a store

	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_x"); err != nil || ok {
		t.Fatalf("TryLock of a held lock from another server: %v %v", ok, err)
	}
	if ok, err := a.TryLock(ctx, "issue_cert_x"); err != nil || ok {
		t.Fatalf("TryLock of a held lock from the same server: %v %v", ok, err)
	}
	// Another name is independent.
	if ok, err := b.TryLock(ctx, "issue_cert_y"); err != nil || !ok {
		t.Fatalf("TryLock of a free lock: %v %v", ok, err)
	}
	b.Unlock(ctx, "issue_cert_y")

	// Lock waits until the holder unlocks.
	var got atomic.Bool
	done := make(chan error)
	go func() {
		err := b.Lock(ctx, "issue_cert_x")
		got.Store(true)
		done <- err
	}()
	time.Sleep(3 * lockPoll)
	if got.Load() {
		t.Fatal("Lock returned while another server held the lock")
	}
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return after Unlock")
	}
	if err := a.Unlock(ctx, "issue_cert_x"); err == nil {
		t.Fatal("Unlock of a lock held by someone else succeeded")
	}

	// Lock honours cancellation.
	cctx, cancel := context.WithTimeout(ctx, 2*lockPoll)
	defer cancel()
	if err := a.Lock(cctx, "issue_cert_x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a cancelled context: %v", err)
	}
	b.Unlock(ctx, "issue_cert_x")

	// Mutual exclusion among many goroutines of one server.
	var mu sync.Mutex
	inside, maxInside := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Lock(ctx, "m"); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			maxInside = max(maxInside, inside)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			a.Unlock(ctx, "m")
		}()
	}
	wg.Wait()
	if maxInside != 1 {
		t.Fatalf("%d holders at once", maxInside)
	}
}

func TestStorageStaleLockTakenOver(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	// A holder that died: its row expired.
	if ok, err := st.CertTryLock(ctx, "l", "dead-server", -time.Second); err != nil || !ok {
		t.Fatal(ok, err)
	}
	s := NewStorage(st, nil)
	if ok, err := s.TryLock(ctx, "l"); err != nil || !ok {
		t.Fatalf("a stale lock was not taken over: %v %v", ok, err)
	}
	s.Unlock(ctx, "l")
}
