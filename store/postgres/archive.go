package postgres

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var (
	_ store.ArchiveStore        = (*Store)(nil)
	_ store.PartitionMaintainer = (*Store)(nil)
)

// archiveSQL moves one chunk in one statement: the candidates are locked
// with SKIP LOCKED (a claim a redemption is changing right now is left for
// the next pass instead of waited for), deleted from the hot table and
// inserted into the archive from the DELETE's RETURNING. The statement is
// its own transaction, so it holds its row locks for one round trip.
// The candidates are found through claims_status_id (status, id) between
// the start and store.IDFloor(before) — ids follow the claim time — so a
// chunk reads old settled claims only, never the young ones.
const archiveSQL = `WITH picked AS (
	SELECT c.id FROM claims c
	WHERE c.status IN ('used', 'expired', 'refunded') AND c.id < $4 AND c.claimed_at < $1 AND c.updated_at < $1
	AND NOT EXISTS (SELECT 1 FROM redemption_claims rc WHERE rc.claim_id = c.id AND rc.status = 'reserved')
	LIMIT $2
	FOR UPDATE OF c SKIP LOCKED
), moved AS (
	DELETE FROM claims c USING picked p WHERE c.id = p.id
	RETURNING c.id, c.batch_id, c.code, c.user_id, c.user_seq, c.user_limit, c.phone, c.open_id,
		c.status, c.amount, c.valid_from, c.valid_to, c.claimed_at, c.updated_at, c.platform, c.channel, c.idempotency_key,
		c.batch_name, c.merchant_id, c.type, c.min_spend, c.percent_off, c.usage_platforms
)
INSERT INTO claims_archive (` + claimColumns + `, archived_at)
SELECT ` + claimColumns + `, $3 FROM moved
RETURNING user_id`

// ArchiveClaims moves one chunk of settled claims to the archive.
func (s *Store) ArchiveClaims(ctx context.Context, p store.ArchiveClaims) (store.ArchiveResult, error) {
	var res store.ArchiveResult
	at := p.At
	if at.IsZero() {
		at = s.now()
	}
	rows, err := s.primary.Query(ctx, archiveSQL, p.Before, p.ArchiveLimit(), at, store.IDFloor(p.Before))
	if err != nil {
		return res, wrap("archive claims", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return res, wrap("archive claims", err)
	}
	res.Moved = len(users)
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		if !seen[u] {
			seen[u] = true
			res.Users = append(res.Users, u)
		}
	}
	return res, nil
}

// ListUserClaimHistory lists a user's hot and archived claims as one list,
// merged from the two (user_id, valid_to, id) indexes (a Merge Append over
// the archive's partitions). It reads the replica, as ListUserClaims does;
// one statement reads one snapshot, so a claim moving meanwhile is seen once.
func (s *Store) ListUserClaimHistory(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	var q strings.Builder
	args := []any{f.UserID}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	limit := param(clampLimit(f.Limit))
	var where strings.Builder
	where.WriteString(`user_id = $1`)
	if f.AfterID != "" {
		where.WriteString(` AND (valid_to, id) > (` + param(f.AfterValidTo) + `, ` + param(f.AfterID) + `)`)
	}
	switch f.Status {
	case "":
	case coupon.ClaimAvailable:
		where.WriteString(` AND status = 'available' AND valid_to > ` + param(now))
	case coupon.ClaimExpired:
		where.WriteString(` AND (status = 'expired' OR (status = 'available' AND valid_to <= ` + param(now) + `))`)
	default:
		where.WriteString(` AND status = ` + param(string(f.Status)))
	}
	w := where.String()
	q.WriteString(`SELECT ` + claimColumns + ` FROM (
		(SELECT ` + claimColumns + ` FROM claims WHERE ` + w + ` ORDER BY valid_to, id LIMIT ` + limit + `)
		UNION ALL
		(SELECT ` + claimColumns + ` FROM claims_archive WHERE ` + w + ` ORDER BY valid_to, id LIMIT ` + limit + `)
	) u ORDER BY valid_to, id LIMIT ` + limit)
	rows, err := s.replica.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, wrap("list claim history of user", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Claim, error) { return scanClaim(row) })
	if err != nil {
		return nil, wrap("list claim history of user", err)
	}
	return out, nil
}

// PruneArchive deletes up to limit claims claimed before before from the
// default partition: the monthly ones are dropped whole by
// MaintainPartitions, but what the default holds can only be deleted. With
// the rest of the limit it deletes archived redemptions reserved before
// before, and their lines, from their default partitions.
func (s *Store) PruneArchive(ctx context.Context, before time.Time, limit int) (int, error) {
	limit = store.ArchiveClaims{Limit: limit}.ArchiveLimit()
	tag, err := s.primary.Exec(ctx, `DELETE FROM claims_archive_default WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM claims_archive_default WHERE claimed_at < $1 LIMIT $2))`, before, limit)
	if err != nil {
		return 0, wrap("prune archive", err)
	}
	n := int(tag.RowsAffected())
	if n >= limit {
		return n, nil
	}
	var m int
	err = s.primary.QueryRow(ctx, `WITH gone AS (
		DELETE FROM redemptions_archive_default WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM redemptions_archive_default WHERE reserved_at < $1 LIMIT $2))
		RETURNING id
	), lines AS (
		DELETE FROM redemption_claims_archive_default WHERE redemption_id IN (SELECT id FROM gone)
	)
	SELECT count(*) FROM gone`, before, limit-n).Scan(&m)
	if err != nil {
		return n, wrap("prune archive: redemptions", err)
	}
	return n + m, nil
}
