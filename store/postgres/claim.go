package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const claimColumns = `id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
	status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
	batch_name, merchant_id, type, min_spend, percent_off, usage_platforms`

const insertEventSQL = `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES ($1, $2, $3::json, $4)`

// Outcomes of a row of insertClaimsSQL that was not written.
const (
	refusedCode    = 1 // claims_code
	refusedSeq     = 2 // claims_batch_user_seq
	refusedKey     = 3 // claims_idempotency
	refusedUnknown = 4 // claims_code_fk
	refusedLimit   = 5 // claims_user_seq
	refusedID      = 6 // claims_pkey
	refusedUnsure  = 7 // a conflict the statement's snapshot does not show
)

// insertClaimsSQL writes a group of claims and their outbox rows in one
// statement, so in one round trip and atomically without a transaction
// block. The rows come as one array per column; the text of the statement
// never changes with the group's size, so pgx prepares it once per
// connection.
//
// A row that a CHECK or foreign key would refuse is left out before the
// insert (a failing CHECK or foreign key aborts the whole statement); a row
// that a unique constraint refuses is skipped by ON CONFLICT DO NOTHING.
// The rows are inserted in the order given, so the first claim of a code
// in a group wins, and their events get ids in that order. The statement
// returns the rows it did not write with the reason, found in the same
// order PostgreSQL checks the constraints (the CHECK, then the unique
// indexes in the order they were created, then the foreign key): the
// committed claims the statement's snapshot holds, and the rows it wrote
// itself before. A conflict with a claim committed by another transaction
// while the statement ran is invisible to that snapshot: refusedUnsure.
//
// A lookup in a table is a scalar subquery on a unique key, (SELECT true
// …), NULL when there is no row, rather than EXISTS: PostgreSQL may run an
// EXISTS by hashing the whole table, which costs the size of the table
// rather than of the group. The statement's own rows, in written, are few.
//
// The claim IDs of one statement must be distinct: the events are matched
// to the claims written by ID.
const insertClaimsSQL = `WITH input AS (
	SELECT * FROM unnest(
		$1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[], $7::text[], $8::text[],
		$9::text[], $10::bigint[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[],
		$15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::bigint[], $22::integer[],
		$23::text[], $24::text[], $25::text[], $26::text[], $27::timestamptz[])
	WITH ORDINALITY AS t (id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
		status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
		batch_name, merchant_id, type, min_spend, percent_off, usage_platforms,
		event_type, event_aggregate_id, event_payload, event_created_at, ord)
), checked AS (
	SELECT i.*,
		i.user_seq NOT BETWEEN 1 AND i.user_limit AS over_limit,
		(SELECT true FROM codes c WHERE c.code = i.code AND c.batch_id = i.batch_id) IS NULL AS unknown_code
	FROM input i
), ins AS (
	INSERT INTO claims (` + claimColumns + `)
	SELECT id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
		status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
		batch_name, merchant_id, type, min_spend, percent_off, usage_platforms::text[]
	FROM checked
	WHERE NOT over_limit AND NOT unknown_code
	ORDER BY ord
	ON CONFLICT DO NOTHING
	RETURNING id
), written AS (
	SELECT c.* FROM checked c JOIN ins USING (id)
), events AS (
	INSERT INTO outbox (type, aggregate_id, payload, created_at)
	SELECT event_type, event_aggregate_id, event_payload::json, event_created_at
	FROM written
	ORDER BY ord
)
SELECT c.ord, CASE
	WHEN c.over_limit THEN 5
	WHEN (SELECT true FROM claims x WHERE x.id = c.id) THEN 6
	WHEN (SELECT true FROM claims x WHERE x.code = c.code)
		OR EXISTS (SELECT 1 FROM written x WHERE x.code = c.code AND x.ord < c.ord) THEN 1
	WHEN (SELECT true FROM claims x WHERE x.batch_id = c.batch_id AND x.user_id = c.user_id AND x.user_seq = c.user_seq)
		OR EXISTS (SELECT 1 FROM written x WHERE x.batch_id = c.batch_id AND x.user_id = c.user_id AND x.user_seq = c.user_seq
			AND x.ord < c.ord) THEN 2
	WHEN (SELECT true FROM claims x WHERE x.batch_id = c.batch_id AND x.user_id = c.user_id
			AND x.idempotency_key = c.idempotency_key)
		OR EXISTS (SELECT 1 FROM written x WHERE x.batch_id = c.batch_id AND x.user_id = c.user_id
			AND x.idempotency_key = c.idempotency_key AND x.ord < c.ord) THEN 3
	WHEN c.unknown_code THEN 4
	ELSE 7
END
FROM checked c
WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.ord = c.ord)`

