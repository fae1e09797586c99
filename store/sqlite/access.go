package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/store"
)

const keyColumns = `id, name, role, merchant_id, salt, secret_hash, previous_salt, previous_secret_hash,
	previous_expires_at, created_at, rotated_at, revoked_at`

// CreateKey stores a new API key.
func (s *Store) CreateKey(ctx context.Context, k *auth.Key) error {
	return s.writeTx(ctx, "create key", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, string(k.Role), k.MerchantID, k.Salt, k.SecretHash, k.PreviousSalt, k.PreviousSecretHash,
			nullMicros(k.PreviousExpiresAt), micros(k.CreatedAt), nullMicros(k.RotatedAt), nullMicros(k.RevokedAt))
		if code, _, ok := constraint(err); ok && code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return fmt.Errorf("sqlite: key %s exists already: %w", k.ID, coupon.ErrConflict)
		}
		if err != nil {
			return wrap("create key", err)
		}
		return nil
	})
}

// GetKey returns a key, or ErrNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (*auth.Key, error) {
	k, err := scanKey(s.reader.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get key", err)
	}
	return k, nil
}

// ListKeys returns keys in id order after the cursor.
func (s *Store) ListKeys(ctx context.Context, f store.KeyFilter) ([]*auth.Key, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id > ? ORDER BY id LIMIT ?`,
		f.Cursor, clampLimit(f.Limit))
	if err != nil {
		return nil, wrap("list keys", err)
	}
	defer rows.Close()
	var out []*auth.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap("list keys", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list keys", err)
	}
	return out, nil
}

// RevokeKey revokes a key, keeping the first revocation time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (*auth.Key, error) {
	var k *auth.Key
	err := s.writeTx(ctx, "revoke key", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id); err != nil {
			return wrap("revoke key", err)
		}
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: key %s: %w", id, store.ErrNotFound)
		}
		return wrapIf("revoke key", err)
	})
	return k, err
}

// RotateKey gives the key a new secret, keeping the old one as previous.
func (s *Store) RotateKey(ctx context.Context, p store.RotateKey) (*auth.Key, error) {
	var k *auth.Key
	err := s.writeTx(ctx, "rotate key", func(tx *sql.Tx) error {
		old, err := scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, p.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: key %s: %w", p.ID, store.ErrNotFound)
		}
		if err != nil {
			return wrap("rotate key", err)
		}
		if old.Revoked() {
			return fmt.Errorf("sqlite: key %s: %w", p.ID, store.ErrKeyRevoked)
		}
		prevSalt, prevHash := old.Salt, old.SecretHash
		if p.PreviousExpiresAt.IsZero() {
			prevSalt, prevHash = "", ""
		}
		_, err = tx.ExecContext(ctx, `UPDATE api_keys SET salt = ?, secret_hash = ?, previous_salt = ?, previous_secret_hash = ?,
			previous_expires_at = ?, rotated_at = ? WHERE id = ?`,
			p.Salt, p.SecretHash, prevSalt, prevHash, nullMicros(p.PreviousExpiresAt), micros(p.At), p.ID)
		if err != nil {
			return wrap("rotate key", err)
		}
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, p.ID))
		return wrapIf("rotate key", err)
	})
	return k, err
}

func scanKey(row scanner) (*auth.Key, error) {
	var k auth.Key
	var role string
	var prevExp, rotated, revoked sql.NullInt64
	var created int64
	if err := row.Scan(&k.ID, &k.Name, &role, &k.MerchantID, &k.Salt, &k.SecretHash, &k.PreviousSalt, &k.PreviousSecretHash,
		&prevExp, &created, &rotated, &revoked); err != nil {
		return nil, err
	}
	k.Role = auth.Role(role)
	k.PreviousExpiresAt, k.CreatedAt = fromNullMicros(prevExp), fromMicros(created)
	k.RotatedAt, k.RevokedAt = fromNullMicros(rotated), fromNullMicros(revoked)
	return &k, nil
}

// nextVersions takes n list versions: the update of list_version's row makes
// writers of lists take turns (every write goes through the one writer
// connection anyway), so versions are committed in order.
func nextVersions(ctx context.Context, tx *sql.Tx, n int) (first int64, err error) {
	var last int64
	if err := tx.QueryRowContext(ctx, `UPDATE list_version SET version = version + ? WHERE id = 1 RETURNING version`, n).
		Scan(&last); err != nil {
		return 0, err
	}
	return last - int64(n) + 1, nil
}

// PutListEntries adds or updates entries, each with a new version.
func (s *Store) PutListEntries(ctx context.Context, entries []access.Entry, at time.Time) (int64, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	var version int64
	err := s.writeTx(ctx, "put list entries", func(tx *sql.Tx) error {
		v, err := nextVersions(ctx, tx, len(entries))
		if err != nil {
			return wrap("put list entries", err)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO list_entries (scope, list, kind, value, reason, version, removed, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)
			ON CONFLICT (scope, list, kind, value) DO UPDATE SET reason = excluded.reason, version = excluded.version,
				created_at = CASE WHEN removed = 1 THEN excluded.created_at ELSE created_at END,
				removed = 0, updated_at = excluded.updated_at`)
		if err != nil {
			return wrap("put list entries", err)
		}
		defer stmt.Close()
		for i, e := range entries {
			if _, err := stmt.ExecContext(ctx, e.Scope, string(e.List), string(e.Kind), e.Value, e.Reason, v+int64(i),
				micros(at), micros(at)); err != nil {
				return wrap("put list entries", err)
			}
		}
		version = v + int64(len(entries)) - 1
		return nil
	})
	return version, err
}

