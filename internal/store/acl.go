package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// aclSchema: acl_entries grants a key one app; key_roles marks keys that
// are not admins. Both follow renames and go with their app or key.
const aclSchema = `
CREATE TABLE acl_entries (
	app      TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	key_name TEXT NOT NULL REFERENCES ssh_keys(name) ON UPDATE CASCADE ON DELETE CASCADE,
	added_at INTEGER NOT NULL,
	PRIMARY KEY (app, key_name)
);
CREATE INDEX acl_entries_key ON acl_entries(key_name);
CREATE TABLE key_roles (
	key_name TEXT PRIMARY KEY REFERENCES ssh_keys(name) ON UPDATE CASCADE ON DELETE CASCADE,
	role     TEXT NOT NULL
);
`

// Key roles. A key without a recorded role is an admin.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// AddACL lets key reach app. ErrExists when it already does; ErrNotFound
// (wrapped, naming what is missing) when the app or the key does not exist.
func (s *Store) AddACL(ctx context.Context, app, key string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if err := exists(ctx, t, `SELECT 1 FROM apps WHERE name = ?`, app); err != nil {
			return fmt.Errorf("app %s: %w", app, err)
		}
		if err := exists(ctx, t, `SELECT 1 FROM ssh_keys WHERE name = ?`, key); err != nil {
			return fmt.Errorf("key %s: %w", key, err)
		}
		_, err := t.ExecContext(ctx, `INSERT INTO acl_entries(app, key_name, added_at) VALUES (?, ?, ?)`, app, key, now())
		if isUniqueViolation(err) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("add %s to the ACL of %s: %w", key, app, err)
		}
		return nil
	})
}

func exists(ctx context.Context, t *sql.Tx, q string, arg string) error {
	var one int
	err := t.QueryRowContext(ctx, q, arg).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// RemoveACL removes key from app's ACL; ErrNotFound when it was not there.
func (s *Store) RemoveACL(ctx context.Context, app, key string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM acl_entries WHERE app = ? AND key_name = ?`, app, key)
	if err != nil {
		return fmt.Errorf("remove %s from the ACL of %s: %w", key, app, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ACLs returns, for every app with an ACL entry (or only app when it is
// not ""), the keys that reach it, sorted.
func (s *Store) ACLs(ctx context.Context, app string) (map[string][]string, error) {
	q := `SELECT app, key_name FROM acl_entries ORDER BY app, key_name`
	args := []any{}
	if app != "" {
		q = `SELECT app, key_name FROM acl_entries WHERE app = ? ORDER BY key_name`
		args = append(args, app)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read ACLs: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var a, k string
		if err := rows.Scan(&a, &k); err != nil {
			return nil, fmt.Errorf("read ACLs: %w", err)
		}
		out[a] = append(out[a], k)
	}
	return out, rows.Err()
}

// KeyApps returns the apps key reaches through ACL entries, sorted.
func (s *Store) KeyApps(ctx context.Context, key string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app FROM acl_entries WHERE key_name = ? ORDER BY app`, key)
	if err != nil {
		return nil, fmt.Errorf("read the apps of key %s: %w", key, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("read the apps of key %s: %w", key, err)
		}
		out = append(out, a)
	}
	sort.Strings(out)
	return out, rows.Err()
}

// KeyRole returns key's role: RoleAdmin unless it was set to RoleUser.
func (s *Store) KeyRole(ctx context.Context, key string) (string, error) {
	var role string
	err := s.db.QueryRowContext(ctx, `SELECT role FROM key_roles WHERE key_name = ?`, key).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return RoleAdmin, nil
	}
	if err != nil {
		return "", fmt.Errorf("read the role of key %s: %w", key, err)
	}
	return role, nil
}

// SetKeyRole sets key's role (RoleAdmin or RoleUser); ErrNotFound when no
// key has that name.
func (s *Store) SetKeyRole(ctx context.Context, key, role string) error {
	if role != RoleAdmin && role != RoleUser {
		return fmt.Errorf("invalid role %q: use admin or user", role)
	}
	return s.tx(ctx, func(t *sql.Tx) error {
		if err := exists(ctx, t, `SELECT 1 FROM ssh_keys WHERE name = ?`, key); err != nil {
			return err
		}
		var err error
		if role == RoleAdmin {
			_, err = t.ExecContext(ctx, `DELETE FROM key_roles WHERE key_name = ?`, key)
		} else {
			_, err = t.ExecContext(ctx, `INSERT INTO key_roles(key_name, role) VALUES (?, ?) ON CONFLICT(key_name) DO UPDATE SET role = excluded.role`, key, role)
		}
		if err != nil {
			return fmt.Errorf("set the role of key %s: %w", key, err)
		}
		return nil
	})
}
