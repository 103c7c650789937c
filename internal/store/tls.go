package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds the TLS and DNS state: the key/value space certmagic keeps
// its ACME accounts, certificates and challenge tokens in (with its locks),
// the manual certificates of apps, and the DNS records berth created.

// CertEntry describes one key of the certificate key/value space.
type CertEntry struct {
	Key      string
	Size     int64
	Modified time.Time
}

// CertPut stores value at key (replacing it). A sealed value is encrypted
// at rest (private keys).
func (s *Store) CertPut(ctx context.Context, key string, value []byte, sealed bool) error {
	v, flag := value, 0
	if sealed {
		v, flag = s.crypt.seal(value, "cert:"+key), 1
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO cert_storage(key, value, sealed, size, modified) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET value = excluded.value, sealed = excluded.sealed, size = excluded.size, modified = excluded.modified`,
		key, v, flag, len(value), now())
	if err != nil {
		return fmt.Errorf("store certificate data %s: %w", key, err)
	}
	return nil
}

// CertGet returns the value at key, or ErrNotFound.
func (s *Store) CertGet(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	var sealed int
	err := s.db.QueryRowContext(ctx, `SELECT value, sealed FROM cert_storage WHERE key = ?`, key).Scan(&v, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load certificate data %s: %w", key, err)
	}
	if sealed == 1 {
		if v, err = s.crypt.open(v, "cert:"+key); err != nil {
			return nil, fmt.Errorf("load certificate data %s: %w", key, err)
		}
	}
	return v, nil
}

// CertDelete removes key and every key below it (key + "/…").
func (s *Store) CertDelete(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM cert_storage WHERE key = ? OR substr(key, 1, ?) = ?`, key, len(key)+1, key+"/")
	if err != nil {
		return fmt.Errorf("delete certificate data %s: %w", key, err)
	}
	return nil
}

// CertEntries lists the keys equal to prefix or below it ("" lists every
// key), sorted.
func (s *Store) CertEntries(ctx context.Context, prefix string) ([]CertEntry, error) {
	var rows *sql.Rows
	var err error
	if prefix == "" {
		rows, err = s.db.QueryContext(ctx, `SELECT key, size, modified FROM cert_storage ORDER BY key`)
	} else {
		rows, err = s.db.QueryContext(ctx, `SELECT key, size, modified FROM cert_storage WHERE key = ? OR substr(key, 1, ?) = ? ORDER BY key`,
			prefix, len(prefix)+1, prefix+"/")
	}
	if err != nil {
		return nil, fmt.Errorf("list certificate data %s: %w", prefix, err)
	}
	defer rows.Close()
	var out []CertEntry
	for rows.Next() {
		var e CertEntry
		var mod int64
		if err := rows.Scan(&e.Key, &e.Size, &mod); err != nil {
			return nil, fmt.Errorf("list certificate data %s: %w", prefix, err)
		}
		e.Modified = fromMillis(mod)
		out = append(out, e)
	}
	return out, rows.Err()
}

// CertTryLock takes the named lock for owner unless another owner holds an
// unexpired one. It reports whether the lock is now owner's.
func (s *Store) CertTryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	t := now()
	res, err := s.db.ExecContext(ctx, `INSERT INTO cert_locks(name, owner, expires) VALUES (?, ?, ?)
ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires WHERE cert_locks.expires < ?`,
		name, owner, t+ttl.Milliseconds(), t)
	if err != nil {
		return false, fmt.Errorf("take lock %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("take lock %s: %w", name, err)
	}
	return n == 1, nil
}

// CertRefreshLock extends owner's lock; it reports false when owner no
// longer holds it.
func (s *Store) CertRefreshLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE cert_locks SET expires = ? WHERE name = ? AND owner = ?`, now()+ttl.Milliseconds(), name, owner)
	if err != nil {
		return false, fmt.Errorf("refresh lock %s: %w", name, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// CertUnlock releases owner's lock (a no-op if owner does not hold it).
func (s *Store) CertUnlock(ctx context.Context, name, owner string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM cert_locks WHERE name = ? AND owner = ?`, name, owner); err != nil {
		return fmt.Errorf("release lock %s: %w", name, err)
	}
	return nil
}

// AppCert is a certificate an operator gave an app (certs:add) or berth
// generated for it (certs:generate).
type AppCert struct {
	App string
	// Kind is "manual" or "self-signed".
	Kind      string
	CertPEM   []byte
	KeyPEM    []byte
	CreatedAt time.Time
}

// SetAppCert stores app's certificate, replacing any; the key is sealed.
func (s *Store) SetAppCert(ctx context.Context, c AppCert) error {
	sealed := s.crypt.seal(c.KeyPEM, "app-cert-key")
	_, err := s.db.ExecContext(ctx, `INSERT INTO app_certs(app, kind, cert, key, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(app) DO UPDATE SET kind = excluded.kind, cert = excluded.cert, key = excluded.key, created_at = excluded.created_at`,
		c.App, c.Kind, c.CertPEM, sealed, now())
	if err != nil {
		return fmt.Errorf("store certificate of %s: %w", c.App, err)
	}
	return nil
}

