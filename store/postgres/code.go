package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// The staging table of AddCodes: private to the session, dropped at commit.
const createStagingSQL = `CREATE TEMPORARY TABLE coupond_staging_codes (
	ord        bigint      NOT NULL,
	code       text COLLATE "C" NOT NULL,
	amount     bigint      NOT NULL,
	tags       jsonb,
	created_at timestamptz NOT NULL
) ON COMMIT DROP`

var stagingColumns = []string{"ord", "code", "amount", "tags", "created_at"}

// insertStagedSQL moves the staged codes (distinct: the first of each code
// in a call) that exist nowhere yet into the batch, numbered on from the
// generated count ($2) in the order given. Whether a code exists is a
// scalar subquery on the primary key, one index probe per staged code,
// rather than NOT EXISTS, which the planner may turn into a hash of the
// whole codes table: the staging table has no statistics, and the cost
// must follow the chunk, not the table.
const insertStagedSQL = `WITH numbered AS (
	SELECT s.code, s.amount, s.tags, s.created_at, $2::bigint + row_number() OVER (ORDER BY s.ord) AS seq
	FROM coupond_staging_codes s
	WHERE (SELECT true FROM codes c WHERE c.code = s.code) IS NULL
)
INSERT INTO codes (code, batch_id, seq, amount, tags, created_at)
SELECT code, $1, seq, amount, tags, created_at FROM numbered
ON CONFLICT (code) DO NOTHING
RETURNING code, seq`

// AddCodes inserts codes into a batch and raises its generated count and
// amount in one transaction. The k-th code actually inserted gets Seq
// generated_count + k; a code that exists already is skipped and not
// counted. A code's CreatedAt defaults to now.
//
// The batch row is locked first, so that calls on one batch take turns and
// the generated count read is the one the numbering continues from. The
// codes are copied (COPY, binary) into a temporary table and inserted from
// there with one statement.
func (s *Store) AddCodes(ctx context.Context, batchID string, codes []coupon.Code) ([]coupon.Code, error) {
	return s.addCodesRetrying(ctx, "add codes to batch "+batchID, batchID, anyCount, 0, codes)
}

// ContinueCodes is AddCodes if the batch's generated count is p.From and
// its version p.Version (unless 0), read under the lock of the batch row
// that the bounded UPDATE then changes; ErrGeneratedMoved otherwise.
func (s *Store) ContinueCodes(ctx context.Context, p store.ContinueCodes) ([]coupon.Code, error) {
	if p.From < 0 {
		return nil, fmt.Errorf("postgres: continue codes of batch %s: from %d is negative", p.BatchID, p.From)
	}
	return s.addCodesRetrying(ctx, "continue codes of batch "+p.BatchID, p.BatchID, p.From, p.Version, p.Codes)
}

// anyCount is the from of AddCodes: any generated count will do.
const anyCount = -1

func (s *Store) addCodesRetrying(ctx context.Context, op, batchID string, from, version int64, codes []coupon.Code) ([]coupon.Code, error) {
	for _, c := range codes {
		if c.Amount < 1 {
			return nil, fmt.Errorf("postgres: %s: code %q has amount %d, below 1", op, c.Code, c.Amount)
		}
	}
	now := coupon.UTC(s.now())
	// The first of each code in the call; a later one is a duplicate.
	first := make(map[string]int, len(codes))
	distinct := make([]int, 0, len(codes))
	for i, c := range codes {
		if _, dup := first[c.Code]; !dup {
			first[c.Code] = i
			distinct = append(distinct, i)
		}
	}
	// A code of another batch committed between the statement's snapshot and
	// its insert is skipped by ON CONFLICT after the numbering, leaving a
	// hole in the sequence; the attempt is then rolled back and run again,
	// seeing that code. A handful of attempts is plenty: each one needs a
	// new collision in a window of microseconds.
	for attempt := 0; ; attempt++ {
		out, err := s.addCodes(ctx, op, batchID, from, version, codes, first, distinct, now)
		if !errors.Is(err, errSeqGap) || attempt == 4 {
			return out, err
		}
	}
}