// insertClaimSQL writes one claim and its outbox row; a constraint that
// refuses the claim fails the statement with its own name.
const insertClaimSQL = `WITH c AS (
	INSERT INTO claims (` + claimColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
	RETURNING id
)
INSERT INTO outbox (type, aggregate_id, payload, created_at) SELECT $24, $25, $26::json, $27 FROM c`

// InsertClaims writes the claims and their outbox rows and returns one
// outcome per claim.
//
// The common case is one statement, insertClaimsSQL (insertClaimSQL for a
// lone claim): one round trip, one atomic write of every claim it accepts
// with its event, and the reason of every claim it refuses. The rare rest is written row by row, each row in a
// savepoint of one transaction: rows whose refusal the statement could not
// explain (a conflict with a claim committed while it ran), a claim whose ID
// came earlier in the same call, and, when the statement fails on the data
// of some row (a NUL byte, a payload that is not JSON), every row, so that
// the bad row alone is refused. A nil outcome always means the claim and its
// event are committed; a failure of the database makes the outcome of every
// row it had not yet written that error.
func (s *Store) InsertClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	out := make([]error, len(writes))
	if len(writes) == 0 {
		return out
	}

	group := make([]int, 0, len(writes)) // indexes of the rows of the statement
	var later []int                      // indexes of the rows to write one by one
	seen := make(map[string]struct{}, len(writes))
	for i := range writes {
		c := writes[i].Claim
		if c == nil {
			out[i] = errors.New("postgres: insert claims: nil claim")
			continue
		}
		if !fitsInt32(c.UserLimit) || !fitsInt32(c.PercentOff) {
			out[i] = fmt.Errorf("postgres: claim %s refused: user limit %d or percent off %d out of range", c.ID, c.UserLimit, c.PercentOff)
			continue
		}
		if !fitsInt32(c.UserSeq) {
			out[i] = refusal(c, store.ErrOverLimit) // beyond any limit the column can hold
			continue
		}
		if _, dup := seen[c.ID]; dup {
			later = append(later, i)
			continue
		}
		seen[c.ID] = struct{}{}
		group = append(group, i)
	}

	switch {
	case len(group) == 1:
		// A lone claim needs no diagnosis: inserted alone, it fails on
		// the constraint that refuses it.
		i := group[0]
		err := retry(func() error { return insertClaim(ctx, s.primary, &writes[i]) })
		switch {
		case err == nil:
		case rowProblem(err):
			out[i] = claimRefused(writes[i].Claim, err)
		default:
			out[i] = wrap("insert claim", err)
		}
	case len(group) > 1:
		refused, err := s.insertGroup(ctx, writes, group)
		switch {
		case err == nil:
			for _, r := range refused {
				i := group[r.ord-1]
				if r.reason == refusedUnsure {
					later = append(later, i)
					continue
				}
				out[i] = groupRefusal(writes[i].Claim, r.reason)
			}
		case rowProblem(err):
			// Nothing was written; find the bad rows one by one.
			later = append(later, group...)
		default:
			err = wrap("insert claims", err)
			for _, i := range group {
				out[i] = err
			}
		}
	}

	if len(later) > 0 {
		slices.Sort(later)
		s.insertOneByOne(ctx, writes, later, out)
	}
	return out
}

type groupRefused struct {
	ord    int64 // 1-based position in the statement's arrays
	reason int
}

// insertGroup runs insertClaimsSQL on the rows idx of writes and returns
// the rows it did not write. A deadlock or serialisation failure (two
// groups racing for the same codes in opposite orders) wrote nothing, and
// is retried.
func (s *Store) insertGroup(ctx context.Context, writes []store.ClaimWrite, idx []int) ([]groupRefused, error) {
	args := groupArgs(writes, idx)
	var refused []groupRefused
	err := retry(func() error {
		refused = refused[:0]
		rows, err := s.primary.Query(ctx, insertClaimsSQL, args...)
		if err != nil {
			return err
		}
		var r groupRefused
		_, err = pgx.ForEachRow(rows, []any{&r.ord, &r.reason}, func() error {
			refused = append(refused, r)
			return nil
		})
		return err
	})
	return refused, err
}

// retry runs statement, which writes nothing if it fails, again while it
// fails on a deadlock or a serialisation failure, three times at most.
func retry(statement func() error) error {
	for attempt := 1; ; attempt++ {
		err := statement()
		if err == nil || !retryable(err) || attempt == 3 {
			return err
		}
	}
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertClaim runs insertClaimSQL for w.
func insertClaim(ctx context.Context, q execer, w *store.ClaimWrite) error {
	c := w.Claim
	_, err := q.Exec(ctx, insertClaimSQL,
		c.ID, c.BatchID, c.Code, c.UserID, c.UserSeq, c.UserLimit, c.Phone, c.OpenID,
		string(c.Status), c.Amount, c.ValidFrom, c.ValidTo, c.ClaimedAt, c.UpdatedAt, c.Platform, c.Channel,
		pgtype.Text{String: c.IdempotencyKey, Valid: c.IdempotencyKey != ""},
		c.BatchName, c.MerchantID, string(c.Type), c.MinSpend, c.PercentOff, list(c.UsagePlatforms),
		w.Event.Type, w.Event.AggregateID, payloadArg(w.Event.Payload), eventTime(w))
	return err
}

// groupArgs lays the rows idx of writes out as the 27 arrays of
// insertClaimsSQL.
func groupArgs(writes []store.ClaimWrite, idx []int) []any {
	n := len(idx)
	var (
		ids, batchIDs, codes, userIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, limits                  = make([]int32, n), make([]int32, n)
		phones, openIDs, statuses     = make([]string, n), make([]string, n), make([]string, n)
		amounts                       = make([]int64, n)
		validFrom, validTo            = make([]time.Time, n), make([]time.Time, n)
		claimedAt, updatedAt          = make([]time.Time, n), make([]time.Time, n)
		platforms, channels           = make([]string, n), make([]string, n)
		keys                          = make([]pgtype.Text, n)
		names, merchants, types       = make([]string, n), make([]string, n), make([]string, n)
		minSpends                     = make([]int64, n)
		percents                      = make([]int32, n)
		usage                         = make([]string, n)
		evTypes, evAggregates, evData = make([]string, n), make([]string, n), make([]string, n)
		evAt                          = make([]time.Time, n)
	)
	// The claims of a group mostly share a batch, hence a list of platforms.
	var lastList []string
	var lastLiteral string
	for j, i := range idx {
		w := &writes[i]
		c := w.Claim
		ids[j], batchIDs[j], codes[j], userIDs[j] = c.ID, c.BatchID, c.Code, c.UserID
		seqs[j], limits[j] = int32(c.UserSeq), int32(c.UserLimit)
		phones[j], openIDs[j], statuses[j] = c.Phone, c.OpenID, string(c.Status)
		amounts[j] = c.Amount
		validFrom[j], validTo[j], claimedAt[j], updatedAt[j] = c.ValidFrom, c.ValidTo, c.ClaimedAt, c.UpdatedAt
		platforms[j], channels[j] = c.Platform, c.Channel
		keys[j] = pgtype.Text{String: c.IdempotencyKey, Valid: c.IdempotencyKey != ""}
		names[j], merchants[j], types[j] = c.BatchName, c.MerchantID, string(c.Type)
		minSpends[j], percents[j] = c.MinSpend, int32(c.PercentOff)
		if !slices.Equal(c.UsagePlatforms, lastList) || j == 0 {
			lastList, lastLiteral = c.UsagePlatforms, arrayLiteral(c.UsagePlatforms)
		}
		usage[j] = lastLiteral
		evTypes[j], evAggregates[j], evData[j], evAt[j] = w.Event.Type, w.Event.AggregateID, payloadArg(w.Event.Payload), eventTime(w)
	}
	return []any{ids, batchIDs, codes, userIDs, seqs, limits, phones, openIDs,
		statuses, amounts, validFrom, validTo, claimedAt, updatedAt, platforms, channels, keys,
		names, merchants, types, minSpends, percents, usage,
		evTypes, evAggregates, evData, evAt}
}

// insertOneByOne writes the rows idx of writes in one transaction, each in a
// savepoint, so that a row a constraint refuses gets its own outcome and
// the others are written.
func (s *Store) insertOneByOne(ctx context.Context, writes []store.ClaimWrite, idx []int, out []error) {
	failAll := func(err error) {
		for _, i := range idx {
			out[i] = err
		}
	}
	tx, err := s.primary.Begin(ctx)
	if err != nil {
		failAll(wrap("insert claims: begin", err))
		return
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	for _, i := range idx {
		sp, err := tx.Begin(ctx)
		if err != nil {
			failAll(wrap("insert claims: savepoint", err))
			return
		}
		if err := insertClaim(ctx, sp, &writes[i]); err != nil {
			if !rowProblem(err) {
				failAll(wrap("insert claims", err))
				return
			}
			if rbErr := sp.Rollback(ctx); rbErr != nil {
				failAll(wrap("insert claims: roll back to savepoint", rbErr))
				return
			}
			out[i] = claimRefused(writes[i].Claim, err)
			continue
		}
		if err := sp.Commit(ctx); err != nil {
			failAll(wrap("insert claims: release savepoint", err))
			return
		}
	}
	if err := tx.Commit(ctx); err != nil {
		failAll(wrap("insert claims: commit", err))
	}
}

// eventTime is the creation time of a claim's event: its own, or the
// claim's.
func eventTime(w *store.ClaimWrite) time.Time {
	if w.Event.CreatedAt.IsZero() {
		return w.Claim.ClaimedAt
	}
	return w.Event.CreatedAt
}

// groupRefusal is the outcome of a row insertClaimsSQL refused.
func groupRefusal(c *coupon.Claim, reason int) error {
	var sentinel error
	switch reason {
	case refusedID:
		return fmt.Errorf("postgres: claim %s exists already: %w", c.ID, coupon.ErrConflict)
	case refusedCode:
		sentinel = store.ErrCodeClaimed
	case refusedSeq:
		sentinel = store.ErrSeqTaken
	case refusedKey:
		sentinel = store.ErrKeyUsed
	case refusedUnknown:
		sentinel = store.ErrUnknownCode
	case refusedLimit:
		sentinel = store.ErrOverLimit
	default:
		return fmt.Errorf("postgres: claim %s refused for reason %d", c.ID, reason)
	}
	return refusal(c, sentinel)
}

// claimRefused translates the constraint failure of one claim row, by the
// constraint's name, into its outcome.
func claimRefused(c *coupon.Claim, err error) error {
	pe := pgError(err)
	var sentinel error
	switch {
	case pe.Code == uniqueViolation && pe.ConstraintName == "claims_pkey":
		return fmt.Errorf("postgres: claim %s exists already: %w", c.ID, coupon.ErrConflict)
	case pe.Code == uniqueViolation && pe.ConstraintName == "claims_code":
		sentinel = store.ErrCodeClaimed
	case pe.Code == uniqueViolation && pe.ConstraintName == "claims_batch_user_seq":
		sentinel = store.ErrSeqTaken
	case pe.Code == uniqueViolation && pe.ConstraintName == "claims_idempotency":
		sentinel = store.ErrKeyUsed
	case pe.Code == foreignKeyViolation && pe.ConstraintName == "claims_code_fk":
		sentinel = store.ErrUnknownCode
	case pe.Code == checkViolation && pe.ConstraintName == "claims_user_seq":
		sentinel = store.ErrOverLimit
	default:
		// Bad data (a NUL byte, a payload that is not JSON, …): a malformed
		// row, refused alone.
		return fmt.Errorf("postgres: claim %s refused: %w", c.ID, err)
	}
	return refusal(c, sentinel)
}

func refusal(c *coupon.Claim, sentinel error) error {
	return fmt.Errorf("postgres: claim %s (batch %s, user %s, seq %d, code %q): %w",
		c.ID, c.BatchID, c.UserID, c.UserSeq, c.Code, sentinel)
}

// ClaimedCodes returns those of codes that a claim holds, each once.
func (s *Store) ClaimedCodes(ctx context.Context, codes []string) ([]string, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	rows, err := s.primary.Query(ctx, `SELECT code FROM claims_all WHERE code = ANY($1::text[])`, codes)
	if err != nil {
		return nil, wrap("claimed codes", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("claimed codes", err)
	}
	return out, nil
}

// GetClaim returns a claim, or ErrNotFound.
func (s *Store) GetClaim(ctx context.Context, id string) (*coupon.Claim, error) {
	c, err := scanClaim(s.primary.QueryRow(ctx, `SELECT `+claimColumns+` FROM claims_all WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: claim %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get claim "+id, err)
	}
	return c, nil
}