// AppCertOf returns app's certificate, or ErrNotFound.
func (s *Store) AppCertOf(ctx context.Context, app string) (AppCert, error) {
	cs, err := s.appCerts(ctx, `WHERE app = ?`, app)
	if err != nil {
		return AppCert{}, err
	}
	if len(cs) == 0 {
		return AppCert{}, ErrNotFound
	}
	return cs[0], nil
}

// AppCerts returns every app's certificate.
func (s *Store) AppCerts(ctx context.Context) ([]AppCert, error) { return s.appCerts(ctx, ``) }

func (s *Store) appCerts(ctx context.Context, where string, args ...any) ([]AppCert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app, kind, cert, key, created_at FROM app_certs `+where+` ORDER BY app`, args...)
	if err != nil {
		return nil, fmt.Errorf("read certificates: %w", err)
	}
	defer rows.Close()
	var out []AppCert
	for rows.Next() {
		var c AppCert
		var key []byte
		var created int64
		if err := rows.Scan(&c.App, &c.Kind, &c.CertPEM, &key, &created); err != nil {
			return nil, fmt.Errorf("read certificates: %w", err)
		}
		if c.KeyPEM, err = s.crypt.open(key, "app-cert-key"); err != nil {
			return nil, fmt.Errorf("read certificate key of %s: %w", c.App, err)
		}
		c.CreatedAt = fromMillis(created)
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteAppCert removes app's certificate; it reports whether there was one.
func (s *Store) DeleteAppCert(ctx context.Context, app string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM app_certs WHERE app = ?`, app)
	if err != nil {
		return false, fmt.Errorf("remove certificate of %s: %w", app, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// DNSRecord is a DNS record berth created at the DNS provider for an app.
type DNSRecord struct {
	App       string
	Zone      string
	Name      string // fully qualified, without the trailing dot
	Type      string // A or AAAA
	Value     string
	TTL       int
	CreatedAt time.Time
}

// DNSRecords returns the records of app (every app's when app is "").
func (s *Store) DNSRecords(ctx context.Context, app string) ([]DNSRecord, error) {
	q := `SELECT app, zone, name, type, value, ttl, created_at FROM dns_records`
	var args []any
	if app != "" {
		q += ` WHERE app = ?`
		args = append(args, app)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY app, name, type, value`, args...)
	if err != nil {
		return nil, fmt.Errorf("read DNS records: %w", err)
	}
	defer rows.Close()
	var out []DNSRecord
	for rows.Next() {
		var r DNSRecord
		var created int64
		if err := rows.Scan(&r.App, &r.Zone, &r.Name, &r.Type, &r.Value, &r.TTL, &created); err != nil {
			return nil, fmt.Errorf("read DNS records: %w", err)
		}
		r.CreatedAt = fromMillis(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// AddDNSRecord records a record created for an app.
func (s *Store) AddDNSRecord(ctx context.Context, r DNSRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO dns_records(app, zone, name, type, value, ttl, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(name, type, value) DO UPDATE SET app = excluded.app, zone = excluded.zone, ttl = excluded.ttl`,
		r.App, r.Zone, strings.ToLower(r.Name), r.Type, r.Value, r.TTL, now())
	if err != nil {
		return fmt.Errorf("record DNS record %s %s: %w", r.Name, r.Type, err)
	}
	return nil
}

// DeleteDNSRecord forgets a record.
func (s *Store) DeleteDNSRecord(ctx context.Context, r DNSRecord) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM dns_records WHERE name = ? AND type = ? AND value = ?`, strings.ToLower(r.Name), r.Type, r.Value)
	if err != nil {
		return fmt.Errorf("forget DNS record %s %s: %w", r.Name, r.Type, err)
	}
	return nil
}

// DeleteSecretSetting removes a sealed global setting.
func (s *Store) DeleteSecretSetting(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM global_settings WHERE key = ?`, "sealed:"+key); err != nil {
		return fmt.Errorf("remove setting %s: %w", key, err)
	}
	return nil
}

// tlsSchema is the migration that adds the tables above.
const tlsSchema = `
CREATE TABLE cert_storage (
	key      TEXT PRIMARY KEY,
	value    BLOB NOT NULL,
	sealed   INTEGER NOT NULL DEFAULT 0,
	size     INTEGER NOT NULL,
	modified INTEGER NOT NULL
);
CREATE TABLE cert_locks (
	name    TEXT PRIMARY KEY,
	owner   TEXT NOT NULL,
	expires INTEGER NOT NULL
);
CREATE TABLE app_certs (
	app        TEXT PRIMARY KEY REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	kind       TEXT NOT NULL,
	cert       BLOB NOT NULL,
	key        BLOB NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE dns_records (
	app        TEXT NOT NULL REFERENCES apps(name) ON UPDATE CASCADE ON DELETE CASCADE,
	zone       TEXT NOT NULL,
	name       TEXT NOT NULL,
	type       TEXT NOT NULL,
	value      TEXT NOT NULL,
	ttl        INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (name, type, value)
);
CREATE INDEX dns_records_app ON dns_records(app);
`
