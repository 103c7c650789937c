package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Config returns the config vars of app, or the global ones when app is "".
func (s *Store) Config(ctx context.Context, app string) (map[string]string, error) {
	var rows *sql.Rows
	var err error
	if app == "" {
		rows, err = s.db.QueryContext(ctx, `SELECT key, value FROM global_config`)
	} else {
		rows, err = s.db.QueryContext(ctx, `SELECT key, value FROM app_config WHERE app = ?`, app)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k string
		var sealed []byte
		if err := rows.Scan(&k, &sealed); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		v, err := s.crypt.open(sealed, "config:"+k)
		if err != nil {
			return nil, fmt.Errorf("read config %s: %w", k, err)
		}
		out[k] = string(v)
	}
	return out, rows.Err()
}

// UpdateConfig sets the vars in set and removes the keys in unset, in one
// transaction, for app (or the global config when app is ""). With clear,
// every existing var is removed first.
func (s *Store) UpdateConfig(ctx context.Context, app string, set map[string]string, unset []string, clear bool) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if clear {
			var err error
			if app == "" {
				_, err = t.ExecContext(ctx, `DELETE FROM global_config`)
			} else {
				_, err = t.ExecContext(ctx, `DELETE FROM app_config WHERE app = ?`, app)
			}
			if err != nil {
				return fmt.Errorf("clear config: %w", err)
			}
		}
		for k, v := range set {
			sealed := s.crypt.seal([]byte(v), "config:"+k)
			var err error
			if app == "" {
				_, err = t.ExecContext(ctx, `INSERT INTO global_config(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, k, sealed)
			} else {
				_, err = t.ExecContext(ctx, `INSERT INTO app_config(app, key, value) VALUES (?, ?, ?) ON CONFLICT(app, key) DO UPDATE SET value = excluded.value`, app, k, sealed)
			}
			if err != nil {
				return fmt.Errorf("set config %s: %w", k, err)
			}
		}
		for _, k := range unset {
			var err error
			if app == "" {
				_, err = t.ExecContext(ctx, `DELETE FROM global_config WHERE key = ?`, k)
			} else {
				_, err = t.ExecContext(ctx, `DELETE FROM app_config WHERE app = ? AND key = ?`, app, k)
			}
			if err != nil {
				return fmt.Errorf("unset config %s: %w", k, err)
			}
		}
		return nil
	})
}

// MergedConfig returns the global config overlaid with app's own.
func (s *Store) MergedConfig(ctx context.Context, app string) (map[string]string, error) {
	g, err := s.Config(ctx, "")
	if err != nil {
		return nil, err
	}
	a, err := s.Config(ctx, app)
	if err != nil {
		return nil, err
	}
	for k, v := range a {
		g[k] = v
	}
	return g, nil
}
