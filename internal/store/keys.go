package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SSHKey is a public key allowed to log in.
type SSHKey struct {
	Name        string
	Fingerprint string // SHA256:… as ssh-keygen -l prints it
	PublicKey   string // authorized_keys line
	CreatedAt   time.Time
}

// KeyConflictError says the name or the key itself is already registered.
type KeyConflictError struct{ Name, Existing string }

func (e *KeyConflictError) Error() string {
	if e.Existing != "" {
		return fmt.Sprintf("this key is already added as %s", e.Existing)
	}
	return fmt.Sprintf("a key named %s already exists", e.Name)
}

// AddKey stores k; *KeyConflictError when its name or fingerprint is taken.
func (s *Store) AddKey(ctx context.Context, k SSHKey) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		var existing string
		err := t.QueryRowContext(ctx, `SELECT name FROM ssh_keys WHERE fingerprint = ?`, k.Fingerprint).Scan(&existing)
		if err == nil {
			return &KeyConflictError{Name: k.Name, Existing: existing}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("look up key: %w", err)
		}
		_, err = t.ExecContext(ctx, `INSERT INTO ssh_keys(name, fingerprint, public_key, created_at) VALUES (?, ?, ?, ?)`, k.Name, k.Fingerprint, k.PublicKey, now())
		if isUniqueViolation(err) {
			return &KeyConflictError{Name: k.Name}
		}
		if err != nil {
			return fmt.Errorf("add key %s: %w", k.Name, err)
		}
		return nil
	})
}

// RemoveKey deletes a key by name (or by fingerprint); ErrNotFound if none.
func (s *Store) RemoveKey(ctx context.Context, nameOrFingerprint string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM ssh_keys WHERE name = ? OR fingerprint = ?`, nameOrFingerprint, nameOrFingerprint)
	if err != nil {
		return fmt.Errorf("remove key %s: %w", nameOrFingerprint, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Keys lists every key by name.
func (s *Store) Keys(ctx context.Context) ([]SSHKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, fingerprint, public_key, created_at FROM ssh_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []SSHKey
	for rows.Next() {
		var k SSHKey
		var created int64
		if err := rows.Scan(&k.Name, &k.Fingerprint, &k.PublicKey, &created); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		k.CreatedAt = fromMillis(created)
		out = append(out, k)
	}
	return out, rows.Err()
}

// KeyByFingerprint returns the key with that fingerprint, or ErrNotFound.
func (s *Store) KeyByFingerprint(ctx context.Context, fp string) (SSHKey, error) {
	var k SSHKey
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT name, fingerprint, public_key, created_at FROM ssh_keys WHERE fingerprint = ?`, fp).Scan(&k.Name, &k.Fingerprint, &k.PublicKey, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrNotFound
	}
	if err != nil {
		return k, fmt.Errorf("look up key: %w", err)
	}
	k.CreatedAt = fromMillis(created)
	return k, nil
}

// Event is one line of an app's history.
type Event struct {
	ID      int64
	App     string
	At      time.Time
	Kind    string
	Message string
}

// AddEvent appends an event to app's history.
func (s *Store) AddEvent(ctx context.Context, app, kind, msg string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO events(app, at, kind, message) VALUES (?, ?, ?, ?)`, app, now(), kind, msg)
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	return nil
}

// Events returns app's last n events, oldest first.
func (s *Store) Events(ctx context.Context, app string, n int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, app, at, kind, message FROM (SELECT * FROM events WHERE app = ? ORDER BY id DESC LIMIT ?) ORDER BY id`, app, n)
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", app, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &e.App, &at, &e.Kind, &e.Message); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", app, err)
		}
		e.At = fromMillis(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
