package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	_, err := s.primary.Exec(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		k.ID, k.Name, string(k.Role), k.MerchantID, k.Salt, k.SecretHash, k.PreviousSalt, k.PreviousSecretHash,
		nullTime(k.PreviousExpiresAt), k.CreatedAt, nullTime(k.RotatedAt), nullTime(k.RevokedAt))
	if pe := pgError(err); pe != nil && pe.Code == uniqueViolation && pe.ConstraintName == "api_keys_pkey" {
		return fmt.Errorf("postgres: key %s exists already: %w", k.ID, coupon.ErrConflict)
	}
	if err != nil {
		return wrap("create key", err)
	}
	return nil
}

// GetKey returns a key, or ErrNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (*auth.Key, error) {
	k, err := scanKey(s.primary.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get key", err)
	}
	return k, nil
}

// ListKeys returns keys in id order after the cursor.
func (s *Store) ListKeys(ctx context.Context, f store.KeyFilter) ([]*auth.Key, error) {
	rows, err := s.primary.Query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2`,
		f.Cursor, clampLimit(f.Limit))
	if err != nil {
		return nil, wrap("list keys", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Key, error) { return scanKey(r) })
	if err != nil {
		return nil, wrap("list keys", err)
	}
	return out, nil
}

// RevokeKey revokes a key, keeping the first revocation time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (*auth.Key, error) {
	k, err := scanKey(s.primary.QueryRow(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
		RETURNING `+keyColumns, id, at))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: key %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("revoke key", err)
	}
	return k, nil
}

// RotateKey gives the key a new secret, keeping the old one as previous, in
// one statement.
func (s *Store) RotateKey(ctx context.Context, p store.RotateKey) (*auth.Key, error) {
	keep := !p.PreviousExpiresAt.IsZero()
	k, err := scanKey(s.primary.QueryRow(ctx, `UPDATE api_keys SET salt = $2, secret_hash = $3,
			previous_salt = CASE WHEN $4 THEN salt ELSE '' END,
			previous_secret_hash = CASE WHEN $4 THEN secret_hash ELSE '' END,
			previous_expires_at = $5, rotated_at = $6
		WHERE id = $1 AND revoked_at IS NULL RETURNING `+keyColumns,
		p.ID, p.Salt, p.SecretHash, keep, nullTime(p.PreviousExpiresAt), p.At))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := s.GetKey(ctx, p.ID); gerr != nil {
			return nil, gerr
		}
		return nil, fmt.Errorf("postgres: key %s: %w", p.ID, store.ErrKeyRevoked)
	}
	if err != nil {
		return nil, wrap("rotate key", err)
	}
	return k, nil
}

func scanKey(row pgx.Row) (*auth.Key, error) {
	var k auth.Key
	var role string
	var prevExp, rotated, revoked pgtype.Timestamptz
	if err := row.Scan(&k.ID, &k.Name, &role, &k.MerchantID, &k.Salt, &k.SecretHash, &k.PreviousSalt, &k.PreviousSecretHash,
		&prevExp, &k.CreatedAt, &rotated, &revoked); err != nil {
		return nil, err
	}
	k.Role = auth.Role(role)
	k.CreatedAt = utc(k.CreatedAt)
	k.PreviousExpiresAt, k.RotatedAt, k.RevokedAt = fromNullTime(prevExp), fromNullTime(rotated), fromNullTime(revoked)
	return &k, nil
}

// nextVersions takes n list versions under the row lock of list_version:
// writers of lists take turns until they commit, so versions are committed
// in order and a replica reading after version v never misses a smaller one.
func nextVersions(ctx context.Context, tx pgx.Tx, n int) (first int64, err error) {
	var last int64
	if err := tx.QueryRow(ctx, `UPDATE list_version SET version = version + $1 WHERE id = 1 RETURNING version`, n).Scan(&last); err != nil {
		return 0, err
	}
	return last - int64(n) + 1, nil
}