// RemoveListEntries removes entries, leaving tombstones.
func (s *Store) RemoveListEntries(ctx context.Context, entries []access.Entry, at time.Time) (int, int64, error) {
	if len(entries) == 0 {
		return 0, 0, nil
	}
	var removed int
	var version int64
	err := s.writeTx(ctx, "remove list entries", func(tx *sql.Tx) error {
		v, err := nextVersions(ctx, tx, len(entries))
		if err != nil {
			return wrap("remove list entries", err)
		}
		stmt, err := tx.PrepareContext(ctx, `UPDATE list_entries SET removed = 1, version = ?, updated_at = ?
			WHERE scope = ? AND list = ? AND kind = ? AND value = ? AND removed = 0`)
		if err != nil {
			return wrap("remove list entries", err)
		}
		defer stmt.Close()
		// Versions left unused by entries that were not there are gaps,
		// which readers do not mind.
		for i, e := range entries {
			res, err := stmt.ExecContext(ctx, v+int64(i), micros(at), e.Scope, string(e.List), string(e.Kind), e.Value)
			if err != nil {
				return wrap("remove list entries", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				removed++
				version = v + int64(i)
			}
		}
		return nil
	})
	return removed, version, err
}

// ListEntries lists one list of a scope by (kind, value).
func (s *Store) ListEntries(ctx context.Context, f store.ListEntryFilter) ([]access.Entry, error) {
	q := `SELECT scope, list, kind, value, reason, created_at, updated_at FROM list_entries
		WHERE scope = ? AND list = ? AND removed = 0 AND (kind, value) > (?, ?)`
	args := []any{f.Scope, string(f.List), string(f.AfterKind), f.AfterValue}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, string(f.Kind))
	}
	q += ` ORDER BY kind, value LIMIT ?`
	args = append(args, clampLimit(f.Limit))
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list entries", err)
	}
	defer rows.Close()
	var out []access.Entry
	for rows.Next() {
		var e access.Entry
		var list, kind string
		var created, updated int64
		if err := rows.Scan(&e.Scope, &list, &kind, &e.Value, &e.Reason, &created, &updated); err != nil {
			return nil, wrap("list entries", err)
		}
		e.List, e.Kind, e.CreatedAt, e.UpdatedAt = access.List(list), access.Kind(kind), fromMicros(created), fromMicros(updated)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list entries", err)
	}
	return out, nil
}

