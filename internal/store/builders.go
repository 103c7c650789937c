package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DockerOptions returns app's docker options for phase, in the order added.
func (s *Store) DockerOptions(ctx context.Context, app, phase string) ([]string, error) {
	return s.strings(ctx, `SELECT option FROM docker_options WHERE app = ? AND phase = ? ORDER BY position`, app, phase)
}

// SetDockerOptions replaces app's docker options for phase.
func (s *Store) SetDockerOptions(ctx context.Context, app, phase string, opts []string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `DELETE FROM docker_options WHERE app = ? AND phase = ?`, app, phase); err != nil {
			return fmt.Errorf("set docker options: %w", err)
		}
		for i, o := range opts {
			if _, err := t.ExecContext(ctx, `INSERT INTO docker_options(app, phase, position, option) VALUES (?, ?, ?, ?)`, app, phase, i, o); err != nil {
				return fmt.Errorf("set docker options: %w", err)
			}
		}
		return nil
	})
}

// Buildpacks returns app's buildpacks in order.
func (s *Store) Buildpacks(ctx context.Context, app string) ([]string, error) {
	return s.strings(ctx, `SELECT url FROM buildpacks WHERE app = ? ORDER BY position`, app)
}

// SetBuildpacks replaces app's buildpacks.
func (s *Store) SetBuildpacks(ctx context.Context, app string, urls []string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `DELETE FROM buildpacks WHERE app = ?`, app); err != nil {
			return fmt.Errorf("set buildpacks: %w", err)
		}
		for i, u := range urls {
			if _, err := t.ExecContext(ctx, `INSERT INTO buildpacks(app, position, url) VALUES (?, ?, ?)`, app, i, u); err != nil {
				return fmt.Errorf("set buildpacks: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Build statuses.
const (
	BuildRunning   = "running"
	BuildSucceeded = "succeeded"
	BuildFailed    = "failed"
)

// Build is one build of an app and its log.
type Build struct {
	App        string
	ID         int
	Builder    string
	Source     string
	Status     string
	ImageID    string
	StartedAt  time.Time
	FinishedAt time.Time
	Output     []byte
}

// StartBuild records a running build and returns its id.
func (s *Store) StartBuild(ctx context.Context, app, source string) (int, error) {
	var id int
	err := s.tx(ctx, func(t *sql.Tx) error {
		if err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM builds WHERE app = ?`, app).Scan(&id); err != nil {
			return err
		}
		_, err := t.ExecContext(ctx, `INSERT INTO builds(app, id, source, status, started_at) VALUES (?, ?, ?, ?, ?)`, app, id, source, BuildRunning, now())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record build of %s: %w", app, err)
	}
	return id, nil
}

// FinishBuild records a build's outcome and log (the last maxBuildLog bytes).
func (s *Store) FinishBuild(ctx context.Context, app string, id int, builder, status, imageID string, output []byte) error {
	const maxBuildLog = 1 << 20
	if len(output) > maxBuildLog {
		output = append([]byte("[…earlier output trimmed…]\n"), output[len(output)-maxBuildLog:]...)
	}
	_, err := s.db.ExecContext(ctx, `UPDATE builds SET builder = ?, status = ?, image_id = ?, finished_at = ?, output = ? WHERE app = ? AND id = ?`,
		builder, status, imageID, now(), output, app, id)
	if err != nil {
		return fmt.Errorf("record build %d of %s: %w", id, app, err)
	}
	return nil
}

// Builds lists app's builds, newest first, without their output.
func (s *Store) Builds(ctx context.Context, app string) ([]Build, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app, id, builder, source, status, image_id, started_at, finished_at FROM builds WHERE app = ? ORDER BY id DESC`, app)
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	defer rows.Close()
	var out []Build
	for rows.Next() {
		var b Build
		var st, fin int64
		if err := rows.Scan(&b.App, &b.ID, &b.Builder, &b.Source, &b.Status, &b.ImageID, &st, &fin); err != nil {
			return nil, err
		}
		b.StartedAt, b.FinishedAt = fromMillis(st), fromMillis(fin)
		out = append(out, b)
	}
	return out, rows.Err()
}

// BuildOutput returns one build with its output; id 0 means the newest.
func (s *Store) BuildOutput(ctx context.Context, app string, id int) (Build, error) {
	q := `SELECT app, id, builder, source, status, image_id, started_at, finished_at, output FROM builds WHERE app = ? AND id = ?`
	args := []any{app, id}
	if id == 0 {
		q = `SELECT app, id, builder, source, status, image_id, started_at, finished_at, output FROM builds WHERE app = ? ORDER BY id DESC LIMIT 1`
		args = []any{app}
	}
	var b Build
	var st, fin int64
	err := s.db.QueryRowContext(ctx, q, args...).Scan(&b.App, &b.ID, &b.Builder, &b.Source, &b.Status, &b.ImageID, &st, &fin, &b.Output)
	if errors.Is(err, sql.ErrNoRows) {
		return b, ErrNotFound
	}
	if err != nil {
		return b, fmt.Errorf("read build: %w", err)
	}
	b.StartedAt, b.FinishedAt = fromMillis(st), fromMillis(fin)
	return b, nil
}

// FailRunningBuilds marks builds left running by a crash as failed.
func (s *Store) FailRunningBuilds(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `UPDATE builds SET status = ?, finished_at = ? WHERE status = ?`, BuildFailed, now(), BuildRunning)
	return err
}