type entryArrays struct {
	scopes, lists, kinds, values, reasons []string
}

// entryArrays splits entries into arrays for unnest, the last of entries
// naming the same identity winning.
func toArrays(entries []access.Entry) entryArrays {
	type key struct{ scope, list, kind, value string }
	last := make(map[key]int, len(entries))
	for i, e := range entries {
		last[key{e.Scope, string(e.List), string(e.Kind), e.Value}] = i
	}
	var a entryArrays
	for i, e := range entries {
		if last[key{e.Scope, string(e.List), string(e.Kind), e.Value}] != i {
			continue
		}
		a.scopes = append(a.scopes, e.Scope)
		a.lists = append(a.lists, string(e.List))
		a.kinds = append(a.kinds, string(e.Kind))
		a.values = append(a.values, e.Value)
		a.reasons = append(a.reasons, e.Reason)
	}
	return a
}

// PutListEntries adds or updates entries in one statement, each with a new
// version.
func (s *Store) PutListEntries(ctx context.Context, entries []access.Entry, at time.Time) (int64, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	a := toArrays(entries)
	var version int64
	err := inTx(ctx, s.primary, pgx.TxOptions{}, "put list entries", func(tx pgx.Tx) error {
		first, err := nextVersions(ctx, tx, len(a.scopes))
		if err != nil {
			return wrap("put list entries", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO list_entries (scope, list, kind, value, reason, version, removed, created_at, updated_at)
			SELECT r.scope, r.list, r.kind, r.value, r.reason, $6 + r.ord - 1, false, $7, $7
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS r (scope, list, kind, value, reason, ord)
			ON CONFLICT (scope, list, kind, value) DO UPDATE SET reason = excluded.reason, version = excluded.version,
				created_at = CASE WHEN list_entries.removed THEN excluded.created_at ELSE list_entries.created_at END,
				removed = false, updated_at = excluded.updated_at`,
			a.scopes, a.lists, a.kinds, a.values, a.reasons, first, at)
		if err != nil {
			return wrap("put list entries", err)
		}
		version = first + int64(len(a.scopes)) - 1
		return nil
	})
	return version, err
}

// RemoveListEntries removes entries in one statement, leaving tombstones.
func (s *Store) RemoveListEntries(ctx context.Context, entries []access.Entry, at time.Time) (int, int64, error) {
	if len(entries) == 0 {
		return 0, 0, nil
	}
	a := toArrays(entries)
	var removed int
	var version int64
	err := inTx(ctx, s.primary, pgx.TxOptions{}, "remove list entries", func(tx pgx.Tx) error {
		first, err := nextVersions(ctx, tx, len(a.scopes))
		if err != nil {
			return wrap("remove list entries", err)
		}
		var max pgtype.Int8
		err = tx.QueryRow(ctx, `WITH done AS (
				UPDATE list_entries e SET removed = true, version = $5 + r.ord - 1, updated_at = $6
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS r (scope, list, kind, value, ord)
				WHERE e.scope = r.scope AND e.list = r.list AND e.kind = r.kind AND e.value = r.value AND NOT e.removed
				RETURNING e.version)
			SELECT count(*), max(version) FROM done`,
			a.scopes, a.lists, a.kinds, a.values, first, at).Scan(&removed, &max)
		if err != nil {
			return wrap("remove list entries", err)
		}
		version = max.Int64
		return nil
	})
	return removed, version, err
}

// ListEntries lists one list of a scope by (kind, value).
func (s *Store) ListEntries(ctx context.Context, f store.ListEntryFilter) ([]access.Entry, error) {
	q := `SELECT scope, list, kind, value, reason, created_at, updated_at FROM list_entries
		WHERE scope = $1 AND list = $2 AND NOT removed AND (kind, value) > ($3, $4)`
	args := []any{f.Scope, string(f.List), string(f.AfterKind), f.AfterValue}
	if f.Kind != "" {
		q += ` AND kind = $6`
		args = append(args, clampLimit(f.Limit), string(f.Kind))
	} else {
		args = append(args, clampLimit(f.Limit))
	}
	q += ` ORDER BY kind, value LIMIT $5`
	rows, err := s.primary.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list entries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (access.Entry, error) {
		var e access.Entry
		var list, kind string
		err := r.Scan(&e.Scope, &list, &kind, &e.Value, &e.Reason, &e.CreatedAt, &e.UpdatedAt)
		e.List, e.Kind, e.CreatedAt, e.UpdatedAt = access.List(list), access.Kind(kind), utc(e.CreatedAt), utc(e.UpdatedAt)
		return e, err
	})
	if err != nil {
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
	rows, err := s.primary.Query(ctx, `SELECT scope, list, kind, value, reason, version, removed, created_at, updated_at
		FROM list_entries WHERE version > $1 ORDER BY version LIMIT $2`, after, limit)
	if err != nil {
		return nil, wrap("list changes", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (access.Change, error) {
		var c access.Change
		var list, kind string
		err := r.Scan(&c.Scope, &list, &kind, &c.Value, &c.Reason, &c.Version, &c.Removed, &c.CreatedAt, &c.UpdatedAt)
		c.List, c.Kind, c.CreatedAt, c.UpdatedAt = access.List(list), access.Kind(kind), utc(c.CreatedAt), utc(c.UpdatedAt)
		return c, err
	})
	if err != nil {
		return nil, wrap("list changes", err)
	}
	return out, nil
}

// PutRuleSet creates or replaces a rule set.
func (s *Store) PutRuleSet(ctx context.Context, rs *risk.RuleSet) error {
	rules, err := json.Marshal(rs.Rules)
	if err != nil {
		return fmt.Errorf("postgres: encode rules: %w", err)
	}
	var created time.Time
	err = s.primary.QueryRow(ctx, `INSERT INTO risk_rule_sets (name, rules, external, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, external = excluded.external, updated_at = excluded.updated_at
		RETURNING created_at`, rs.Name, string(rules), rs.External, rs.CreatedAt, rs.UpdatedAt).Scan(&created)
	if err != nil {
		return wrap("put rule set", err)
	}
	rs.CreatedAt = utc(created)
	return nil
}

// GetRuleSet returns a rule set, or ErrNotFound.
func (s *Store) GetRuleSet(ctx context.Context, name string) (*risk.RuleSet, error) {
	rs, err := scanRuleSet(s.primary.QueryRow(ctx,
		`SELECT name, rules, external, created_at, updated_at FROM risk_rule_sets WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: rule set %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get rule set", err)
	}
	return rs, nil
}

// ListRuleSets returns every rule set by name.
func (s *Store) ListRuleSets(ctx context.Context) ([]*risk.RuleSet, error) {
	rows, err := s.primary.Query(ctx, `SELECT name, rules, external, created_at, updated_at FROM risk_rule_sets ORDER BY name`)
	if err != nil {
		return nil, wrap("list rule sets", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*risk.RuleSet, error) { return scanRuleSet(r) })
	if err != nil {
		return nil, wrap("list rule sets", err)
	}
	return out, nil
}

// DeleteRuleSet deletes a rule set.
func (s *Store) DeleteRuleSet(ctx context.Context, name string) error {
	tag, err := s.primary.Exec(ctx, `DELETE FROM risk_rule_sets WHERE name = $1`, name)
	if err != nil {
		return wrap("delete rule set", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: rule set %s: %w", name, store.ErrNotFound)
	}
	return nil
}

func scanRuleSet(row pgx.Row) (*risk.RuleSet, error) {
	var rs risk.RuleSet
	var rules []byte
	if err := row.Scan(&rs.Name, &rules, &rs.External, &rs.CreatedAt, &rs.UpdatedAt); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(rules, &rs.Rules); err != nil {
		return nil, fmt.Errorf("postgres: rule set %s holds bad JSON: %w", rs.Name, err)
	}
	rs.CreatedAt, rs.UpdatedAt = utc(rs.CreatedAt), utc(rs.UpdatedAt)
	return &rs, nil
}

// InsertRefusals records refusals in one statement.
func (s *Store) InsertRefusals(ctx context.Context, rs []access.Refusal) error {
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	at := make([]time.Time, n)
	cols := make([][]string, 9)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, r := range rs {
		at[i] = r.At
		for j, v := range []string{r.Code, r.Reason, r.BatchID, r.MerchantID, r.UserID, r.Phone, r.DeviceID, r.IP, r.KeyID} {
			cols[j][i] = v
		}
	}
	rows, err := s.primary.Query(ctx, `INSERT INTO refusals (at, code, reason, batch_id, merchant_id, user_id, phone, device_id, ip, key_id)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::text[]) RETURNING id`,
		at, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8])
	if err != nil {
		return wrap("insert refusals", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return wrap("insert refusals", err)
	}
	for i := range min(len(ids), n) {
		rs[i].ID = ids[i]
	}
	return nil
}

// ListRefusals returns refusals newest first.
func (s *Store) ListRefusals(ctx context.Context, f store.RefusalFilter) ([]access.Refusal, error) {
	var where []string
	var args []any
	for _, c := range []struct {
		col, val string
	}{{"batch_id", f.BatchID}, {"merchant_id", f.MerchantID}, {"user_id", f.UserID}, {"code", f.Code}} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, c.col+" = $"+strconv.Itoa(len(args)))
		}
	}
	if f.Cursor > 0 {
		args = append(args, f.Cursor)
		where = append(where, "id < $"+strconv.Itoa(len(args)))
	}
	q := `SELECT id, at, code, reason, batch_id, merchant_id, user_id, phone, device_id, ip, key_id FROM refusals`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, clampLimit(f.Limit))
	q += " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.primary.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list refusals", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (access.Refusal, error) {
		var x access.Refusal
		err := r.Scan(&x.ID, &x.At, &x.Code, &x.Reason, &x.BatchID, &x.MerchantID, &x.UserID, &x.Phone, &x.DeviceID, &x.IP, &x.KeyID)
		x.At = utc(x.At)
		return x, err
	})
	if err != nil {
		return nil, wrap("list refusals", err)
	}
	return out, nil
}

