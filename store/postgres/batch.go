package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const batchColumns = `id, name, merchant_id, type, status, total_quantity, generated_count, generated_amount,
	per_user_limit, claim_start, claim_end, claim_platforms, channel, ad_copy,
	validity_days, validity_start, validity_end,
	amount_type, amount_value, amount_min, amount_max, amount_budget,
	min_spend, percent_off, usage_platforms, code_prefix, code_length, created_at, updated_at, options, version`

// selectBatch reads batchColumns and the batch's rules, as one JSON array in
// id order, so that a batch is one row and one round trip.
const selectBatch = `SELECT ` + batchColumns + `,
	(SELECT json_agg(json_build_object('ref_type', r.ref_type, 'ref_id', r.ref_id, 'use_type', r.use_type, 'value', r.value)
		ORDER BY r.id) FROM rules r WHERE r.batch_id = b.id)
	FROM batches b`

// insertBatchSQL inserts a batch and its rules, passed as arrays, in one
// statement: atomic without a transaction. The rules get their ids in the
// order given, which is the order they are read back in.
const insertBatchSQL = `WITH b AS (
	INSERT INTO batches (` + batchColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
		$21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)
	RETURNING id
)
INSERT INTO rules (batch_id, ref_type, ref_id, use_type, value)
SELECT b.id, r.ref_type, r.ref_id, r.use_type, r.value
FROM b, unnest($32::text[], $33::text[], $34::text[], $35::bigint[]) WITH ORDINALITY AS r (ref_type, ref_id, use_type, value, ord)
ORDER BY r.ord`

// updateBatchSQL sets the columns of a BatchSpec ($2…$25) of the batch $1
// at version $26, raises its version and sets its updated time ($27).
const updateBatchSQL = `UPDATE batches SET name = $2, merchant_id = $3, type = $4, total_quantity = $5,
	per_user_limit = $6, claim_start = $7, claim_end = $8, claim_platforms = $9, channel = $10, ad_copy = $11,
	validity_days = $12, validity_start = $13, validity_end = $14,
	amount_type = $15, amount_value = $16, amount_min = $17, amount_max = $18, amount_budget = $19,
	min_spend = $20, percent_off = $21, usage_platforms = $22, code_prefix = $23, code_length = $24, options = $25,
	version = version + 1, updated_at = $27
WHERE id = $1 AND status = 'draft' AND generated_count = 0 AND version = $26`

// replaceRulesSQL replaces the rules of the batch $1 with the rules passed
// as arrays, in the order given.
const replaceRulesSQL = `WITH gone AS (DELETE FROM rules WHERE batch_id = $1)
INSERT INTO rules (batch_id, ref_type, ref_id, use_type, value)
SELECT $1, r.ref_type, r.ref_id, r.use_type, r.value
FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY AS r (ref_type, ref_id, use_type, value, ord)
ORDER BY r.ord`

// CreateBatch inserts a batch and its rules. A batch whose ID exists
// already is refused with coupon.ErrConflict.
func (s *Store) CreateBatch(ctx context.Context, b *coupon.Batch) error {
	refTypes, refIDs, useTypes, values := ruleArrays(b.Rules)
	_, err := s.primary.Exec(ctx, insertBatchSQL,
		b.ID, b.Name, b.MerchantID, string(b.Type), string(b.Status), b.TotalQuantity, b.GeneratedCount, b.GeneratedAmount,
		b.PerUserLimit, nullTime(b.ClaimStart), nullTime(b.ClaimEnd), list(b.ClaimPlatforms), b.Channel, b.AdCopy,
		b.Validity.Days, nullTime(b.Validity.Start), nullTime(b.Validity.End),
		string(b.Amount.Type), b.Amount.Value, b.Amount.Min, b.Amount.Max, b.Amount.Budget,
		b.MinSpend, b.PercentOff, list(b.UsagePlatforms), b.CodeFormat.Prefix, b.CodeFormat.Length,
		b.CreatedAt, b.UpdatedAt, encodeOptions(b.BatchOptions), max(b.Version, 1),
		refTypes, refIDs, useTypes, values)
	if err != nil {
		if pe := pgError(err); pe != nil && pe.Code == uniqueViolation && pe.ConstraintName == "batches_pkey" {
			return fmt.Errorf("postgres: batch %s exists already: %w", b.ID, coupon.ErrConflict)
		}
		return wrap("create batch "+b.ID, err)
	}
	return nil
}

// ruleArrays passes rules to a statement as four arrays.
func ruleArrays(rules []coupon.Rule) (refTypes, refIDs, useTypes []string, values []int64) {
	n := len(rules)
	refTypes, refIDs, useTypes, values = make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, r := range rules {
		refTypes[i], refIDs[i], useTypes[i], values[i] = r.RefType, r.RefID, r.UseType, r.Value
	}
	return refTypes, refIDs, useTypes, values
}

// GetBatch returns a batch with its rules, or ErrNotFound.
func (s *Store) GetBatch(ctx context.Context, id string) (*coupon.Batch, error) {
	return getBatch(ctx, s.primary, id)
}

// ListBatches returns batches newest first (IDs sort by creation time), each
// with its rules.
func (s *Store) ListBatches(ctx context.Context, f store.BatchFilter) ([]*coupon.Batch, error) {
	var q strings.Builder
	q.WriteString(selectBatch + ` WHERE true`)
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		q.WriteString(" AND " + cond + " $" + strconv.Itoa(len(args)))
	}
	if f.Status != "" {
		arg("status =", string(f.Status))
	}
	if f.MerchantID != "" {
		arg("merchant_id =", f.MerchantID)
	}
	if f.Cursor != "" {
		arg("id <", f.Cursor)
	}
	args = append(args, clampLimit(f.Limit))
	q.WriteString(` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args)))

	rows, err := s.replica.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, wrap("list batches", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Batch, error) { return scanBatch(row) })
	if err != nil {
		return nil, wrap("list batches", err)
	}
	return out, nil
}

