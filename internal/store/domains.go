package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// DomainConflictError says a domain already belongs to another app.
type DomainConflictError struct{ Domain, App string }

func (e *DomainConflictError) Error() string {
	return fmt.Sprintf("domain %s is already used by app %s", e.Domain, e.App)
}

// Domains returns app's custom domains in the order they were added.
func (s *Store) Domains(ctx context.Context, app string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT domain FROM domains WHERE app = ? ORDER BY added_at, domain`, app)
	if err != nil {
		return nil, fmt.Errorf("read domains of %s: %w", app, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("read domains of %s: %w", app, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDomains adds and removes custom domains of app in one transaction;
// with clear, every existing domain of app goes first. Adding a domain owned
// by another app fails with *DomainConflictError and changes nothing.
func (s *Store) UpdateDomains(ctx context.Context, app string, add, remove []string, clear bool) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if clear {
			if _, err := t.ExecContext(ctx, `DELETE FROM domains WHERE app = ?`, app); err != nil {
				return fmt.Errorf("clear domains of %s: %w", app, err)
			}
		}
		for _, d := range remove {
			if _, err := t.ExecContext(ctx, `DELETE FROM domains WHERE app = ? AND domain = ?`, app, d); err != nil {
				return fmt.Errorf("remove domain %s: %w", d, err)
			}
		}
		// added_at orders an app's domains: one past the highest so far.
		var ts int64
		if err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(added_at), 0) + 1 FROM domains`).Scan(&ts); err != nil {
			return fmt.Errorf("order domains: %w", err)
		}
		for i, d := range add {
			var owner string
			err := t.QueryRowContext(ctx, `SELECT app FROM domains WHERE domain = ?`, d).Scan(&owner)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("look up domain %s: %w", d, err)
			case owner == app:
				continue
			default:
				return &DomainConflictError{Domain: d, App: owner}
			}
			if _, err := t.ExecContext(ctx, `INSERT INTO domains(domain, app, added_at) VALUES (?, ?, ?)`, d, app, ts+int64(i)); err != nil {
				return fmt.Errorf("add domain %s: %w", d, err)
			}
		}
		return nil
	})
}

// DomainOwner returns the app that owns domain, or ErrNotFound.
func (s *Store) DomainOwner(ctx context.Context, domain string) (string, error) {
	var app string
	err := s.db.QueryRowContext(ctx, `SELECT app FROM domains WHERE domain = ?`, domain).Scan(&app)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("look up domain %s: %w", domain, err)
	}
	return app, nil
}
