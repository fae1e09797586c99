package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const batchColumns = `id, name, merchant_id, type, status, total_quantity, generated_count, generated_amount,
	per_user_limit, claim_start, claim_end, claim_platforms, channel, ad_copy,
	validity_days, validity_start, validity_end,
	amount_type, amount_value, amount_min, amount_max, amount_budget,
	min_spend, percent_off, usage_platforms, code_prefix, code_length, created_at, updated_at, options, version`

// specAssignments sets the columns of a BatchSpec, in the order of specArgs.
const specAssignments = `name = ?, merchant_id = ?, type = ?, total_quantity = ?,
	per_user_limit = ?, claim_start = ?, claim_end = ?, claim_platforms = ?, channel = ?, ad_copy = ?,
	validity_days = ?, validity_start = ?, validity_end = ?,
	amount_type = ?, amount_value = ?, amount_min = ?, amount_max = ?, amount_budget = ?,
	min_spend = ?, percent_off = ?, usage_platforms = ?, code_prefix = ?, code_length = ?, options = ?`

func specArgs(sp *coupon.BatchSpec) []any {
	return []any{sp.Name, sp.MerchantID, string(sp.Type), sp.TotalQuantity,
		sp.PerUserLimit, nullMicros(sp.ClaimStart), nullMicros(sp.ClaimEnd), encodeList(sp.ClaimPlatforms), sp.Channel, sp.AdCopy,
		sp.Validity.Days, nullMicros(sp.Validity.Start), nullMicros(sp.Validity.End),
		string(sp.Amount.Type), sp.Amount.Value, sp.Amount.Min, sp.Amount.Max, sp.Amount.Budget,
		sp.MinSpend, sp.PercentOff, encodeList(sp.UsagePlatforms), sp.CodeFormat.Prefix, sp.CodeFormat.Length,
		encodeOptions(sp.BatchOptions)}
}

