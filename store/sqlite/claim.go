package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

const claimColumns = `id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
	status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
	batch_name, merchant_id, type, min_spend, percent_off, usage_platforms`

const claimColumnCount = 23

const insertClaimSQL = `INSERT INTO claims (` + claimColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const insertEventSQL = `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES (?, ?, ?, ?)`

// InsertClaims writes the claims and their outbox rows in one transaction.
// A claim a constraint refuses is skipped with its outcome (SQLite undoes
// only the failing statement) and writes no outbox row; any other failure
// rolls the whole transaction back and becomes every outcome. An event
// with a zero CreatedAt is stamped with its claim's ClaimedAt.
//
// It runs two single-row INSERTs per claim, on purpose. One multi-row
// INSERT ... ON CONFLICT DO NOTHING RETURNING id per group, plus one for
// the events, was measured against this loop (BenchmarkInsertClaims and
// BenchmarkInsertClaimsLoaded, 15 alternating runs) and was no faster:
// 0-9% slower at 16 and 256 claims per group, with 11% more CPU at 16 in
// a loaded database, and 2-4% more instructions per call even in an empty
// one (callgrind). The statements it saves are cheap: the driver keeps
// them prepared and the database is in process, so there is no round trip
// to save, and the time goes to B-tree pages and the commit either way. A
// statement that writes many rows and can fail part way (the claims' CHECK
// and FOREIGN KEY) costs more: to undo it alone, SQLite first copies every
// page it touches into a statement journal, which took 7-10% of the
// call's CPU. That path is also harder to get right. A claim that DO
// NOTHING skipped, re-inserted alone to name its constraint, meets the
// rows after it too, so the refusal SQLite names can differ from the one
// this loop gives. And a statement cached for each group size up to 256
// holds about 96 MB.
func (s *Store) InsertClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	out := make([]error, len(writes))
	if len(writes) == 0 {
		return out
	}
	failAll := func(err error) []error {
		for i := range out {
			out[i] = err
		}
		return out
	}

	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return failAll(wrap("insert claims: begin", err))
	}
	claimStmt := tx.StmtContext(ctx, s.insertClaim)
	eventStmt := tx.StmtContext(ctx, s.insertEvent)
	var args [claimColumnCount]any
	for i := range writes {
		w := &writes[i]
		c := w.Claim
		if c == nil {
			out[i] = errors.New("sqlite: insert claims: nil claim")
			continue
		}
		claimArgs(&args, c)
		if _, err := claimStmt.ExecContext(ctx, args[:]...); err != nil {
			if refused := claimRefused(c, err); refused != nil {
				out[i] = refused
				continue
			}
			_ = tx.Rollback()
			return failAll(wrap("insert claims", err))
		}
		at := w.Event.CreatedAt
		if at.IsZero() {
			at = c.ClaimedAt
		}
		if _, err := eventStmt.ExecContext(ctx, w.Event.Type, w.Event.AggregateID, string(w.Event.Payload), micros(at)); err != nil {
			_ = tx.Rollback()
			return failAll(wrap("insert claims: outbox", err))
		}
	}
	if err := tx.Commit(); err != nil {
		return failAll(wrap("insert claims: commit", err))
	}
	return out
}

