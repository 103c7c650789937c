package store

import (
	"context"
	"database/sql"
	"fmt"
)

// portsSchema stores each app's port mappings (ports:set…).
const portsSchema = `
CREATE TABLE port_mappings (
	app            TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	position       INTEGER NOT NULL,
	scheme         TEXT NOT NULL,
	host_port      INTEGER NOT NULL,
	container_port INTEGER NOT NULL,
	PRIMARY KEY (app, scheme, host_port)
);
CREATE INDEX port_mappings_host_port ON port_mappings(host_port);
`

// PortMapping maps a host port to a container port of an app's web
// processes: scheme "http", "https" or "tcp".
type PortMapping struct {
	App           string
	Scheme        string
	HostPort      int
	ContainerPort int
}

// String renders the mapping as Dokku does: SCHEME:HOST_PORT:CONTAINER_PORT.
func (m PortMapping) String() string {
	return fmt.Sprintf("%s:%d:%d", m.Scheme, m.HostPort, m.ContainerPort)
}

// PortMappings returns app's port mappings in the order they were set.
func (s *Store) PortMappings(ctx context.Context, app string) ([]PortMapping, error) {
	return s.portMappings(ctx, `WHERE app = ?`, app)
}

// AllPortMappings returns every app's port mappings, by app.
func (s *Store) AllPortMappings(ctx context.Context) ([]PortMapping, error) {
	return s.portMappings(ctx, ``)
}

func (s *Store) portMappings(ctx context.Context, where string, args ...any) ([]PortMapping, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app, scheme, host_port, container_port FROM port_mappings `+where+` ORDER BY app, position`, args...)
	if err != nil {
		return nil, fmt.Errorf("read port mappings: %w", err)
	}
	defer rows.Close()
	var out []PortMapping
	for rows.Next() {
		var m PortMapping
		if err := rows.Scan(&m.App, &m.Scheme, &m.HostPort, &m.ContainerPort); err != nil {
			return nil, fmt.Errorf("read port mappings: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// SetPortMappings replaces app's port mappings (none: back to the default).
// The caller validates them; a duplicate scheme and host port fails.
func (s *Store) SetPortMappings(ctx context.Context, app string, ms []PortMapping) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM apps WHERE name = ?`, app).Scan(&n); err != nil {
			return fmt.Errorf("set port mappings of %s: %w", app, err)
		}
		if n == 0 {
			return ErrNotFound
		}
		if _, err := t.ExecContext(ctx, `DELETE FROM port_mappings WHERE app = ?`, app); err != nil {
			return fmt.Errorf("set port mappings of %s: %w", app, err)
		}
		for i, m := range ms {
			if _, err := t.ExecContext(ctx, `INSERT INTO port_mappings(app, position, scheme, host_port, container_port) VALUES (?, ?, ?, ?, ?)`,
				app, i, m.Scheme, m.HostPort, m.ContainerPort); err != nil {
				if isUniqueViolation(err) {
					return fmt.Errorf("port mapping %s is given twice", m)
				}
				return fmt.Errorf("set port mappings of %s: %w", app, err)
			}
		}
		return nil
	})
}