var errSeqGap = errors.New("postgres: a concurrent insert left a gap in the sequence numbers")

func (s *Store) addCodes(ctx context.Context, op, batchID string, from, version int64, codes []coupon.Code,
	first map[string]int, distinct []int, now time.Time) ([]coupon.Code, error) {
	var out []coupon.Code
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		var generated, total, current int64
		err := tx.QueryRow(ctx, `SELECT generated_count, total_quantity, version FROM batches WHERE id = $1 FOR UPDATE`, batchID).
			Scan(&generated, &total, &current)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if from != anyCount && generated != from {
			return fmt.Errorf("postgres: batch %s holds %d codes, not %d: %w", batchID, generated, from, store.ErrGeneratedMoved)
		}
		if version != 0 && current != version {
			return fmt.Errorf("postgres: batch %s is at version %d, not %d: %w", batchID, current, version, store.ErrGeneratedMoved)
		}
		out = make([]coupon.Code, 0, len(codes))
		if len(codes) == 0 {
			return nil
		}

		if _, err := tx.Exec(ctx, createStagingSQL); err != nil {
			return wrap(op+": staging table", err)
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"coupond_staging_codes"}, stagingColumns,
			pgx.CopyFromSlice(len(distinct), func(j int) ([]any, error) {
				i := distinct[j]
				c := &codes[i]
				createdAt := now
				if !c.CreatedAt.IsZero() {
					createdAt = coupon.UTC(c.CreatedAt)
				}
				return []any{int64(i), c.Code, c.Amount, tagsArg(c.Tags), createdAt}, nil
			}))
		if err != nil {
			return wrap(op+": copy", err)
		}

		rows, err := tx.Query(ctx, insertStagedSQL, batchID, generated)
		if err != nil {
			return wrap(op, err)
		}
		type inserted struct {
			code string
			seq  int64
		}
		ins, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (inserted, error) {
			var r inserted
			err := row.Scan(&r.code, &r.seq)
			return r, err
		})
		if err != nil {
			return wrap(op, err)
		}
		if len(ins) == 0 {
			return nil // every code exists already
		}
		slices.SortFunc(ins, func(a, b inserted) int { return cmp.Compare(a.seq, b.seq) })
		n := int64(len(ins))
		if ins[n-1].seq != generated+n {
			return errSeqGap
		}

		var amount int64
		for _, r := range ins {
			c := codes[first[r.code]]
			if c.CreatedAt.IsZero() {
				c.CreatedAt = now
			}
			c.BatchID, c.Seq, c.CreatedAt = batchID, r.seq, coupon.UTC(c.CreatedAt)
			c.Status, c.ClaimID, c.IssuedAt = coupon.CodeUnclaimed, "", nil
			out = append(out, c)
			amount += c.Amount
		}

		// generated is the count read under the row lock; the condition
		// says so where the bound is enforced.
		tag, err := tx.Exec(ctx, `UPDATE batches
			SET generated_count = generated_count + $2, generated_amount = generated_amount + $3, updated_at = $4
			WHERE id = $1 AND generated_count = $5 AND generated_count + $2 <= total_quantity`,
			batchID, n, amount, now, generated)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() == 0 {
			out = nil
			return fmt.Errorf("postgres: batch %s holds %d of %d codes, cannot add %d: %w",
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
// (afterSeq, throughSeq], in sequence order, from the primary: a replica
// may not have the codes just added yet.
func (s *Store) UnclaimedCodes(ctx context.Context, batchID string, afterSeq, throughSeq int64) ([]store.PoolCode, error) {
	op := "unclaimed codes of batch " + batchID
	var out []store.PoolCode
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := inTx(ctx, s.primary, opts, op, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM batches WHERE id = $1`, batchID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if throughSeq <= afterSeq {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT c.code, c.amount FROM codes c
			WHERE c.batch_id = $1 AND c.seq > $2 AND c.seq <= $3
			AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code)
			AND NOT EXISTS (SELECT 1 FROM claims_archive cl WHERE cl.code = c.code)
			ORDER BY c.seq`, batchID, afterSeq, throughSeq)
		if err != nil {
			return wrap(op, err)
		}
		out = make([]store.PoolCode, 0, min(throughSeq-afterSeq, 1<<16))
		var p store.PoolCode
		_, err = pgx.ForEachRow(rows, []any{&p.Code, &p.Amount}, func() error {
			out = append(out, p)
			return nil
		})
		if err != nil {
			return wrap(op, err)
		}
		return nil
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
		claimID   *string
		claimedAt *time.Time
	)
	err := s.primary.QueryRow(ctx, `SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, cl.id, cl.claimed_at
		FROM codes c LEFT JOIN claims_all cl ON cl.code = c.code
		WHERE c.code = $1`, code).
		Scan(&c.Code, &c.BatchID, &c.Seq, &c.Amount, &c.Tags, &c.CreatedAt, &claimID, &claimedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: code %q: %w", code, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get code", err)
	}
	c.Tags, c.CreatedAt = fromTags(c.Tags), utc(c.CreatedAt)
	c.Status = coupon.CodeUnclaimed
	if claimID != nil {
		issued := utc(*claimedAt)
		c.Status, c.ClaimID, c.IssuedAt = coupon.CodeClaimed, *claimID, &issued
	}
	return &c, nil
}