// GetClaim returns a claim, or ErrNotFound.
func (s *Store) GetClaim(ctx context.Context, id string) (*coupon.Claim, error) {
	c, err := scanClaim(s.reader.QueryRowContext(ctx, `SELECT `+claimColumns+` FROM claims_all WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: claim %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// GetClaimByKey returns the claim a user made in a batch with an idempotency
// key, or ErrNotFound.
func (s *Store) GetClaimByKey(ctx context.Context, batchID, userID, key string) (*coupon.Claim, error) {
	c, err := scanClaim(s.reader.QueryRowContext(ctx, `SELECT `+claimColumns+` FROM claims_all
		WHERE batch_id = ? AND user_id = ? AND idempotency_key = ?`, batchID, userID, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: claim with key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListUserClaims returns a user's claims ordered by (valid_to, id), after the
// keyset cursor, filtered by effective status as of f.Now (default: now).
// Claims keep their stored status.
func (s *Store) ListUserClaims(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	var q strings.Builder
	q.WriteString(`SELECT ` + claimColumns + ` FROM claims WHERE user_id = ?`)
	args := []any{f.UserID}
	if f.AfterID != "" {
		q.WriteString(` AND (valid_to, id) > (?, ?)`)
		args = append(args, micros(f.AfterValidTo), f.AfterID)
	}
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	switch f.Status {
	case "":
	case coupon.ClaimAvailable:
		q.WriteString(` AND status = ? AND valid_to > ?`)
		args = append(args, string(coupon.ClaimAvailable), micros(now))
	case coupon.ClaimExpired:
		q.WriteString(` AND (status = ? OR (status = ? AND valid_to <= ?))`)
		args = append(args, string(coupon.ClaimExpired), string(coupon.ClaimAvailable), micros(now))
	default:
		q.WriteString(` AND status = ?`)
		args = append(args, string(f.Status))
	}
	q.WriteString(` ORDER BY valid_to, id LIMIT ?`)
	args = append(args, clampLimit(f.Limit))

	return s.queryClaims(ctx, "list claims of user", q.String(), args...)
}

// queryClaims runs a query of claimColumns on the readers and returns its
// claims; op names it in errors.
func (s *Store) queryClaims(ctx context.Context, op, query string, args ...any) ([]*coupon.Claim, error) {
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	var out []*coupon.Claim
	err = eachRow(rows, func() error {
		c, err := scanClaim(rows)
		if err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// claimArgs fills the arguments of insertClaimSQL, reusing the array so
// that the hot path allocates only the boxed values.
func claimArgs(a *[claimColumnCount]any, c *coupon.Claim) {
	a[0], a[1], a[2], a[3] = c.ID, c.BatchID, c.Code, c.UserID
	a[4], a[5], a[6], a[7] = int64(c.UserSeq), int64(c.UserLimit), c.Phone, c.OpenID
	a[8], a[9], a[10], a[11] = string(c.Status), c.Amount, micros(c.ValidFrom), micros(c.ValidTo)
	a[12], a[13], a[14], a[15] = micros(c.ClaimedAt), micros(c.UpdatedAt), c.Platform, c.Channel
	a[16], a[17], a[18], a[19] = nullString(c.IdempotencyKey), c.BatchName, c.MerchantID, string(c.Type)
	a[20], a[21], a[22] = c.MinSpend, int64(c.PercentOff), encodeList(c.UsagePlatforms)
}

// claimRefused translates a constraint failure of one claim row into its
// per-row outcome, or returns nil when err is not a constraint failure.
// SQLite names the columns of a failed UNIQUE constraint and the name of a
// failed CHECK constraint in the message; only these tell the UNIQUE
// constraints of the claims table apart.
func claimRefused(c *coupon.Claim, err error) error {
	code, msg, ok := constraint(err)
	if !ok {
		return nil
	}
	var sentinel error
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		switch {
		case strings.Contains(msg, "claims.idempotency_key"):
			sentinel = store.ErrKeyUsed
		case strings.Contains(msg, "claims.user_seq"):
			sentinel = store.ErrSeqTaken
		case strings.Contains(msg, "claims.code"):
			sentinel = store.ErrCodeClaimed
		}
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		sentinel = store.ErrUnknownCode
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		if strings.Contains(msg, "claims_user_seq") {
			sentinel = store.ErrOverLimit
		}
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("sqlite: claim %s exists already: %w", c.ID, coupon.ErrConflict)
	}
	if sentinel == nil {
		// NOT NULL, a type mismatch, …: a malformed row, refused alone.
		return fmt.Errorf("sqlite: claim %s refused: %s", c.ID, msg)
	}
	return fmt.Errorf("sqlite: claim %s (batch %s, user %s, seq %d, code %q): %w",
		c.ID, c.BatchID, c.UserID, c.UserSeq, c.Code, sentinel)
}

// scanClaim reads the claimColumns of one row. sql.ErrNoRows passes through
// unwrapped.
func scanClaim(row scanner) (*coupon.Claim, error) {
	var (
		c                                        coupon.Claim
		status, typ                              string
		validFrom, validTo, claimedAt, updatedAt int64
		key, usagePlatforms                      sql.NullString
	)
	err := row.Scan(&c.ID, &c.BatchID, &c.Code, &c.UserID, &c.UserSeq, &c.UserLimit, &c.Phone, &c.OpenID,
		&status, &c.Amount, &validFrom, &validTo, &claimedAt, &updatedAt, &c.Platform, &c.Channel, &key,
		&c.BatchName, &c.MerchantID, &typ, &c.MinSpend, &c.PercentOff, &usagePlatforms)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err != nil {
		return nil, wrap("read claim", err)
	}
	c.Status, c.Type, c.IdempotencyKey = coupon.ClaimStatus(status), coupon.Type(typ), key.String
	c.ValidFrom, c.ValidTo = fromMicros(validFrom), fromMicros(validTo)
	c.ClaimedAt, c.UpdatedAt = fromMicros(claimedAt), fromMicros(updatedAt)
	if c.UsagePlatforms, err = decodeList("usage_platforms", usagePlatforms); err != nil {
		return nil, err
	}
	return &c, nil
}
