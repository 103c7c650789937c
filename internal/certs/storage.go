package certs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/berth-paas/berth/internal/store"
)

// Lock timings of [Storage]: a lock not refreshed for lockTTL is stale and
// may be taken over; a held lock is refreshed every lockRefresh; a waiter
// polls every lockPoll.
const (
	lockTTL     = 2 * time.Minute
	lockRefresh = 30 * time.Second
	lockPoll    = 250 * time.Millisecond
)

// Storage is certmagic's storage (ACME accounts, certificates, challenge
// tokens) in berth's SQLite store, so every server sharing the store shares
// them. Private keys (keys ending in ".key") are sealed at rest. Its locks
// are rows with an owner and an expiry that the holder refreshes; a lock
// whose holder died expires after two minutes.
type Storage struct {
	st  *store.Store
	log *slog.Logger
	// owner identifies this Storage in lock rows.
	owner string

	mu   sync.Mutex
	held map[string]context.CancelFunc // lock name -> stops its refresher
}

var (
	_ certmagic.Storage   = (*Storage)(nil)
	_ certmagic.TryLocker = (*Storage)(nil)
)

// NewStorage returns certmagic storage backed by st.
func NewStorage(st *store.Store, log *slog.Logger) *Storage {
	if log == nil {
		log = slog.Default()
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return &Storage{st: st, log: log, owner: hex.EncodeToString(b), held: map[string]context.CancelFunc{}}
}

// cleanKey normalises a certmagic key: no leading or trailing slash.
func cleanKey(k string) string { return strings.Trim(k, "/") }

// sealed says whether the value at key is a private key.
func sealed(key string) bool { return strings.HasSuffix(key, ".key") }

// Store puts value at key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = cleanKey(key)
	if key == "" {
		return errors.New("store certificate data: empty key")
	}
	return s.st.CertPut(ctx, key, value, sealed(key))
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.st.CertGet(ctx, cleanKey(key))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load %s: %w", key, fs.ErrNotExist)
	}
	return v, err
}

// Delete removes key and, if it is a directory, everything below it.
// A missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = cleanKey(key)
	if key == "" {
		return errors.New("delete certificate data: refusing to delete everything")
	}
	return s.st.CertDelete(ctx, key)
}

// Exists reports whether key is a file or a directory.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	es, err := s.st.CertEntries(ctx, cleanKey(key))
	return err == nil && len(es) > 0
}

// List returns the keys below dir: with recursive, every file and
// directory at any depth; otherwise the files and directories directly in
// dir. A dir that does not exist is an error wrapping fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = cleanKey(dir)
	es, err := s.st.CertEntries(ctx, dir)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range es {
		rest, ok := strings.CutPrefix(e.Key, prefix)
		if !ok || rest == "" {
			continue // dir itself is a file
		}
		parts := strings.Split(rest, "/")
		if !recursive {
			parts = parts[:1]
		}
		for i := range parts {
			k := prefix + strings.Join(parts[:i+1], "/")
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	sort.Strings(out)
	return out, nil
}

// Stat describes key: a file with its size and modification time, or a
// directory.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = cleanKey(key)
	es, err := s.st.CertEntries(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(es) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
	}
	for _, e := range es {
		if e.Key == key {
			return certmagic.KeyInfo{Key: key, Modified: e.Modified, Size: e.Size, IsTerminal: true}, nil
		}
	}
	return certmagic.KeyInfo{Key: key, Modified: es[0].Modified, IsTerminal: false}, nil
}

// Lock takes the named lock, waiting while another holder (in this process
// or another one sharing the store) has it.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for lock %s: %w", name, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// TryLock takes the named lock if it is free (or stale) and reports whether
// it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	if _, mine := s.held[name]; mine {
		// Held by another goroutine of this process: a lock is not
		// re-entrant.
		s.mu.Unlock()
		return false, nil
	}
	s.mu.Unlock()
	ok, err := s.st.CertTryLock(ctx, name, s.owner, lockTTL)
	if err != nil || !ok {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, mine := s.held[name]; mine {
		// Another goroutine of this process took it between our check and
		// the row update (the row's owner is this process for both).
		return false, nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.held[name] = cancel
	go s.refresh(rctx, name)
	return true, nil
}

// refresh keeps a held lock fresh until ctx is cancelled by Unlock.
func (s *Storage) refresh(ctx context.Context, name string) {
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ok, err := s.st.CertRefreshLock(ctx, name, s.owner, lockTTL)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("refresh certificate lock", "lock", name, "err", err)
			} else if err == nil && !ok {
				s.log.Warn("certificate lock was taken over while held", "lock", name)
			}
		}
	}
}

// Unlock releases the named lock.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	cancel, ok := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("unlock %s: not held", name)
	}
	cancel()
	return s.st.CertUnlock(context.WithoutCancel(ctx), name, s.owner)
}

// String names the storage in certmagic's logs.
func (s *Storage) String() string { return "berth-sqlite" }