// SetBatchStatus moves a batch from one of p.From to p.To and writes p.Event
// to the outbox in the same transaction.
func (s *Store) SetBatchStatus(ctx context.Context, p store.SetBatchStatus) (*coupon.Batch, error) {
	op := "set status of batch " + p.ID
	from := make([]string, len(p.From))
	for i, st := range p.From {
		from[i] = string(st)
	}
	var b *coupon.Batch
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		var current string
		var version int64
		// The row lock orders this change after any other on the batch, and
		// tells a batch in another status from no batch at all.
		err := tx.QueryRow(ctx, `SELECT status, version FROM batches WHERE id = $1 FOR UPDATE`, p.ID).Scan(&current, &version)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: batch %s: %w", p.ID, store.ErrNotFound)
		case err != nil:
			return wrap(op, err)
		}
		if !slices.Contains(from, current) {
			return fmt.Errorf("postgres: batch %s is %s, not %v: %w", p.ID, current, p.From, store.ErrStatus)
		}
		if p.Version != 0 && version != p.Version {
			return fmt.Errorf("postgres: batch %s is at version %d, not %d: %w", p.ID, version, p.Version, store.ErrVersion)
		}
		if _, err := tx.Exec(ctx, `UPDATE batches SET status = $2, updated_at = $3 WHERE id = $1`,
			p.ID, string(p.To), p.At); err != nil {
			return wrap(op, err)
		}
		if err := insertOutbox(ctx, tx, op, p.Event, p.At); err != nil {
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

// UpdateBatch replaces the configuration and the rules of a draft batch
// that holds no codes, in one transaction. The lock of the batch row orders
// it with publications, imports and other edits, which take the same lock.
func (s *Store) UpdateBatch(ctx context.Context, p store.UpdateBatch) (*coupon.Batch, error) {
	op := "update batch " + p.ID
	var b *coupon.Batch
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		var (
			status             string
			version, generated int64
		)
		err := tx.QueryRow(ctx, `SELECT status, version, generated_count FROM batches WHERE id = $1 FOR UPDATE`, p.ID).
			Scan(&status, &version, &generated)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: batch %s: %w", p.ID, store.ErrNotFound)
		case err != nil:
			return wrap(op, err)
		case status != string(coupon.StatusDraft):
			return fmt.Errorf("postgres: batch %s is %s: %w", p.ID, status, store.ErrStatus)
		case p.Version != 0 && version != p.Version:
			return fmt.Errorf("postgres: batch %s is at version %d, not %d: %w", p.ID, version, p.Version, store.ErrVersion)
		case generated != 0:
			return fmt.Errorf("postgres: batch %s holds %d codes: %w", p.ID, generated, store.ErrHasCodes)
		}
		sp := &p.Spec
		tag, err := tx.Exec(ctx, updateBatchSQL, p.ID,
			sp.Name, sp.MerchantID, string(sp.Type), sp.TotalQuantity,
			sp.PerUserLimit, nullTime(sp.ClaimStart), nullTime(sp.ClaimEnd), list(sp.ClaimPlatforms), sp.Channel, sp.AdCopy,
			sp.Validity.Days, nullTime(sp.Validity.Start), nullTime(sp.Validity.End),
			string(sp.Amount.Type), sp.Amount.Value, sp.Amount.Min, sp.Amount.Max, sp.Amount.Budget,
			sp.MinSpend, sp.PercentOff, list(sp.UsagePlatforms), sp.CodeFormat.Prefix, sp.CodeFormat.Length,
			encodeOptions(sp.BatchOptions), version, p.At)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: %s: the batch changed under its row lock", op)
		}
		refTypes, refIDs, useTypes, values := ruleArrays(sp.Rules)
		if _, err := tx.Exec(ctx, replaceRulesSQL, p.ID, refTypes, refIDs, useTypes, values); err != nil {
			return wrap(op+": rules", err)
		}
		if err := insertOutbox(ctx, tx, op, p.Event, p.At); err != nil {
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
func insertOutbox(ctx context.Context, tx pgx.Tx, op string, e *store.Event, at time.Time) error {
	if e == nil {
		return nil
	}
	createdAt := e.CreatedAt
	if createdAt.IsZero() {
		createdAt = at
	}
	if _, err := tx.Exec(ctx, insertEventSQL, e.Type, e.AggregateID, payloadArg(e.Payload), createdAt); err != nil {
		return wrap(op+": outbox", err)
	}
	return nil
}

// ClaimedCount counts the claims of a batch; it reads only the
// (batch_id, user_id, user_seq) index.
func (s *Store) ClaimedCount(ctx context.Context, batchID string) (int64, error) {
	var n int64
	if err := s.primary.QueryRow(ctx, `SELECT (SELECT count(*) FROM claims WHERE batch_id = $1)
		+ (SELECT count(*) FROM claims_archive WHERE batch_id = $1)`, batchID).Scan(&n); err != nil {
		return 0, wrap("count claims of batch "+batchID, err)
	}
	return n, nil
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// getBatch reads a batch and its rules, or ErrNotFound.
func getBatch(ctx context.Context, q querier, id string) (*coupon.Batch, error) {
	b, err := scanBatch(q.QueryRow(ctx, selectBatch+` WHERE b.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: batch %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get batch "+id, err)
	}
	return b, nil
}

// scanBatch reads the columns of selectBatch. pgx.ErrNoRows passes through.
func scanBatch(row pgx.Row) (*coupon.Batch, error) {
	var (
		b                          coupon.Batch
		typ, status, amountType    string
		claimStart, claimEnd       pgtype.Timestamptz
		validityStart, validityEnd pgtype.Timestamptz
		rules                      []byte
		options                    []byte
	)
	err := row.Scan(&b.ID, &b.Name, &b.MerchantID, &typ, &status, &b.TotalQuantity, &b.GeneratedCount, &b.GeneratedAmount,
		&b.PerUserLimit, &claimStart, &claimEnd, &b.ClaimPlatforms, &b.Channel, &b.AdCopy,
		&b.Validity.Days, &validityStart, &validityEnd,
		&amountType, &b.Amount.Value, &b.Amount.Min, &b.Amount.Max, &b.Amount.Budget,
		&b.MinSpend, &b.PercentOff, &b.UsagePlatforms, &b.CodeFormat.Prefix, &b.CodeFormat.Length, &b.CreatedAt, &b.UpdatedAt,
		&options, &b.Version, &rules)
	if err != nil {
		return nil, err
	}
	b.Type, b.Status, b.Amount.Type = coupon.Type(typ), coupon.Status(status), coupon.AmountType(amountType)
	b.ClaimStart, b.ClaimEnd = fromNullTime(claimStart), fromNullTime(claimEnd)
	b.Validity.Start, b.Validity.End = fromNullTime(validityStart), fromNullTime(validityEnd)
	b.CreatedAt, b.UpdatedAt = utc(b.CreatedAt), utc(b.UpdatedAt)
	b.ClaimPlatforms, b.UsagePlatforms = fromList(b.ClaimPlatforms), fromList(b.UsagePlatforms)
	if err := json.Unmarshal(options, &b.BatchOptions); err != nil {
		return nil, fmt.Errorf("postgres: options of batch %s: %w", b.ID, err)
	}
	if len(rules) > 0 {
		if err := json.Unmarshal(rules, &b.Rules); err != nil {
			return nil, fmt.Errorf("postgres: rules of batch %s: %w", b.ID, err)
		}
	}
	return &b, nil
}

// encodeOptions writes a batch's options column.
func encodeOptions(o coupon.BatchOptions) string {
	b, _ := json.Marshal(o) // plain strings and numbers always marshal
	return string(b)
}