// GetClaimByKey returns the claim a user made in a batch with an idempotency
// key, or ErrNotFound.
func (s *Store) GetClaimByKey(ctx context.Context, batchID, userID, key string) (*coupon.Claim, error) {
	c, err := scanClaim(s.primary.QueryRow(ctx, `SELECT `+claimColumns+` FROM claims_all
		WHERE batch_id = $1 AND user_id = $2 AND idempotency_key = $3`, batchID, userID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: claim with key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get claim by key", err)
	}
	return c, nil
}

// ListUserClaims returns a user's claims ordered by (valid_to, id), after the
// keyset cursor, filtered by effective status as of f.Now (default: now).
// Claims keep their stored status.
func (s *Store) ListUserClaims(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	var q strings.Builder
	args := []any{f.UserID}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	q.WriteString(`SELECT ` + claimColumns + ` FROM claims WHERE user_id = $1`)
	if f.AfterID != "" {
		q.WriteString(` AND (valid_to, id) > (` + param(f.AfterValidTo) + `, ` + param(f.AfterID) + `)`)
	}
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	switch f.Status {
	case "":
	case coupon.ClaimAvailable:
		q.WriteString(` AND status = 'available' AND valid_to > ` + param(now))
	case coupon.ClaimExpired:
		q.WriteString(` AND (status = 'expired' OR (status = 'available' AND valid_to <= ` + param(now) + `))`)
	default:
		q.WriteString(` AND status = ` + param(string(f.Status)))
	}
	q.WriteString(` ORDER BY valid_to, id LIMIT ` + param(clampLimit(f.Limit)))

	rows, err := s.replica.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, wrap("list claims of user", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Claim, error) { return scanClaim(row) })
	if err != nil {
		return nil, wrap("list claims of user", err)
	}
	return out, nil
}