// ListChanges returns changes after a version, in version order.
func (s *Store) ListChanges(ctx context.Context, after int64, limit int) ([]access.Change, error) {
	switch {
	case limit <= 0:
		limit = 1000
	case limit > 10_000:
		limit = 10_000
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT scope, list, kind, value, reason, version, removed, created_at, updated_at
		FROM list_entries WHERE version > ? ORDER BY version LIMIT ?`, after, limit)
	if err != nil {
		return nil, wrap("list changes", err)
	}
	defer rows.Close()
	var out []access.Change
	for rows.Next() {
		var c access.Change
		var list, kind string
		var created, updated int64
		if err := rows.Scan(&c.Scope, &list, &kind, &c.Value, &c.Reason, &c.Version, &c.Removed, &created, &updated); err != nil {
			return nil, wrap("list changes", err)
		}
		c.List, c.Kind, c.CreatedAt, c.UpdatedAt = access.List(list), access.Kind(kind), fromMicros(created), fromMicros(updated)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list changes", err)
	}
	return out, nil
}

// PutRuleSet creates or replaces a rule set.
func (s *Store) PutRuleSet(ctx context.Context, rs *risk.RuleSet) error {
	rules, err := json.Marshal(rs.Rules)
	if err != nil {
		return fmt.Errorf("sqlite: encode rules: %w", err)
	}
	return s.writeTx(ctx, "put rule set", func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `INSERT INTO risk_rule_sets (name, rules, external, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, external = excluded.external, updated_at = excluded.updated_at
			RETURNING created_at`, rs.Name, string(rules), rs.External, micros(rs.CreatedAt), micros(rs.UpdatedAt)).Scan(&created)
		if err != nil {
			return wrap("put rule set", err)
		}
		rs.CreatedAt = fromMicros(created)
		return nil
	})
}

// GetRuleSet returns a rule set, or ErrNotFound.
func (s *Store) GetRuleSet(ctx context.Context, name string) (*risk.RuleSet, error) {
	rs, err := scanRuleSet(s.reader.QueryRowContext(ctx,
		`SELECT name, rules, external, created_at, updated_at FROM risk_rule_sets WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: rule set %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get rule set", err)
	}
	return rs, nil
}

// ListRuleSets returns every rule set by name.
func (s *Store) ListRuleSets(ctx context.Context) ([]*risk.RuleSet, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT name, rules, external, created_at, updated_at FROM risk_rule_sets ORDER BY name`)
	if err != nil {
		return nil, wrap("list rule sets", err)
	}
	defer rows.Close()
	var out []*risk.RuleSet
	for rows.Next() {
		rs, err := scanRuleSet(rows)
		if err != nil {
			return nil, wrap("list rule sets", err)
		}
		out = append(out, rs)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list rule sets", err)
	}
	return out, nil
}

// DeleteRuleSet deletes a rule set.
func (s *Store) DeleteRuleSet(ctx context.Context, name string) error {
	return s.writeTx(ctx, "delete rule set", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM risk_rule_sets WHERE name = ?`, name)
		if err != nil {
			return wrap("delete rule set", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: rule set %s: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

func scanRuleSet(row scanner) (*risk.RuleSet, error) {
	var rs risk.RuleSet
	var rules string
	var created, updated int64
	if err := row.Scan(&rs.Name, &rules, &rs.External, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(rules), &rs.Rules); err != nil {
		return nil, fmt.Errorf("sqlite: rule set %s holds bad JSON: %w", rs.Name, err)
	}
	rs.CreatedAt, rs.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &rs, nil
}

// InsertRefusals records refusals in one transaction.
func (s *Store) InsertRefusals(ctx context.Context, rs []access.Refusal) error {
	if len(rs) == 0 {
		return nil
	}
	return s.writeTx(ctx, "insert refusals", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO refusals (at, code, reason, batch_id, merchant_id, user_id, phone, device_id, ip, key_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`)
		if err != nil {
			return wrap("insert refusals", err)
		}
		defer stmt.Close()
		for i := range rs {
			r := &rs[i]
			if err := stmt.QueryRowContext(ctx, micros(r.At), r.Code, r.Reason, r.BatchID, r.MerchantID, r.UserID, r.Phone,
				r.DeviceID, r.IP, r.KeyID).Scan(&r.ID); err != nil {
				return wrap("insert refusals", err)
			}
		}
		return nil
	})
}

// ListRefusals returns refusals newest first.
func (s *Store) ListRefusals(ctx context.Context, f store.RefusalFilter) ([]access.Refusal, error) {
	var where []string
	var args []any
	for _, c := range []struct {
		col, val string
	}{{"batch_id", f.BatchID}, {"merchant_id", f.MerchantID}, {"user_id", f.UserID}, {"code", f.Code}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if f.Cursor > 0 {
		where = append(where, "id < ?")
		args = append(args, f.Cursor)
	}
	q := `SELECT id, at, code, reason, batch_id, merchant_id, user_id, phone, device_id, ip, key_id FROM refusals`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, clampLimit(f.Limit))
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list refusals", err)
	}
	defer rows.Close()
	var out []access.Refusal
	for rows.Next() {
		var r access.Refusal
		var at int64
		if err := rows.Scan(&r.ID, &at, &r.Code, &r.Reason, &r.BatchID, &r.MerchantID, &r.UserID, &r.Phone, &r.DeviceID,
			&r.IP, &r.KeyID); err != nil {
			return nil, wrap("list refusals", err)
		}
		r.At = fromMicros(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list refusals", err)
	}
	return out, nil
}

// AddClaimDevices records claims' devices, ignoring claims recorded already.
func (s *Store) AddClaimDevices(ctx context.Context, ds []store.ClaimDevice) error {
	if len(ds) == 0 {
		return nil
	}
	return s.writeTx(ctx, "add claim devices", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO claim_devices (claim_id, batch_id, device_id) VALUES (?, ?, ?)
			ON CONFLICT (claim_id) DO NOTHING`)
		if err != nil {
			return wrap("add claim devices", err)
		}
		defer stmt.Close()
		for _, d := range ds {
			if _, err := stmt.ExecContext(ctx, d.ClaimID, d.BatchID, d.DeviceID); err != nil {
				return wrap("add claim devices", err)
			}
		}
		return nil
	})
}

// IdentityCounts counts a batch's claims per phone and per recorded device,
// in one read transaction.
func (s *Store) IdentityCounts(ctx context.Context, batchID string) (map[string]int, error) {
	out := map[string]int{}
	err := s.readTx(ctx, "identity counts", func(tx *sql.Tx) error {
		for _, q := range []struct {
			prefix, query string
		}{
			{"phone:", `SELECT phone, count(*) FROM claims_all WHERE batch_id = ? AND phone <> '' GROUP BY phone`},
			{"device:", `SELECT d.device_id, count(*) FROM claim_devices d JOIN claims_all c ON c.id = d.claim_id
				WHERE d.batch_id = ? GROUP BY d.device_id`},
		} {
			rows, err := tx.QueryContext(ctx, q.query, batchID)
			if err != nil {
				return wrap("identity counts", err)
			}
			for rows.Next() {
				var id string
				var n int
				if err := rows.Scan(&id, &n); err != nil {
					rows.Close()
					return wrap("identity counts", err)
				}
				out[q.prefix+id] += n
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return wrap("identity counts", err)
			}
		}
		return nil
	})
	return out, err
}

// wrapIf is wrap for an error that may be nil.
func wrapIf(op string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(op, err)
}
