package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// App is one application.
type App struct {
	Name      string
	CreatedAt time.Time
	// CurrentRelease is the version of the release that serves, 0 when none.
	CurrentRelease int
	// Stopped is true after ps:stop until ps:start.
	Stopped bool
	// DeploySource is how the current release was made ("git", "config"…),
	// SourceMeta its detail (a git revision…).
	DeploySource string
	SourceMeta   string
}

const appCols = `name, created_at, current_release, stopped, deploy_source, source_meta`

func scanApp(row interface{ Scan(...any) error }) (App, error) {
	var a App
	var created int64
	err := row.Scan(&a.Name, &created, &a.CurrentRelease, &a.Stopped, &a.DeploySource, &a.SourceMeta)
	a.CreatedAt = fromMillis(created)
	return a, err
}

// CreateApp adds an app; ErrExists when the name is taken.
func (s *Store) CreateApp(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO apps(name, created_at) VALUES (?, ?)`, name, now())
	if err != nil {
		if isUniqueViolation(err) {
			return ErrExists
		}
		return fmt.Errorf("create app %s: %w", name, err)
	}
	return nil
}

// App returns one app, or ErrNotFound.
func (s *Store) App(ctx context.Context, name string) (App, error) {
	a, err := scanApp(s.db.QueryRowContext(ctx, `SELECT `+appCols+` FROM apps WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, ErrNotFound
	}
	if err != nil {
		return App{}, fmt.Errorf("read app %s: %w", name, err)
	}
	return a, nil
}

// Apps lists every app by name.
func (s *Store) Apps(ctx context.Context) ([]App, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+appCols+` FROM apps ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var out []App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteApp removes an app and everything that belongs to it.
func (s *Store) DeleteApp(ctx context.Context, name string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM apps WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete app %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		_, err = t.ExecContext(ctx, `DELETE FROM events WHERE app = ?`, name)
		return err
	})
}

// RenameApp renames an app; every row that belongs to it follows.
func (s *Store) RenameApp(ctx context.Context, from, to string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `UPDATE apps SET name = ? WHERE name = ?`, to, from)
		if err != nil {
			if isUniqueViolation(err) {
				return ErrExists
			}
			return fmt.Errorf("rename app %s: %w", from, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		_, err = t.ExecContext(ctx, `UPDATE events SET app = ? WHERE app = ?`, to, from)
		return err
	})
}

// SetCurrentRelease records which release serves the app and how it was made.
func (s *Store) SetCurrentRelease(ctx context.Context, app string, version int, source, meta string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE apps SET current_release = ?, deploy_source = ?, source_meta = ? WHERE name = ?`, version, source, meta, app)
	if err != nil {
		return fmt.Errorf("set current release of %s: %w", app, err)
	}
	return nil
}

// SetStopped records whether the app was stopped with ps:stop.
func (s *Store) SetStopped(ctx context.Context, app string, stopped bool) error {
	_, err := s.db.ExecContext(ctx, `UPDATE apps SET stopped = ? WHERE name = ?`, stopped, app)
	if err != nil {
		return fmt.Errorf("set stopped state of %s: %w", app, err)
	}
	return nil
}

func isUniqueViolation(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "UNIQUE constraint failed") || strings.Contains(err.Error(), "PRIMARY KEY"))
}