// scanClaim reads the claimColumns of one row. pgx.ErrNoRows passes through.
func scanClaim(row pgx.Row) (*coupon.Claim, error) {
	var (
		c           coupon.Claim
		status, typ string
		key         pgtype.Text
	)
	err := row.Scan(&c.ID, &c.BatchID, &c.Code, &c.UserID, &c.UserSeq, &c.UserLimit, &c.Phone, &c.OpenID,
		&status, &c.Amount, &c.ValidFrom, &c.ValidTo, &c.ClaimedAt, &c.UpdatedAt, &c.Platform, &c.Channel, &key,
		&c.BatchName, &c.MerchantID, &typ, &c.MinSpend, &c.PercentOff, &c.UsagePlatforms)
	if err != nil {
		return nil, err
	}
	c.Status, c.Type, c.IdempotencyKey = coupon.ClaimStatus(status), coupon.Type(typ), key.String
	c.ValidFrom, c.ValidTo = utc(c.ValidFrom), utc(c.ValidTo)
	c.ClaimedAt, c.UpdatedAt = utc(c.ClaimedAt), utc(c.UpdatedAt)
	c.UsagePlatforms = fromList(c.UsagePlatforms)
	return &c, nil
}

func fitsInt32(n int) bool { return n >= -1<<31 && n <= 1<<31-1 }