// AddClaimDevices records claims' devices in one statement.
func (s *Store) AddClaimDevices(ctx context.Context, ds []store.ClaimDevice) error {
	if len(ds) == 0 {
		return nil
	}
	claims, batches, devices := make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds))
	for i, d := range ds {
		claims[i], batches[i], devices[i] = d.ClaimID, d.BatchID, d.DeviceID
	}
	_, err := s.primary.Exec(ctx, `INSERT INTO claim_devices (claim_id, batch_id, device_id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (claim_id) DO NOTHING`, claims, batches, devices)
	if err != nil {
		return wrap("add claim devices", err)
	}
	return nil
}

// IdentityCounts counts a batch's claims per phone and per recorded device,
// in one statement.
func (s *Store) IdentityCounts(ctx context.Context, batchID string) (map[string]int, error) {
	rows, err := s.primary.Query(ctx, `SELECT 'phone:' || phone, count(*) FROM claims_all WHERE batch_id = $1 AND phone <> '' GROUP BY phone
		UNION ALL
		SELECT 'device:' || d.device_id, count(*) FROM claim_devices d JOIN claims_all c ON c.id = d.claim_id
		WHERE d.batch_id = $1 GROUP BY d.device_id`, batchID)
	if err != nil {
		return nil, wrap("identity counts", err)
	}
	out := map[string]int{}
	var id string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		out[id] += n
		return nil
	})
	if err != nil {
		return nil, wrap("identity counts", err)
	}
	return out, nil
}