// CreateBatch inserts a batch and its rules in one transaction. A batch
// whose ID exists already is refused with coupon.ErrConflict.
func (s *Store) CreateBatch(ctx context.Context, b *coupon.Batch) error {
	op := "create batch " + b.ID
	return s.writeTx(ctx, op, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO batches (`+batchColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.Name, b.MerchantID, string(b.Type), string(b.Status), b.TotalQuantity, b.GeneratedCount, b.GeneratedAmount,
			b.PerUserLimit, nullMicros(b.ClaimStart), nullMicros(b.ClaimEnd), encodeList(b.ClaimPlatforms), b.Channel, b.AdCopy,
			b.Validity.Days, nullMicros(b.Validity.Start), nullMicros(b.Validity.End),
			string(b.Amount.Type), b.Amount.Value, b.Amount.Min, b.Amount.Max, b.Amount.Budget,
			b.MinSpend, b.PercentOff, encodeList(b.UsagePlatforms), b.CodeFormat.Prefix, b.CodeFormat.Length,
			micros(b.CreatedAt), micros(b.UpdatedAt), encodeOptions(b.BatchOptions), max(b.Version, 1))
		if err != nil {
			if code, _, ok := constraint(err); ok && code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
				return fmt.Errorf("sqlite: batch %s exists already: %w", b.ID, coupon.ErrConflict)
			}
			return wrap(op, err)
		}
		return insertRules(ctx, tx, op, b.ID, b.Rules)
	})
}

// insertRules inserts a batch's rules in order: their ids keep it.
func insertRules(ctx context.Context, tx *sql.Tx, op, batchID string, rules []coupon.Rule) error {
	if len(rules) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO rules (batch_id, ref_type, ref_id, use_type, value) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return wrap(op, err)
	}
	defer stmt.Close()
	for _, r := range rules {
		if _, err := stmt.ExecContext(ctx, batchID, r.RefType, r.RefID, r.UseType, r.Value); err != nil {
			return wrap(op+": rule", err)
		}
	}
	return nil
}

// UpdateBatch replaces the configuration and the rules of a draft batch
// that holds no codes, in one write transaction: the single writer keeps
// what the first statement reads until the transaction ends.
func (s *Store) UpdateBatch(ctx context.Context, p store.UpdateBatch) (*coupon.Batch, error) {
	op := "update batch " + p.ID
	var b *coupon.Batch
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		var (
			status             string
			version, generated int64
		)
		err := tx.QueryRowContext(ctx, `SELECT status, version, generated_count FROM batches WHERE id = ?`, p.ID).
			Scan(&status, &version, &generated)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: batch %s: %w", p.ID, store.ErrNotFound)
		case err != nil:
			return wrap(op, err)
		case status != string(coupon.StatusDraft):
			return fmt.Errorf("sqlite: batch %s is %s: %w", p.ID, status, store.ErrStatus)
		case p.Version != 0 && version != p.Version:
			return fmt.Errorf("sqlite: batch %s is at version %d, not %d: %w", p.ID, version, p.Version, store.ErrVersion)
		case generated != 0:
			return fmt.Errorf("sqlite: batch %s holds %d codes: %w", p.ID, generated, store.ErrHasCodes)
		}
		// The conditions again where the row changes, as in PostgreSQL.
		args := append(specArgs(&p.Spec), micros(p.At), p.ID, version)
		res, err := tx.ExecContext(ctx, `UPDATE batches SET `+specAssignments+`, version = version + 1, updated_at = ?
			WHERE id = ? AND status = 'draft' AND generated_count = 0 AND version = ?`, args...)
		if err != nil {
			return wrap(op, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if n != 1 {
			return fmt.Errorf("sqlite: %s: the batch changed under the write transaction", op)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rules WHERE batch_id = ?`, p.ID); err != nil {
			return wrap(op+": rules", err)
		}
		if err := insertRules(ctx, tx, op, p.ID, p.Spec.Rules); err != nil {
			return err
		}
		if err := s.insertOutbox(ctx, tx, op, p.Event, p.At); err != nil {
			return err
		}
		b, err = getBatch(ctx, tx, p.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// GetBatch returns a batch with its rules, or ErrNotFound.
func (s *Store) GetBatch(ctx context.Context, id string) (*coupon.Batch, error) {
	var b *coupon.Batch
	err := s.readTx(ctx, "get batch "+id, func(tx *sql.Tx) error {
		var err error
		b, err = getBatch(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ListBatches returns batches newest first (IDs sort by creation time), each
// with its rules.
func (s *Store) ListBatches(ctx context.Context, f store.BatchFilter) ([]*coupon.Batch, error) {
	var q strings.Builder
	q.WriteString(`SELECT ` + batchColumns + ` FROM batches WHERE 1 = 1`)
	var args []any
	if f.Status != "" {
		q.WriteString(` AND status = ?`)
		args = append(args, string(f.Status))
	}
	if f.MerchantID != "" {
		q.WriteString(` AND merchant_id = ?`)
		args = append(args, f.MerchantID)
	}
	if f.Cursor != "" {
		q.WriteString(` AND id < ?`)
		args = append(args, f.Cursor)
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, clampLimit(f.Limit))

	var out []*coupon.Batch
	err := s.readTx(ctx, "list batches", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return wrap("list batches", err)
		}
		defer rows.Close()
		byID := make(map[string]*coupon.Batch)
		for rows.Next() {
			b, err := scanBatch(rows)
			if err != nil {
				return err
			}
			out = append(out, b)
			byID[b.ID] = b
		}
		if err := rows.Err(); err != nil {
			return wrap("list batches", err)
		}
		if len(out) == 0 {
			return nil
		}
		ids := make([]any, len(out))
		for i, b := range out {
			ids[i] = b.ID
		}
		return readRules(ctx, tx, `SELECT batch_id, ref_type, ref_id, use_type, value FROM rules
			WHERE batch_id IN (`+placeholders(len(ids))+`) ORDER BY batch_id, id`, ids, byID)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetBatchStatus moves a batch from one of p.From to p.To and writes p.Event
// to the outbox in the same transaction.
func (s *Store) SetBatchStatus(ctx context.Context, p store.SetBatchStatus) (*coupon.Batch, error) {
	op := "set status of batch " + p.ID
	var b *coupon.Batch
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		args := make([]any, 0, 4+len(p.From))
		args = append(args, string(p.To), micros(p.At), p.ID, p.Version, p.Version)
		for _, st := range p.From {
			args = append(args, string(st))
		}
		res, err := tx.ExecContext(ctx, `UPDATE batches SET status = ?, updated_at = ?
			WHERE id = ? AND (? = 0 OR version = ?) AND status IN (`+placeholders(len(p.From))+`)`, args...)
		if err != nil {
			return wrap(op, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if n == 0 {
			var current string
			var version int64
			err := tx.QueryRowContext(ctx, `SELECT status, version FROM batches WHERE id = ?`, p.ID).Scan(&current, &version)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("sqlite: batch %s: %w", p.ID, store.ErrNotFound)
			case err != nil:
				return wrap(op, err)
			case !slices.Contains(p.From, coupon.Status(current)):
				return fmt.Errorf("sqlite: batch %s is %s, not %v: %w", p.ID, current, p.From, store.ErrStatus)
			}
			return fmt.Errorf("sqlite: batch %s is at version %d, not %d: %w", p.ID, version, p.Version, store.ErrVersion)
		}
		if err := s.insertOutbox(ctx, tx, op, p.Event, p.At); err != nil {
			return err
		}
		b, err = getBatch(ctx, tx, p.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// insertOutbox writes e, if any, to the outbox; a zero CreatedAt becomes at.
func (s *Store) insertOutbox(ctx context.Context, tx *sql.Tx, op string, e *store.Event, at time.Time) error {
	if e == nil {
		return nil
	}
	createdAt := e.CreatedAt
	if createdAt.IsZero() {
		createdAt = at
	}
	if _, err := tx.StmtContext(ctx, s.insertEvent).ExecContext(ctx,
		e.Type, e.AggregateID, string(e.Payload), micros(createdAt)); err != nil {
		return wrap(op+": outbox", err)
	}
	return nil
}

// ClaimedCount counts the claims of a batch; it reads only the
// (batch_id, user_id, user_seq) index.
func (s *Store) ClaimedCount(ctx context.Context, batchID string) (int64, error) {
	var n int64
	err := s.reader.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM claims WHERE batch_id = ?)
		+ (SELECT count(*) FROM claims_archive WHERE batch_id = ?)`, batchID, batchID).Scan(&n)
	if err != nil {
		return 0, wrap("count claims of batch "+batchID, err)
	}
	return n, nil
}

// getBatch reads a batch and its rules inside tx, or ErrNotFound.
func getBatch(ctx context.Context, tx *sql.Tx, id string) (*coupon.Batch, error) {
	b, err := scanBatch(tx.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM batches WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: batch %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	err = readRules(ctx, tx, `SELECT batch_id, ref_type, ref_id, use_type, value FROM rules
		WHERE batch_id = ? ORDER BY id`, []any{id}, map[string]*coupon.Batch{id: b})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// readRules appends the rules the query returns to their batches.
func readRules(ctx context.Context, tx *sql.Tx, query string, args []any, byID map[string]*coupon.Batch) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return wrap("read rules", err)
	}
	defer rows.Close()
	for rows.Next() {
		var batchID string
		var r coupon.Rule
		if err := rows.Scan(&batchID, &r.RefType, &r.RefID, &r.UseType, &r.Value); err != nil {
			return wrap("read rules", err)
		}
		if b := byID[batchID]; b != nil {
			b.Rules = append(b.Rules, r)
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("read rules", err)
	}
	return nil
}

type scanner interface {
	Scan(dest ...any) error
}

// scanBatch reads the batchColumns of one row. sql.ErrNoRows passes through
// unwrapped.
func scanBatch(row scanner) (*coupon.Batch, error) {
	var (
		b                              coupon.Batch
		typ, status, amountType        string
		claimStart, claimEnd           sql.NullInt64
		validityStart, validityEnd     sql.NullInt64
		claimPlatforms, usagePlatforms sql.NullString
		createdAt, updatedAt           int64
		options                        string
	)
	err := row.Scan(&b.ID, &b.Name, &b.MerchantID, &typ, &status, &b.TotalQuantity, &b.GeneratedCount, &b.GeneratedAmount,
		&b.PerUserLimit, &claimStart, &claimEnd, &claimPlatforms, &b.Channel, &b.AdCopy,
		&b.Validity.Days, &validityStart, &validityEnd,
		&amountType, &b.Amount.Value, &b.Amount.Min, &b.Amount.Max, &b.Amount.Budget,
		&b.MinSpend, &b.PercentOff, &usagePlatforms, &b.CodeFormat.Prefix, &b.CodeFormat.Length, &createdAt, &updatedAt, &options,
		&b.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err != nil {
		return nil, wrap("read batch", err)
	}
	b.Type, b.Status, b.Amount.Type = coupon.Type(typ), coupon.Status(status), coupon.AmountType(amountType)
	b.ClaimStart, b.ClaimEnd = fromNullMicros(claimStart), fromNullMicros(claimEnd)
	b.Validity.Start, b.Validity.End = fromNullMicros(validityStart), fromNullMicros(validityEnd)
	b.CreatedAt, b.UpdatedAt = fromMicros(createdAt), fromMicros(updatedAt)
	if b.ClaimPlatforms, err = decodeList("claim_platforms", claimPlatforms); err != nil {
		return nil, err
	}
	if b.UsagePlatforms, err = decodeList("usage_platforms", usagePlatforms); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(options), &b.BatchOptions); err != nil {
		return nil, fmt.Errorf("sqlite: options of batch %s: %w", b.ID, err)
	}
	return &b, nil
}

// encodeOptions writes a batch's options column.
func encodeOptions(o coupon.BatchOptions) string {
	b, _ := json.Marshal(o) // plain strings and numbers always marshal
	return string(b)
}
