package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const batchColumns = `id, name, merchant_id, type, status, total_quantity, generated_count, generated_amount,
	per_user_limit, claim_start, claim_end, claim_platforms, channel, ad_copy,
	validity_days, validity_start, validity_end,
	amount_type, amount_value, amount_min, amount_max, amount_budget,
	min_spend, percent_off, usage_platforms, code_prefix, code_length, created_at, updated_at, options`

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
		$21, $22, $23, $24, $25, $26, $27, $28, $29, $30)
	RETURNING id
)
INSERT INTO rules (batch_id, ref_type, ref_id, use_type, value)
SELECT b.id, r.ref_type, r.ref_id, r.use_type, r.value
FROM b, unnest($31::text[], $32::text[], $33::text[], $34::bigint[]) WITH ORDINALITY AS r (ref_type, ref_id, use_type, value, ord)
ORDER BY r.ord`

// CreateBatch inserts a batch and its rules. A batch whose ID exists
// already is refused with coupon.ErrConflict.
func (s *Store) CreateBatch(ctx context.Context, b *coupon.Batch) error {
	n := len(b.Rules)
	refTypes, refIDs, useTypes, values := make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, r := range b.Rules {
		refTypes[i], refIDs[i], useTypes[i], values[i] = r.RefType, r.RefID, r.UseType, r.Value
	}
	_, err := s.primary.Exec(ctx, insertBatchSQL,
		b.ID, b.Name, b.MerchantID, string(b.Type), string(b.Status), b.TotalQuantity, b.GeneratedCount, b.GeneratedAmount,
		b.PerUserLimit, nullTime(b.ClaimStart), nullTime(b.ClaimEnd), list(b.ClaimPlatforms), b.Channel, b.AdCopy,
		b.Validity.Days, nullTime(b.Validity.Start), nullTime(b.Validity.End),
		string(b.Amount.Type), b.Amount.Value, b.Amount.Min, b.Amount.Max, b.Amount.Budget,
		b.MinSpend, b.PercentOff, list(b.UsagePlatforms), b.CodeFormat.Prefix, b.CodeFormat.Length,
		b.CreatedAt, b.UpdatedAt, encodeOptions(b.BatchOptions),
		refTypes, refIDs, useTypes, values)
	if err != nil {
		if pe := pgError(err); pe != nil && pe.Code == uniqueViolation && pe.ConstraintName == "batches_pkey" {
			return fmt.Errorf("postgres: batch %s exists already: %w", b.ID, coupon.ErrConflict)
		}
		return wrap("create batch "+b.ID, err)
	}
	return nil
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
		// The row lock orders this change after any other on the batch, and
		// tells a batch in another status from no batch at all.
		err := tx.QueryRow(ctx, `SELECT status FROM batches WHERE id = $1 FOR UPDATE`, p.ID).Scan(&current)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: batch %s: %w", p.ID, store.ErrNotFound)
		case err != nil:
			return wrap(op, err)
		}
		if !slices.Contains(from, current) {
			return fmt.Errorf("postgres: batch %s is %s, not %v: %w", p.ID, current, p.From, store.ErrStatus)
		}
		if _, err := tx.Exec(ctx, `UPDATE batches SET status = $2, updated_at = $3 WHERE id = $1`,
			p.ID, string(p.To), p.At); err != nil {
			return wrap(op, err)
		}
		if p.Event != nil {
			e := *p.Event
			if e.CreatedAt.IsZero() {
				e.CreatedAt = p.At
			}
			if _, err := tx.Exec(ctx, insertEventSQL, e.Type, e.AggregateID, payloadArg(e.Payload), e.CreatedAt); err != nil {
				return wrap(op+": outbox", err)
			}
		}
		b, err = getBatch(ctx, tx, p.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
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
		&options, &rules)
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