// Snapshot reads what the engine needs to rebuild a batch in one
// repeatable-read, read-only transaction of the primary: one consistent
// snapshot of the batch, its pool, its users and its keys.
func (s *Store) Snapshot(ctx context.Context, batchID string) (*store.BatchSnapshot, error) {
	op := "snapshot of batch " + batchID
	snap := &store.BatchSnapshot{Users: make(map[string][]int)}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := inTx(ctx, s.primary, opts, op, func(tx pgx.Tx) error {
		var err error
		if snap.Batch, err = getBatch(ctx, tx, batchID); err != nil {
			return err
		}

		rows, err := tx.Query(ctx, `SELECT c.code, c.amount FROM codes c
			WHERE c.batch_id = $1 AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code)
			AND NOT EXISTS (SELECT 1 FROM claims_archive cl WHERE cl.code = c.code)
			ORDER BY c.seq`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		// Most generated codes of a batch being rebuilt are usually still in
		// the pool; the cap keeps a huge, mostly claimed batch from
		// reserving memory it will not use.
		snap.Pool = make([]store.PoolCode, 0, min(max(0, snap.Batch.GeneratedCount), 1<<16))
		var p store.PoolCode
		_, err = pgx.ForEachRow(rows, []any{&p.Code, &p.Amount}, func() error {
			snap.Pool = append(snap.Pool, p)
			return nil
		})
		if err != nil {
			return wrap(op+": pool", err)
		}

		rows, err = tx.Query(ctx, `SELECT user_id, user_seq FROM claims_all
			WHERE batch_id = $1 ORDER BY user_id, user_seq`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		var user string
		var seq int
		_, err = pgx.ForEachRow(rows, []any{&user, &seq}, func() error {
			snap.Users[user] = append(snap.Users[user], seq)
			return nil
		})
		if err != nil {
			return wrap(op+": users", err)
		}

		rows, err = tx.Query(ctx, `SELECT user_id, idempotency_key, id, code, amount, user_seq FROM claims_all
			WHERE batch_id = $1 AND idempotency_key IS NOT NULL ORDER BY user_id, idempotency_key`, batchID)
		if err != nil {
			return wrap(op, err)
		}
		var k store.KeyRecord
		_, err = pgx.ForEachRow(rows, []any{&k.UserID, &k.Key, &k.ClaimID, &k.Code, &k.Amount, &k.Seq}, func() error {
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
