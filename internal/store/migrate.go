package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; each runs once, in its own transaction.
// Never edit a released migration: append a new one.
var migrations = []string{
	// 1: the foundation schema.
	`
CREATE TABLE apps (
	name            TEXT PRIMARY KEY,
	created_at      INTEGER NOT NULL,
	current_release INTEGER NOT NULL DEFAULT 0,
	stopped         INTEGER NOT NULL DEFAULT 0,
	deploy_source   TEXT NOT NULL DEFAULT '',
	source_meta     TEXT NOT NULL DEFAULT ''
);
CREATE TABLE app_settings (
	app   TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (app, key)
);
CREATE TABLE global_settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE app_config (
	app   TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	key   TEXT NOT NULL,
	value BLOB NOT NULL,
	PRIMARY KEY (app, key)
);
CREATE TABLE global_config (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
CREATE TABLE domains (
	domain TEXT PRIMARY KEY,
	app    TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	added_at INTEGER NOT NULL
);
CREATE INDEX domains_app ON domains(app);
CREATE TABLE formation (
	app      TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	process  TEXT NOT NULL,
	quantity INTEGER NOT NULL,
	PRIMARY KEY (app, process)
);
CREATE TABLE releases (
	app         TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	version     INTEGER NOT NULL,
	image_id    TEXT NOT NULL,
	git_rev     TEXT NOT NULL DEFAULT '',
	env         BLOB NOT NULL,
	processes   TEXT NOT NULL,
	formation   TEXT NOT NULL,
	status      TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (app, version)
);
CREATE TABLE ssh_keys (
	name        TEXT PRIMARY KEY,
	fingerprint TEXT NOT NULL UNIQUE,
	public_key  TEXT NOT NULL,
	created_at  INTEGER NOT NULL
);
CREATE TABLE events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	app     TEXT NOT NULL,
	at      INTEGER NOT NULL,
	kind    TEXT NOT NULL,
	message TEXT NOT NULL
);
CREATE INDEX events_app ON events(app, id);
`,
	// 2: releases keep their app.json and the app's own config (apart from
	// the global config merged into env), so a rollback restores both.
	`
ALTER TABLE releases ADD COLUMN app_json TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN app_env BLOB;
`,
	// 3: builders: docker options per phase, buildpacks, build logs.
	`
CREATE TABLE docker_options (
	app      TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	phase    TEXT NOT NULL,
	position INTEGER NOT NULL,
	option   TEXT NOT NULL,
	PRIMARY KEY (app, phase, position)
);
CREATE TABLE buildpacks (
	app      TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	position INTEGER NOT NULL,
	url      TEXT NOT NULL,
	PRIMARY KEY (app, position)
);
CREATE TABLE builds (
	app         TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	id          INTEGER NOT NULL,
	builder     TEXT NOT NULL DEFAULT '',
	source      TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL,
	image_id    TEXT NOT NULL DEFAULT '',
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL DEFAULT 0,
	output      BLOB NOT NULL DEFAULT x'',
	PRIMARY KEY (app, id)
);
`,
	// 4: the builder that made a release (buildpack images run their
	// process commands through the image's launcher and a shell).
	`
ALTER TABLE releases ADD COLUMN builder TEXT NOT NULL DEFAULT '';
`,
	// 5: TLS and DNS: certmagic's storage and locks, apps' manual
	// certificates, DNS records created for apps (see tls.go).
	tlsSchema,
	// 6: port mappings (ports:*), see ports.go.
	portsSchema,
	// 7: access control (acl:*): which apps a key reaches, key roles; see acl.go.
	aclSchema,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	var current int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this berth (%d): upgrade berth", current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		err := s.tx(ctx, func(t *sql.Tx) error {
			if _, err := t.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := t.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, v, now())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %d: %w", v, err)
		}
	}
	return nil
}

// SchemaVersion returns the version of the applied schema.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
