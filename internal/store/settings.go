package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

// Setting returns a setting of app (or a global one when app is "") and
// whether it is set.
func (s *Store) Setting(ctx context.Context, app, key string) (string, bool, error) {
	var v string
	var err error
	if app == "" {
		err = s.db.QueryRowContext(ctx, `SELECT value FROM global_settings WHERE key = ?`, key).Scan(&v)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT value FROM app_settings WHERE app = ? AND key = ?`, app, key).Scan(&v)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	return v, true, nil
}

// EffectiveSetting is the value of key that applies to app: the app's own,
// else the global one; ok says whether either is set. With app "" it reads
// the global value only.
func (s *Store) EffectiveSetting(ctx context.Context, app, key string) (string, bool, error) {
	if app != "" {
		if v, ok, err := s.Setting(ctx, app, key); err != nil || ok {
			return v, ok, err
		}
	}
	return s.Setting(ctx, "", key)
}

// SetSetting sets a setting of app (global when app is ""); an empty value
// removes it.
func (s *Store) SetSetting(ctx context.Context, app, key, value string) error {
	var err error
	switch {
	case app == "" && value == "":
		_, err = s.db.ExecContext(ctx, `DELETE FROM global_settings WHERE key = ?`, key)
	case app == "":
		_, err = s.db.ExecContext(ctx, `INSERT INTO global_settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	case value == "":
		_, err = s.db.ExecContext(ctx, `DELETE FROM app_settings WHERE app = ? AND key = ?`, app, key)
	default:
		_, err = s.db.ExecContext(ctx, `INSERT INTO app_settings(app, key, value) VALUES (?, ?, ?) ON CONFLICT(app, key) DO UPDATE SET value = excluded.value`, app, key, value)
	}
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

// SecretSetting is Setting for a global value sealed at rest (a private
// key, say).
func (s *Store) SecretSetting(ctx context.Context, key string) (string, bool, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM global_settings WHERE key = ?`, "sealed:"+key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	plain, err := s.crypt.open(v, "setting:"+key)
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	return string(plain), true, nil
}

// SetSecretSetting stores a global value sealed at rest.
func (s *Store) SetSecretSetting(ctx context.Context, key, value string) error {
	sealed := s.crypt.seal([]byte(value), "setting:"+key)
	_, err := s.db.ExecContext(ctx, `INSERT INTO global_settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, "sealed:"+key, sealed)
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

// Formation returns how many containers of each process type app wants.
func (s *Store) Formation(ctx context.Context, app string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT process, quantity FROM formation WHERE app = ?`, app)
	if err != nil {
		return nil, fmt.Errorf("read formation of %s: %w", app, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var p string
		var q int
		if err := rows.Scan(&p, &q); err != nil {
			return nil, fmt.Errorf("read formation of %s: %w", app, err)
		}
		out[p] = q
	}
	return out, rows.Err()
}

// SetFormation sets the quantities of the given process types of app.
func (s *Store) SetFormation(ctx context.Context, app string, f map[string]int) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		for p, q := range f {
			if _, err := t.ExecContext(ctx, `INSERT INTO formation(app, process, quantity) VALUES (?, ?, ?) ON CONFLICT(app, process) DO UPDATE SET quantity = excluded.quantity`, app, p, q); err != nil {
				return fmt.Errorf("set formation %s=%d: %w", p, q, err)
			}
		}
		return nil
	})
}

// InstanceID returns this data dir's random identity, created on first use.
// Containers carry it so berth servers sharing an engine stay apart.
func (s *Store) InstanceID(ctx context.Context) (string, error) {
	v, ok, err := s.Setting(ctx, "", "instance-id")
	if err != nil || ok {
		return v, err
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate instance id: %w", err)
	}
	id := hex.EncodeToString(b)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO global_settings(key, value) VALUES ('instance-id', ?) ON CONFLICT(key) DO NOTHING`, id); err != nil {
		return "", fmt.Errorf("store instance id: %w", err)
	}
	v, _, err = s.Setting(ctx, "", "instance-id")
	return v, err
}
