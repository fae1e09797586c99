package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var _ store.ArchiveStore = (*Store)(nil)

// ArchiveClaims moves one chunk of settled claims to claims_archive in one
// write transaction: it picks the ids, copies the rows and deletes them, so
// the chunk holds the single writer for as long as a few group commits do.
// The candidates come from claims_status_id (status, id), one status at a
// time, between the start and store.IDFloor(before) (ids follow the claim
// time), so no index is added to the hot table and a chunk reads old settled
// claims only; recently changed rows of an old claim are passed over and
// looked at again on a later pass. The reserved-line check repeats the
// partial index's own condition so that SQLite uses redemption_claims_held.
func (s *Store) ArchiveClaims(ctx context.Context, p store.ArchiveClaims) (store.ArchiveResult, error) {
	var res store.ArchiveResult
	at := p.At
	if at.IsZero() {
		at = s.now()
	}
	limit := p.ArchiveLimit()
	before, floor := micros(p.Before), store.IDFloor(p.Before)
	err := s.writeTx(ctx, "archive claims", func(tx *sql.Tx) error {
		var ids []string
		seen := map[string]bool{}
		res.Users = res.Users[:0]
		for _, status := range []coupon.ClaimStatus{coupon.ClaimUsed, coupon.ClaimExpired, coupon.ClaimRefunded} {
			if len(ids) >= limit {
				break
			}
			rows, err := tx.QueryContext(ctx, `SELECT id, user_id FROM claims c
				WHERE status = ? AND id < ? AND claimed_at < ? AND updated_at < ?
				AND NOT EXISTS (SELECT 1 FROM redemption_claims rc WHERE rc.claim_id = c.id
					AND rc.status IN ('reserved', 'confirmed') AND rc.status = 'reserved')
				ORDER BY id LIMIT ?`, string(status), floor, before, before, limit-len(ids))
			if err != nil {
				return wrap("archive claims: pick", err)
			}
			err = eachRow(rows, func() error {
				var id, user string
				if err := rows.Scan(&id, &user); err != nil {
					return err
				}
				ids = append(ids, id)
				if !seen[user] {
					seen[user] = true
					res.Users = append(res.Users, user)
				}
				return nil
			})
			if err != nil {
				return wrap("archive claims: pick", err)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		list := jsonStrings(ids)
		if _, err := tx.ExecContext(ctx, `INSERT INTO claims_archive (`+claimColumns+`, archived_at)
			SELECT `+claimColumns+`, ? FROM claims WHERE id IN (SELECT value FROM json_each(?))`, micros(at), list); err != nil {
			return wrap("archive claims: copy", err)
		}
		r, err := tx.ExecContext(ctx, `DELETE FROM claims WHERE id IN (SELECT value FROM json_each(?))`, list)
		if err != nil {
			return wrap("archive claims: delete", err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return wrap("archive claims: delete", err)
		}
		res.Moved = int(n)
		return nil
	})
	if err != nil {
		return store.ArchiveResult{}, err
	}
	return res, nil
}

// ListUserClaimHistory lists a user's hot and archived claims as one list:
// each table yields its first Limit rows after the cursor from its
// (user_id, valid_to, id) index, and the union of the two is sorted and cut.
// One statement reads one snapshot, so a claim moving meanwhile is seen once.
func (s *Store) ListUserClaimHistory(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	limit := clampLimit(f.Limit)
	var q strings.Builder
	var args []any
	q.WriteString(`SELECT ` + claimColumns + ` FROM (`)
	for i, table := range []string{"claims", "claims_archive"} {
		if i > 0 {
			q.WriteString(` UNION ALL `)
		}
		q.WriteString(`SELECT * FROM (SELECT ` + claimColumns + ` FROM ` + table + ` WHERE user_id = ?`)
		args = append(args, f.UserID)
		if f.AfterID != "" {
			q.WriteString(` AND (valid_to, id) > (?, ?)`)
			args = append(args, micros(f.AfterValidTo), f.AfterID)
		}
		args = appendStatusFilter(&q, args, f.Status, now)
		q.WriteString(` ORDER BY valid_to, id LIMIT ?)`)
		args = append(args, limit)
	}
	q.WriteString(`) ORDER BY valid_to, id LIMIT ?`)
	args = append(args, limit)
	return s.queryClaims(ctx, "list claim history of user", q.String(), args...)
}

// PruneArchive deletes the oldest archived claims, claimed before before.
func (s *Store) PruneArchive(ctx context.Context, before time.Time, limit int) (int, error) {
	limit = store.ArchiveClaims{Limit: limit}.ArchiveLimit()
	var n int64
	err := s.writeTx(ctx, "prune archive", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM claims_archive WHERE id IN (
			SELECT id FROM claims_archive WHERE claimed_at < ? ORDER BY claimed_at LIMIT ?)`, micros(before), limit)
		if err != nil {
			return wrap("prune archive", err)
		}
		n, err = r.RowsAffected()
		return wrapIf("prune archive", err)
	})
	return int(n), err
}

// appendStatusFilter is ListUserClaims' filter by effective status as of now.
func appendStatusFilter(q *strings.Builder, args []any, status coupon.ClaimStatus, now time.Time) []any {
	switch status {
	case "":
	case coupon.ClaimAvailable:
		q.WriteString(` AND status = ? AND valid_to > ?`)
		args = append(args, string(coupon.ClaimAvailable), micros(now))
	case coupon.ClaimExpired:
		q.WriteString(` AND (status = ? OR (status = ? AND valid_to <= ?))`)
		args = append(args, string(coupon.ClaimExpired), string(coupon.ClaimAvailable), micros(now))
	default:
		q.WriteString(` AND status = ?`)
		args = append(args, string(status))
	}
	return args
}
