package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const insertCodeSQL = `INSERT INTO codes (code, batch_id, seq, amount, tags, created_at)
	VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING`

// AddCodes inserts codes into a batch and raises its generated count and
// amount in one transaction. The k-th code actually inserted gets Seq
// generated_count + k; a code that exists already is skipped and not
// counted. A code's CreatedAt defaults to now.
func (s *Store) AddCodes(ctx context.Context, batchID string, codes []coupon.Code) ([]coupon.Code, error) {
	return s.addCodes(ctx, "add codes to batch "+batchID, batchID, anyCount, 0, codes)
}

// ContinueCodes is AddCodes if the batch's generated count is p.From and
// its version p.Version (unless 0), read in the same transaction;
// ErrGeneratedMoved otherwise.
func (s *Store) ContinueCodes(ctx context.Context, p store.ContinueCodes) ([]coupon.Code, error) {
	if p.From < 0 {
		return nil, fmt.Errorf("sqlite: continue codes of batch %s: from %d is negative", p.BatchID, p.From)
	}
	return s.addCodes(ctx, "continue codes of batch "+p.BatchID, p.BatchID, p.From, p.Version, p.Codes)
}

// anyCount is the from of AddCodes: any generated count will do.
const anyCount = -1

func (s *Store) addCodes(ctx context.Context, op, batchID string, from, version int64, codes []coupon.Code) ([]coupon.Code, error) {
	now := coupon.UTC(s.now())
	var out []coupon.Code
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		var generated, total, current int64
		err := tx.QueryRowContext(ctx, `SELECT generated_count, total_quantity, version FROM batches WHERE id = ?`, batchID).
			Scan(&generated, &total, &current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if from != anyCount && generated != from {
			return fmt.Errorf("sqlite: batch %s holds %d codes, not %d: %w", batchID, generated, from, store.ErrGeneratedMoved)
		}
		if version != 0 && current != version {
			return fmt.Errorf("sqlite: batch %s is at version %d, not %d: %w", batchID, current, version, store.ErrGeneratedMoved)
		}

		stmt := tx.StmtContext(ctx, s.insertCode)
		out = make([]coupon.Code, 0, len(codes))
		var amount int64
		for _, c := range codes {
			seq := generated + int64(len(out)) + 1
			createdAt := now
			if !c.CreatedAt.IsZero() {
				createdAt = coupon.UTC(c.CreatedAt)
			}
			tags, err := encodeTags(c.Tags)
			if err != nil {
				return err
			}
			res, err := stmt.ExecContext(ctx, c.Code, batchID, seq, c.Amount, tags, micros(createdAt))
			if err != nil {
				if _, msg, ok := constraint(err); ok {
					// An amount below 1, or a sequence number taken by a
					// writer outside this process: a bug, not a retryable state.
					return fmt.Errorf("sqlite: %s: code %q (amount %d) refused: %s", op, c.Code, c.Amount, msg)
				}
				return wrap(op, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return wrap(op, err)
			} else if n == 0 {
				continue // the code exists already
			}
			if seq > total {
				// The UPDATE below would refuse it too; stop inserting now.
				return fmt.Errorf("sqlite: batch %s holds %d of %d codes: %w", batchID, generated, total, store.ErrTotalExceeded)
			}
			c.BatchID, c.Seq, c.CreatedAt = batchID, seq, createdAt
			c.Status, c.ClaimID, c.IssuedAt = coupon.CodeUnclaimed, "", nil
			out = append(out, c)
			amount += c.Amount
		}
		if len(out) == 0 {
			return nil
		}
		n := int64(len(out))
		// generated is the count this transaction read: the single writer
		// keeps it, and the condition says so where the bound is enforced.
		res, err := tx.ExecContext(ctx, `UPDATE batches
			SET generated_count = generated_count + ?, generated_amount = generated_amount + ?, updated_at = ?
			WHERE id = ? AND generated_count = ? AND generated_count + ? <= total_quantity`,
			n, amount, micros(now), batchID, generated, n)
		if err != nil {
			return wrap(op, err)
		}
		if updated, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if updated == 0 {
			return fmt.Errorf("sqlite: batch %s holds %d of %d codes, cannot add %d: %w",
				batchID, generated, total, n, store.ErrTotalExceeded)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UnclaimedCodes returns the batch's unclaimed codes with sequence numbers in
// (afterSeq, throughSeq], in sequence order, read on the (codes batch_id,
// seq) index in one read transaction.
func (s *Store) UnclaimedCodes(ctx context.Context, batchID string, afterSeq, throughSeq int64) ([]store.PoolCode, error) {
	op := "unclaimed codes of batch " + batchID
	var out []store.PoolCode
	err := s.readTx(ctx, op, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM batches WHERE id = ?`, batchID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if throughSeq <= afterSeq {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT c.code, c.amount FROM codes c
			WHERE c.batch_id = ? AND c.seq > ? AND c.seq <= ?
			AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code)
			AND NOT EXISTS (SELECT 1 FROM claims_archive cl WHERE cl.code = c.code)
			ORDER BY c.seq`, batchID, afterSeq, throughSeq)
		if err != nil {
			return wrap(op, err)
		}
		out = make([]store.PoolCode, 0, min(throughSeq-afterSeq, 1<<16))
		return eachRow(rows, func() error {
			var p store.PoolCode
			if err := rows.Scan(&p.Code, &p.Amount); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetCode returns a code with the status, claim and issue time derived from
// the claim holding it, or ErrNotFound.
func (s *Store) GetCode(ctx context.Context, code string) (*coupon.Code, error) {
	var (
		c         coupon.Code
		tags      sql.NullString
		createdAt int64
		claimID   sql.NullString
		claimedAt sql.NullInt64
	)
	err := s.reader.QueryRowContext(ctx, `SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, cl.id, cl.claimed_at
		FROM codes c LEFT JOIN claims_all cl ON cl.code = c.code
		WHERE c.code = ?`, code).
		Scan(&c.Code, &c.BatchID, &c.Seq, &c.Amount, &tags, &createdAt, &claimID, &claimedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: code %q: %w", code, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get code", err)
	}
	if c.Tags, err = decodeTags(tags); err != nil {
		return nil, err
	}
	c.CreatedAt = fromMicros(createdAt)
	c.Status = coupon.CodeUnclaimed
	if claimID.Valid {
		c.Status, c.ClaimID = coupon.CodeClaimed, claimID.String
		issued := fromNullMicros(claimedAt)
		c.IssuedAt = &issued
	}
	return &c, nil
}

// Snapshot reads in one read transaction what the engine needs to rebuild a
// batch.
func (s *Store) Snapshot(ctx context.Context, batchID string) (*store.BatchSnapshot, error) {
	op := "snapshot of batch " + batchID
	snap := &store.BatchSnapshot{Users: make(map[string][]int)}
	err := s.readTx(ctx, op, func(tx *sql.Tx) error {
		var err error
		if snap.Batch, err = getBatch(ctx, tx, batchID); err != nil {
			return err
		}

		rows, err := tx.QueryContext(ctx, `SELECT c.code, c.amount FROM codes c
			WHERE c.batch_id = ? AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code)
			AND NOT EXISTS (SELECT 1 FROM claims_archive cl WHERE cl.code = c.code)
			ORDER BY c.seq`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		// Most generated codes of a batch being rebuilt are usually still in
		// the pool; the cap keeps a huge, mostly claimed batch from
		// reserving memory it will not use.
		snap.Pool = make([]store.PoolCode, 0, min(max(0, snap.Batch.GeneratedCount), 1<<16))
		err = eachRow(rows, func() error {
			var p store.PoolCode
			if err := rows.Scan(&p.Code, &p.Amount); err != nil {
				return err
			}
			snap.Pool = append(snap.Pool, p)
			return nil
		})
		if err != nil {
			return wrap(op+": pool", err)
		}

		rows, err = tx.QueryContext(ctx, `SELECT user_id, user_seq FROM claims_all
			WHERE batch_id = ? ORDER BY user_id, user_seq`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		err = eachRow(rows, func() error {
			var user string
			var seq int
			if err := rows.Scan(&user, &seq); err != nil {
				return err
			}
			snap.Users[user] = append(snap.Users[user], seq)
			return nil
		})
		if err != nil {
			return wrap(op+": users", err)
		}

		rows, err = tx.QueryContext(ctx, `SELECT user_id, idempotency_key, id, code, amount, user_seq FROM claims_all
			WHERE batch_id = ? AND idempotency_key IS NOT NULL ORDER BY user_id, idempotency_key`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		err = eachRow(rows, func() error {
			var k store.KeyRecord
			if err := rows.Scan(&k.UserID, &k.Key, &k.ClaimID, &k.Code, &k.Amount, &k.Seq); err != nil {
				return err
			}
			snap.Keys = append(snap.Keys, k)
			return nil
		})
		if err != nil {
			return wrap(op+": keys", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// eachRow calls fn for every row and closes rows.
func eachRow(rows *sql.Rows, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	return rows.Err()
}
