package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var _ store.RedemptionArchiver = (*Store)(nil)

// archiveRedemptionsSQL moves one chunk of settled redemptions with their
// lines in one statement, as archiveSQL does for claims. The candidates
// come from redemptions_status_id (status, id) below store.IDFloor(before)
// (ids follow the reservation time) and are locked with SKIP LOCKED: a
// redemption a refund or confirmation is changing right now stays for the
// next pass. One whose reserved or confirmed line still holds a claim of
// the hot table could still change (a refund of that claim), so it stays
// until that claim is archived; a tombstone stays for DeleteTombstones and
// a redemption on the review list for its operator.
const archiveRedemptionsSQL = `WITH picked AS (
	SELECT r.id FROM redemptions r
	WHERE r.status IN ('confirmed', 'cancelled', 'partially_refunded', 'refunded') AND r.id < $4
	AND r.updated_at < $1 AND r.user_id <> '' AND r.review_reason IS NULL
	AND NOT EXISTS (SELECT 1 FROM redemption_claims rc JOIN claims c ON c.id = rc.claim_id
		WHERE rc.redemption_id = r.id AND rc.status IN ('reserved', 'confirmed'))
	LIMIT $2
	FOR UPDATE OF r SKIP LOCKED
), moved AS (
	DELETE FROM redemptions r USING picked p WHERE r.id = p.id
	RETURNING ` + prefixedRedemptionColumns + `
), lines AS (
	DELETE FROM redemption_claims rc USING picked p WHERE rc.redemption_id = p.id
	RETURNING rc.redemption_id, rc.claim_id, rc.position, rc.batch_id, rc.code, rc.discount, rc.status, rc.lines
), archived_lines AS (
	INSERT INTO redemption_claims_archive (redemption_id, claim_id, position, batch_id, code, discount, status, lines, reserved_at)
	SELECT l.redemption_id, l.claim_id, l.position, l.batch_id, l.code, l.discount, l.status, l.lines, m.reserved_at
	FROM lines l JOIN moved m ON m.id = l.redemption_id
)
INSERT INTO redemptions_archive (` + redemptionColumns + `, archived_at)
SELECT ` + redemptionColumns + `, $3 FROM moved
RETURNING id`

const prefixedRedemptionColumns = `r.id, r.order_id, r.user_id, r.status, r.platform, r.node, r.discount, r.cart, r.refunds,
	r.reason, r.order_system_url, r.request_hash, r.reserved_at, r.expires_at, r.confirmed_at, r.cancelled_at,
	r.refunded_at, r.updated_at, r.check_attempts, r.next_check_at, r.review_reason, r.review_since, r.version`

// ArchiveRedemptions moves one chunk of settled redemptions to the archive.
func (s *Store) ArchiveRedemptions(ctx context.Context, p store.ArchiveRedemptions) (int, error) {
	at := p.At
	if at.IsZero() {
		at = s.now()
	}
	rows, err := s.primary.Query(ctx, archiveRedemptionsSQL, p.Before, p.ArchiveLimit(), at, store.IDFloor(p.Before))
	if err != nil {
		return 0, wrap("archive redemptions", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, wrap("archive redemptions", err)
	}
	return len(ids), nil
}

// errOrderArchived ends a transaction that wrote a redemption for an order
// whose redemption is in the archive: the write is rolled back.
var errOrderArchived = errors.New("postgres: the order's redemption is archived")

// archivedOrder returns the archived redemption of an order, or nil. The
// hot table's unique order index refuses a second redemption of an order
// it holds; this is the same check against the archive. It runs after the
// insert into the hot table, at READ COMMITTED: if the archiver was moving
// the order's redemption meanwhile, the insert waited for it to commit (the
// row it deleted was the insert's conflict), so this statement sees the
// archived row.
func archivedOrder(ctx context.Context, tx pgx.Tx, orderID string) (*coupon.Redemption, error) {
	r, err := getArchivedRedemption(ctx, tx, `order_id = $1`, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// getArchivedRedemption reads one archived redemption and its lines, or
// ErrNotFound.
func getArchivedRedemption(ctx context.Context, tx pgx.Tx, where, arg string) (*coupon.Redemption, error) {
	r, err := scanRedemption(tx.QueryRow(ctx, `SELECT `+redemptionColumns+` FROM redemptions_archive WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: redemption %s: %w", arg, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get archived redemption", err)
	}
	if err := readArchivedLines(ctx, tx, []*coupon.Redemption{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// getAnyRedemption reads a redemption from the hot tables, else from the
// archive; archived tells which.
func getAnyRedemption(ctx context.Context, tx pgx.Tx, where, arg string) (r *coupon.Redemption, archived bool, err error) {
	r, err = getRedemption(ctx, tx, where, arg, false)
	if !errors.Is(err, store.ErrNotFound) {
		return r, false, err
	}
	r, err = getArchivedRedemption(ctx, tx, where, arg)
	return r, err == nil, err
}

// readArchivedLines reads the archived claims of archived redemptions, in
// their order; the reservation times let PostgreSQL read only their
// partitions.
func readArchivedLines(ctx context.Context, tx pgx.Tx, rs []*coupon.Redemption) error {
	if len(rs) == 0 {
		return nil
	}
	ids := make([]string, len(rs))
	reserved := make([]time.Time, len(rs))
	for i, r := range rs {
		ids[i], reserved[i] = r.ID, r.ReservedAt
	}
	return scanLines(ctx, tx, rs, `SELECT redemption_id, claim_id, batch_id, code, discount, status, lines FROM redemption_claims_archive
		WHERE redemption_id = ANY($1::text[]) AND reserved_at = ANY($2::timestamptz[]) ORDER BY redemption_id, position`, ids, reserved)
}
