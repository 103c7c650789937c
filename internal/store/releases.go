package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Release statuses.
const (
	ReleaseDeploying = "deploying"
	ReleaseSucceeded = "succeeded"
	ReleaseFailed    = "failed"
)

// Release is an immutable numbered snapshot of what an app runs: image, env,
// process commands and formation. Only its status changes after creation.
type Release struct {
	App     string
	Version int
	ImageID string
	GitRev  string
	// Env is the app's config (global overlaid with the app's) at release time.
	Env map[string]string
	// AppEnv is the app's own config at release time (without the global
	// config), restored by a rollback.
	AppEnv map[string]string
	// AppJSON is the effective app.json of the release (CHECKS folded in).
	AppJSON string
	// Builder made the image: dockerfile, herokuish, image.
	Builder string
	// Processes maps a process type to its command; "" runs the image's CMD.
	Processes map[string]string
	Formation map[string]int
	Status    string
	// Reason says what made the release ("git push", "config:set"…);
	// CreatedBy who (an SSH key name, or "local").
	Reason     string
	CreatedBy  string
	CreatedAt  time.Time
	FinishedAt time.Time
	Error      string
}

const releaseCols = `app, version, image_id, git_rev, env, processes, formation, status, reason, created_by, created_at, finished_at, error, app_json, app_env, builder`

func (s *Store) scanRelease(row interface{ Scan(...any) error }) (Release, error) {
	var r Release
	var env, appEnv []byte
	var procs, form string
	var created, finished int64
	if err := row.Scan(&r.App, &r.Version, &r.ImageID, &r.GitRev, &env, &procs, &form, &r.Status, &r.Reason, &r.CreatedBy, &created, &finished, &r.Error, &r.AppJSON, &appEnv, &r.Builder); err != nil {
		return r, err
	}
	if len(appEnv) > 0 {
		plain, err := s.crypt.open(appEnv, "release-app-env")
		if err != nil {
			return r, fmt.Errorf("release %s v%d app env: %w", r.App, r.Version, err)
		}
		if err := json.Unmarshal(plain, &r.AppEnv); err != nil {
			return r, fmt.Errorf("release %s v%d app env: %w", r.App, r.Version, err)
		}
	}
	r.CreatedAt, r.FinishedAt = fromMillis(created), fromMillis(finished)
	plain, err := s.crypt.open(env, "release-env")
	if err != nil {
		return r, fmt.Errorf("release %s v%d env: %w", r.App, r.Version, err)
	}
	if err := json.Unmarshal(plain, &r.Env); err != nil {
		return r, fmt.Errorf("release %s v%d env: %w", r.App, r.Version, err)
	}
	if err := json.Unmarshal([]byte(procs), &r.Processes); err != nil {
		return r, fmt.Errorf("release %s v%d processes: %w", r.App, r.Version, err)
	}
	if err := json.Unmarshal([]byte(form), &r.Formation); err != nil {
		return r, fmt.Errorf("release %s v%d formation: %w", r.App, r.Version, err)
	}
	return r, nil
}

// CreateRelease stores r under the next version number of its app, with
// status deploying, and returns it as stored.
func (s *Store) CreateRelease(ctx context.Context, r Release) (Release, error) {
	env, err := json.Marshal(r.Env)
	if err != nil {
		return r, fmt.Errorf("encode release env: %w", err)
	}
	appEnv, err := json.Marshal(r.AppEnv)
	if err != nil {
		return r, fmt.Errorf("encode release env: %w", err)
	}
	procs, _ := json.Marshal(r.Processes)
	form, _ := json.Marshal(r.Formation)
	sealed := s.crypt.seal(env, "release-env")
	sealedApp := s.crypt.seal(appEnv, "release-app-env")
	r.Status = ReleaseDeploying
	ts := now()
	r.CreatedAt = fromMillis(ts)
	err = s.tx(ctx, func(t *sql.Tx) error {
		if err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?`, r.App).Scan(&r.Version); err != nil {
			return err
		}
		_, err := t.ExecContext(ctx, `INSERT INTO releases(`+releaseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?)`,
			r.App, r.Version, r.ImageID, r.GitRev, sealed, string(procs), string(form), r.Status, r.Reason, r.CreatedBy, ts, r.AppJSON, sealedApp, r.Builder)
		return err
	})
	if err != nil {
		return r, fmt.Errorf("create release of %s: %w", r.App, err)
	}
	return r, nil
}

// FinishRelease records the outcome of deploying a release.
func (s *Store) FinishRelease(ctx context.Context, app string, version int, status, errMsg string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE releases SET status = ?, error = ?, finished_at = ? WHERE app = ? AND version = ?`, status, errMsg, now(), app, version)
	if err != nil {
		return fmt.Errorf("finish release %s v%d: %w", app, version, err)
	}
	return nil
}

// PromoteRelease makes version the app's serving release and records it as
// succeeded, in one transaction: after a crash the store never names a
// release current that did not pass its checks.
func (s *Store) PromoteRelease(ctx context.Context, app string, version int, source, meta string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `UPDATE releases SET status = ?, error = '', finished_at = ? WHERE app = ? AND version = ?`, ReleaseSucceeded, now(), app, version); err != nil {
			return fmt.Errorf("promote release %s v%d: %w", app, version, err)
		}
		if _, err := t.ExecContext(ctx, `UPDATE apps SET current_release = ?, deploy_source = ?, source_meta = ? WHERE name = ?`, version, source, meta, app); err != nil {
			return fmt.Errorf("promote release %s v%d: %w", app, version, err)
		}
		return nil
	})
}

// Release returns one release, or ErrNotFound.
func (s *Store) Release(ctx context.Context, app string, version int) (Release, error) {
	r, err := s.scanRelease(s.db.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE app = ? AND version = ?`, app, version))
	if errors.Is(err, sql.ErrNoRows) {
		return Release{}, ErrNotFound
	}
	if err != nil {
		return Release{}, fmt.Errorf("read release %s v%d: %w", app, version, err)
	}
	return r, nil
}

// Releases lists app's releases, newest first.
func (s *Store) Releases(ctx context.Context, app string) ([]Release, error) {
	return s.queryReleases(ctx, `SELECT `+releaseCols+` FROM releases WHERE app = ? ORDER BY version DESC`, app)
}

// ReleasesWithStatus lists every app's releases in the given status.
func (s *Store) ReleasesWithStatus(ctx context.Context, status string) ([]Release, error) {
	return s.queryReleases(ctx, `SELECT `+releaseCols+` FROM releases WHERE status = ? ORDER BY app, version`, status)
}

func (s *Store) queryReleases(ctx context.Context, q string, args ...any) ([]Release, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		r, err := s.scanRelease(rows)
		if err != nil {
			return nil, fmt.Errorf("list releases: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
