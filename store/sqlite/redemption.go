package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Redemptions. Every change runs in one write transaction of the single
// writer, so transactions never interleave; the conditional updates and the
// unique index redemption_claims_held still guard each change on their own,
// as they must on PostgreSQL.

const redemptionColumns = `id, order_id, user_id, status, platform, node, discount, cart, refunds, reason,
	order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at,
	check_attempts, next_check_at, review_reason, review_since, version`

const redemptionLineColumns = `redemption_id, claim_id, batch_id, code, discount, status, lines`

// Reserve locks the claims and writes the redemption, its lines and its
// event in one transaction.
func (s *Store) Reserve(ctx context.Context, p store.ReserveRedemption) (*coupon.Redemption, error) {
	r := p.Redemption
	op := "reserve for order " + r.OrderID
	var existing *coupon.Redemption
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		ex, err := getRedemption(ctx, tx, `order_id = ?`, r.OrderID)
		switch {
		case err == nil:
			existing = ex
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		to := coupon.ClaimLocked
		if r.Status == coupon.RedemptionConfirmed {
			to = coupon.ClaimUsed
		}
		at := micros(p.At)
		for _, c := range r.Claims {
			res, err := tx.ExecContext(ctx, `UPDATE claims SET status = ?, updated_at = ?
				WHERE id = ? AND user_id = ? AND status = 'available' AND valid_from <= ? AND valid_to > ?`,
				string(to), micros(r.UpdatedAt), c.ClaimID, r.UserID, at, at)
			if err != nil {
				return wrap(op, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return wrap(op, err)
			} else if n == 0 {
				return claimUnavailable(ctx, tx, c.ClaimID, r.UserID, p.At)
			}
		}
		if err := insertRedemption(ctx, tx, r); err != nil {
			return err
		}
		for i, c := range r.Claims {
			lines, err := json.Marshal(c.Lines)
			if err != nil {
				return fmt.Errorf("sqlite: %s: %w", op, err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO redemption_claims (`+redemptionLineColumns+`, position)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.ID, c.ClaimID, c.BatchID, c.Code, c.Discount, string(c.Status), string(lines), i)
			if code, _, ok := constraint(err); ok && code == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
				return &store.ClaimUnavailableError{ClaimID: c.ClaimID, Status: coupon.ClaimAvailable, Reason: store.UnavailableHeld}
			}
			if err != nil {
				return wrap(op+": line", err)
			}
		}
		return insertEvent(ctx, tx, op, p.Event, r.UpdatedAt)
	})
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return existing, fmt.Errorf("sqlite: order %s: %w", r.OrderID, store.ErrOrderExists)
	}
	return r, nil
}

// InsertTombstone records a cancellation that came before any reservation.
func (s *Store) InsertTombstone(ctx context.Context, r *coupon.Redemption) (*coupon.Redemption, error) {
	op := "tombstone for order " + r.OrderID
	var existing *coupon.Redemption
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		ex, err := getRedemption(ctx, tx, `order_id = ?`, r.OrderID)
		switch {
		case err == nil:
			existing = ex
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return insertRedemption(ctx, tx, r)
	})
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return existing, fmt.Errorf("sqlite: order %s: %w", r.OrderID, store.ErrOrderExists)
	}
	return r, nil
}

// GetRedemption returns a redemption with its claims, or ErrNotFound.
func (s *Store) GetRedemption(ctx context.Context, id string) (*coupon.Redemption, error) {
	return s.readRedemption(ctx, `id = ?`, id)
}

// GetRedemptionByOrder returns the redemption of an order, or ErrNotFound.
func (s *Store) GetRedemptionByOrder(ctx context.Context, orderID string) (*coupon.Redemption, error) {
	return s.readRedemption(ctx, `order_id = ?`, orderID)
}

func (s *Store) readRedemption(ctx context.Context, where string, arg string) (*coupon.Redemption, error) {
	var r *coupon.Redemption
	err := s.readTx(ctx, "get redemption", func(tx *sql.Tx) error {
		var err error
		r, err = getRedemption(ctx, tx, where, arg)
		return err
	})
	return r, err
}

// ConfirmRedemption confirms a reserved redemption: lines confirmed, claims used.
func (s *Store) ConfirmRedemption(ctx context.Context, p store.RedemptionChange) (*coupon.Redemption, bool, error) {
	return s.change(ctx, p, "confirm", func(tx *sql.Tx, r *coupon.Redemption) (bool, error) {
		switch r.Status {
		case coupon.RedemptionConfirmed, coupon.RedemptionPartiallyRefunded, coupon.RedemptionRefunded:
			return false, nil
		case coupon.RedemptionReserved:
		default:
			return false, fmt.Errorf("sqlite: redemption %s is %s: %w", r.ID, r.Status, store.ErrRedemptionStatus)
		}
		at := micros(p.At)
		if err := setRedemptionStatus(ctx, tx, r.ID, coupon.RedemptionConfirmed, "confirmed_at", at, p.Reason); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE redemption_claims SET status = 'confirmed'
			WHERE redemption_id = ? AND status = 'reserved'`, r.ID); err != nil {
			return false, wrap("confirm redemption", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE claims SET status = 'used', updated_at = ?
			WHERE id IN (SELECT claim_id FROM redemption_claims WHERE redemption_id = ?) AND status = 'locked'`, at, r.ID)
		if err != nil {
			return false, wrap("confirm redemption", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, wrap("confirm redemption", err)
		} else if int(n) != len(r.Claims) {
			return false, fmt.Errorf("sqlite: confirm redemption %s: %d of its %d claims were locked", r.ID, n, len(r.Claims))
		}
		return true, insertEvent(ctx, tx, "confirm redemption", p.Event, p.At)
	})
}

// CancelRedemption cancels a reserved redemption: lines released, claims
// available again (or expired, past their validity).
func (s *Store) CancelRedemption(ctx context.Context, p store.RedemptionChange) (*coupon.Redemption, bool, error) {
	return s.change(ctx, p, "cancel", func(tx *sql.Tx, r *coupon.Redemption) (bool, error) {
		switch r.Status {
		case coupon.RedemptionCancelled:
			return false, nil
		case coupon.RedemptionReserved:
		default:
			return false, fmt.Errorf("sqlite: redemption %s is %s: %w", r.ID, r.Status, store.ErrRedemptionStatus)
		}
		at := micros(p.At)
		if err := setRedemptionStatus(ctx, tx, r.ID, coupon.RedemptionCancelled, "cancelled_at", at, p.Reason); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE redemption_claims SET status = 'released'
			WHERE redemption_id = ? AND status = 'reserved'`, r.ID); err != nil {
			return false, wrap("cancel redemption", err)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE claims
			SET status = CASE WHEN valid_to <= ? THEN 'expired' ELSE 'available' END, updated_at = ?
			WHERE id IN (SELECT claim_id FROM redemption_claims WHERE redemption_id = ?) AND status = 'locked'
			RETURNING `+claimColumns, at, at, r.ID)
		if err != nil {
			return false, wrap("cancel redemption", err)
		}
		var expired []*coupon.Claim
		n := 0
		err = eachRow(rows, func() error {
			c, err := scanClaim(rows)
			if err != nil {
				return err
			}
			n++
			if c.Status == coupon.ClaimExpired {
				expired = append(expired, c)
			}
			return nil
		})
		if err != nil {
			return false, wrap("cancel redemption", err)
		}
		if n != len(r.Claims) {
			return false, fmt.Errorf("sqlite: cancel redemption %s: %d of its %d claims were locked", r.ID, n, len(r.Claims))
		}
		for _, c := range expired {
			if err := insertEvent(ctx, tx, "cancel redemption: claim expired", p.Expired(c), p.At); err != nil {
				return false, err
			}
		}
		return true, insertEvent(ctx, tx, "cancel redemption", p.Event, p.At)
	})
}

// change runs a confirmation or cancellation: fn decides from the
// redemption as the transaction reads it.
func (s *Store) change(ctx context.Context, p store.RedemptionChange, verb string,
	fn func(tx *sql.Tx, r *coupon.Redemption) (bool, error)) (*coupon.Redemption, bool, error) {
	op := verb + " redemption " + p.ID
	var r *coupon.Redemption
	var changed bool
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		var err error
		if r, err = getRedemption(ctx, tx, `id = ?`, p.ID); err != nil {
			return err
		}
		if changed, err = fn(tx, r); err != nil || !changed {
			return err
		}
		r, err = getRedemption(ctx, tx, `id = ?`, p.ID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrRedemptionStatus) {
		return nil, false, err
	}
	return r, changed, err
}

// setRedemptionStatus moves a reserved redemption to status, stamping
// column, and takes it off the review list.
func setRedemptionStatus(ctx context.Context, tx *sql.Tx, id string, status coupon.RedemptionStatus, column string, at int64, reason string) error {
	res, err := tx.ExecContext(ctx, `UPDATE redemptions SET status = ?, `+column+` = ?, updated_at = ?, reason = ?,
		review_reason = NULL, review_since = NULL, version = version + 1
		WHERE id = ? AND status = 'reserved'`, string(status), at, at, reason, id)
	if err != nil {
		return wrap("set redemption status", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("set redemption status", err)
	} else if n != 1 {
		return fmt.Errorf("sqlite: redemption %s is no longer reserved: %w", id, store.ErrRedemptionStatus)
	}
	return nil
}

// RefundRedemption applies one refund computed from the redemption at p.Version.
func (s *Store) RefundRedemption(ctx context.Context, p store.RefundRedemption) (*coupon.Redemption, error) {
	op := "refund redemption " + p.ID
	var r *coupon.Redemption
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		cur, err := getRedemption(ctx, tx, `id = ?`, p.ID)
		if err != nil {
			return err
		}
		if cur.Version != p.Version {
			return fmt.Errorf("sqlite: redemption %s is at version %d, not %d: %w", p.ID, cur.Version, p.Version, store.ErrStale)
		}
		refunds, err := json.Marshal(append(cur.Refunds, p.Refund))
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
		at := micros(p.At)
		res, err := tx.ExecContext(ctx, `UPDATE redemptions SET status = ?, refunds = ?, refunded_at = ?, updated_at = ?,
			version = version + 1 WHERE id = ? AND version = ?`, string(p.Status), string(refunds), at, at, p.ID, p.Version)
		if err != nil {
			return wrap(op, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if n != 1 {
			return fmt.Errorf("sqlite: redemption %s: %w", p.ID, store.ErrStale)
		}
		for _, c := range p.Claims {
			to := coupon.ClaimRefunded
			if c.Line == coupon.LineReturned {
				to = coupon.ClaimAvailable
			}
			if err := execOne(ctx, tx, op, `UPDATE redemption_claims SET status = ?
				WHERE redemption_id = ? AND claim_id = ? AND status = 'confirmed'`, string(c.Line), p.ID, c.ClaimID); err != nil {
				return err
			}
			var archived bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM claims_archive WHERE id = ?)`, c.ClaimID).Scan(&archived); err != nil {
				return wrap(op, err)
			}
			if archived {
				return fmt.Errorf("sqlite: claim %s: %w", c.ClaimID, store.ErrArchived)
			}
			if err := execOne(ctx, tx, op, `UPDATE claims SET status = ?, updated_at = ? WHERE id = ? AND status = 'used'`,
				string(to), at, c.ClaimID); err != nil {
				return err
			}
		}
		if err := insertEvent(ctx, tx, op, p.Event, p.At); err != nil {
			return err
		}
		r, err = getRedemption(ctx, tx, `id = ?`, p.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// StuckReservations counts reserved redemptions past their timeout or on
// the review list.
func (s *Store) StuckReservations(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM redemptions
		WHERE status = 'reserved' AND (review_reason IS NOT NULL OR expires_at < ?)`, micros(now)).Scan(&n)
	if err != nil {
		return 0, wrap("stuck reservations", err)
	}
	return n, nil
}

// DueRedemptions returns reserved redemptions whose next check is due.
func (s *Store) DueRedemptions(ctx context.Context, now time.Time, limit int) ([]*coupon.Redemption, error) {
	return s.listRedemptions(ctx, `status = 'reserved' AND review_reason IS NULL AND next_check_at <= ?
		ORDER BY next_check_at, id LIMIT ?`, micros(now), clampLimit(limit))
}

// ListReviews returns the review list by id.
func (s *Store) ListReviews(ctx context.Context, f store.ReviewFilter) ([]*coupon.Redemption, error) {
	return s.listRedemptions(ctx, `review_reason IS NOT NULL AND id > ? ORDER BY id LIMIT ?`, f.AfterID, clampLimit(f.Limit))
}

func (s *Store) listRedemptions(ctx context.Context, where string, args ...any) ([]*coupon.Redemption, error) {
	var out []*coupon.Redemption
	err := s.readTx(ctx, "list redemptions", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+redemptionColumns+` FROM redemptions WHERE `+where, args...)
		if err != nil {
			return wrap("list redemptions", err)
		}
		err = eachRow(rows, func() error {
			r, err := scanRedemption(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
		if err != nil {
			return wrap("list redemptions", err)
		}
		return readLines(ctx, tx, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NoteRedemptionCheck records the reconciler's bookkeeping or a review.
func (s *Store) NoteRedemptionCheck(ctx context.Context, p store.RedemptionCheck) (*coupon.Redemption, error) {
	op := "note check of redemption " + p.ID
	var r *coupon.Redemption
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		at := micros(p.At)
		res, err := tx.ExecContext(ctx, `UPDATE redemptions SET check_attempts = ?, next_check_at = ?, updated_at = ?,
			review_reason = CASE WHEN ? THEN NULL WHEN ? <> '' THEN ? ELSE review_reason END,
			review_since = CASE WHEN ? THEN NULL WHEN ? <> '' THEN coalesce(review_since, ?) ELSE review_since END,
			version = version + 1
			WHERE id = ? AND status = ?`,
			p.Attempts, micros(p.NextCheckAt), at,
			p.ClearReview, p.Review, p.Review,
			p.ClearReview, p.Review, at,
			p.ID, string(p.Status))
		if err != nil {
			return wrap(op, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return wrap(op, err)
		}
		r, err = getRedemption(ctx, tx, `id = ?`, p.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("sqlite: redemption %s is %s, not %s: %w", p.ID, r.Status, p.Status, store.ErrRedemptionStatus)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// DeleteTombstones deletes old cancellations that came before any reservation.
func (s *Store) DeleteTombstones(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := s.writer.ExecContext(ctx, `DELETE FROM redemptions WHERE id IN (
		SELECT id FROM redemptions WHERE user_id = '' AND updated_at < ? LIMIT ?)`, micros(before), clampLimit(limit))
	if err != nil {
		return 0, wrap("delete tombstones", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("delete tombstones", err)
	}
	return int(n), nil
}

// ExpiryBatches returns the batches whose expiry sweep is due.
func (s *Store) ExpiryBatches(ctx context.Context, now time.Time, limit int) ([]store.ExpiryBatch, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+batchColumns+`,
			coalesce(e.next_at, 0), coalesce(e.noticed_to, 0), e.pass_from, e.pass_to, e.cursor_user, coalesce(e.cursor_seq, 0)
		FROM batches b LEFT JOIN claim_expiry e ON e.batch_id = b.id
		WHERE b.status <> 'draft' AND coalesce(e.finished, 0) = 0 AND coalesce(e.next_at, 0) <= ?
		ORDER BY b.id LIMIT ?`, micros(now), clampLimit(limit))
	if err != nil {
		return nil, wrap("expiry batches", err)
	}
	var out []store.ExpiryBatch
	err = eachRow(rows, func() error {
		var (
			e                 store.ExpiryBatch
			nextAt, noticedTo int64
			passFrom, passTo  sql.NullInt64
			cursorUser        sql.NullString
		)
		b, err := scanBatch(extraScanner{rows, []any{&nextAt, &noticedTo, &passFrom, &passTo, &cursorUser, &e.State.CursorSeq}})
		if err != nil {
			return err
		}
		e.Batch = b
		e.State.NextAt, e.State.NoticedTo = zeroMicros(nextAt), zeroMicros(noticedTo)
		e.State.InPass = passTo.Valid
		e.State.PassFrom, e.State.PassTo = fromNullMicros(passFrom), fromNullMicros(passTo)
		e.State.CursorUser = cursorUser.String
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, wrap("expiry batches", err)
	}
	return out, nil
}

// SweepClaims sweeps one chunk of a batch's claims by its (batch_id,
// user_id, user_seq) index.
func (s *Store) SweepClaims(ctx context.Context, p store.SweepClaims) (store.SweepResult, error) {
	op := "sweep claims of batch " + p.BatchID
	limit := p.Limit
	if limit <= 0 {
		limit = 500
	}
	limit = min(limit, 5000)
	var res store.SweepResult
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		res = store.SweepResult{}
		rows, err := tx.QueryContext(ctx, `SELECT `+claimColumns+` FROM claims
			WHERE batch_id = ? AND (user_id, user_seq) > (?, ?) ORDER BY user_id, user_seq LIMIT ?`,
			p.BatchID, p.AfterUser, p.AfterSeq, limit)
		if err != nil {
			return wrap(op, err)
		}
		var claims []*coupon.Claim
		err = eachRow(rows, func() error {
			c, err := scanClaim(rows)
			if err == nil {
				claims = append(claims, c)
			}
			return err
		})
		if err != nil {
			return wrap(op, err)
		}
		now := micros(p.Now)
		from := p.NoticeFrom
		if from.Before(p.Now) {
			from = p.Now
		}
		for _, c := range claims {
			res.Scanned++
			res.LastUser, res.LastSeq = c.UserID, c.UserSeq
			if c.Status != coupon.ClaimAvailable {
				continue
			}
			switch {
			case !c.ValidTo.After(p.Now):
				r, err := tx.ExecContext(ctx, `UPDATE claims SET status = 'expired', updated_at = ?
					WHERE id = ? AND status = 'available' AND valid_to <= ?`, now, c.ID, now)
				if err != nil {
					return wrap(op, err)
				}
				if n, err := r.RowsAffected(); err != nil {
					return wrap(op, err)
				} else if n == 1 {
					c.Status, c.UpdatedAt = coupon.ClaimExpired, p.Now
					if err := insertEvent(ctx, tx, op, p.Expired(c), p.Now); err != nil {
						return err
					}
					res.Expired++
				}
			case c.ValidTo.After(from) && !c.ValidTo.After(p.NoticeTo):
				if err := insertEvent(ctx, tx, op, p.Expiring(c), p.Now); err != nil {
					return err
				}
				res.Noticed++
			}
		}
		res.Done = len(claims) < limit
		if res.Done {
			_, err = tx.ExecContext(ctx, `INSERT INTO claim_expiry (batch_id, next_at, noticed_to, finished)
				VALUES (?, ?, ?, ?)
				ON CONFLICT (batch_id) DO UPDATE SET next_at = excluded.next_at, noticed_to = excluded.noticed_to,
					finished = excluded.finished, pass_from = NULL, pass_to = NULL, cursor_user = NULL, cursor_seq = NULL`,
				p.BatchID, zeroOrMicros(p.NextAt), zeroOrMicros(p.NoticeTo), p.Finished)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO claim_expiry (batch_id, pass_from, pass_to, cursor_user, cursor_seq)
				VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (batch_id) DO UPDATE SET pass_from = excluded.pass_from, pass_to = excluded.pass_to,
					cursor_user = excluded.cursor_user, cursor_seq = excluded.cursor_seq`,
				p.BatchID, zeroOrMicros(p.NoticeFrom), zeroOrMicros(p.NoticeTo), res.LastUser, res.LastSeq)
		}
		if err != nil {
			return wrap(op+": state", err)
		}
		return nil
	})
	return res, err
}

// ScheduleExpiry sets when a batch's next expiry pass is due.
func (s *Store) ScheduleExpiry(ctx context.Context, batchID string, next time.Time) error {
	_, err := s.writer.ExecContext(ctx, `INSERT INTO claim_expiry (batch_id, next_at) VALUES (?, ?)
		ON CONFLICT (batch_id) DO UPDATE SET next_at = excluded.next_at`, batchID, zeroOrMicros(next))
	if err != nil {
		return wrap("schedule expiry of batch "+batchID, err)
	}
	return nil
}

// getRedemption reads one redemption and its lines inside tx, or ErrNotFound.
func getRedemption(ctx context.Context, tx *sql.Tx, where string, arg string) (*coupon.Redemption, error) {
	r, err := scanRedemption(tx.QueryRowContext(ctx, `SELECT `+redemptionColumns+` FROM redemptions WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: redemption %s: %w", arg, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := readLines(ctx, tx, []*coupon.Redemption{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// readLines reads the claims of the redemptions, in their order.
func readLines(ctx context.Context, tx *sql.Tx, rs []*coupon.Redemption) error {
	if len(rs) == 0 {
		return nil
	}
	byID := make(map[string]*coupon.Redemption, len(rs))
	ids := make([]string, len(rs))
	for i, r := range rs {
		byID[r.ID], ids[i] = r, r.ID
		r.Claims = []coupon.RedemptionClaim{}
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+redemptionLineColumns+` FROM redemption_claims
		WHERE redemption_id IN (SELECT value FROM json_each(?)) ORDER BY redemption_id, position`, jsonStrings(ids))
	if err != nil {
		return wrap("read redemption claims", err)
	}
	err = eachRow(rows, func() error {
		var redemptionID, status, lines string
		var c coupon.RedemptionClaim
		if err := rows.Scan(&redemptionID, &c.ClaimID, &c.BatchID, &c.Code, &c.Discount, &status, &lines); err != nil {
			return err
		}
		c.Status = coupon.LineStatus(status)
		if err := json.Unmarshal([]byte(lines), &c.Lines); err != nil {
			return fmt.Errorf("sqlite: lines of redemption %s: %w", redemptionID, err)
		}
		if r := byID[redemptionID]; r != nil {
			r.Claims = append(r.Claims, c)
		}
		return nil
	})
	if err != nil {
		return wrap("read redemption claims", err)
	}
	return nil
}

func insertRedemption(ctx context.Context, tx *sql.Tx, r *coupon.Redemption) error {
	cart, err := json.Marshal(r.Cart)
	if err != nil {
		return fmt.Errorf("sqlite: redemption %s: %w", r.ID, err)
	}
	var refunds any
	if len(r.Refunds) > 0 {
		b, err := json.Marshal(r.Refunds)
		if err != nil {
			return fmt.Errorf("sqlite: redemption %s: %w", r.ID, err)
		}
		refunds = string(b)
	}
	var reviewReason, reviewSince any
	if r.Review != nil {
		reviewReason, reviewSince = r.Review.Reason, micros(r.Review.Since)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO redemptions (`+redemptionColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.OrderID, r.UserID, string(r.Status), r.Platform, r.Node, r.Discount, string(cart), refunds, r.Reason,
		r.OrderSystemURL, r.RequestHash, micros(r.ReservedAt), micros(r.ExpiresAt),
		nullMicros(r.ConfirmedAt), nullMicros(r.CancelledAt), nullMicros(r.RefundedAt), micros(r.UpdatedAt),
		r.CheckAttempts, micros(r.NextCheckAt), reviewReason, reviewSince, max(r.Version, 1))
	if err != nil {
		if code, _, ok := constraint(err); ok && (code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return fmt.Errorf("sqlite: redemption %s of order %s exists already: %w", r.ID, r.OrderID, coupon.ErrConflict)
		}
		return wrap("insert redemption", err)
	}
	if r.Version < 1 {
		r.Version = 1
	}
	return nil
}

func scanRedemption(row scanner) (*coupon.Redemption, error) {
	var (
		r                                             coupon.Redemption
		status, cart                                  string
		refunds, reviewReason                         sql.NullString
		reservedAt, expiresAt, updatedAt, nextCheckAt int64
		confirmedAt, cancelledAt, refundedAt, since   sql.NullInt64
	)
	err := row.Scan(&r.ID, &r.OrderID, &r.UserID, &status, &r.Platform, &r.Node, &r.Discount, &cart, &refunds, &r.Reason,
		&r.OrderSystemURL, &r.RequestHash, &reservedAt, &expiresAt, &confirmedAt, &cancelledAt, &refundedAt, &updatedAt,
		&r.CheckAttempts, &nextCheckAt, &reviewReason, &since, &r.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err != nil {
		return nil, wrap("read redemption", err)
	}
	r.Status = coupon.RedemptionStatus(status)
	if err := json.Unmarshal([]byte(cart), &r.Cart); err != nil {
		return nil, fmt.Errorf("sqlite: cart of redemption %s: %w", r.ID, err)
	}
	if refunds.Valid {
		if err := json.Unmarshal([]byte(refunds.String), &r.Refunds); err != nil {
			return nil, fmt.Errorf("sqlite: refunds of redemption %s: %w", r.ID, err)
		}
	}
	r.ReservedAt, r.ExpiresAt, r.UpdatedAt = fromMicros(reservedAt), fromMicros(expiresAt), fromMicros(updatedAt)
	r.ConfirmedAt, r.CancelledAt, r.RefundedAt = fromNullMicros(confirmedAt), fromNullMicros(cancelledAt), fromNullMicros(refundedAt)
	r.NextCheckAt = fromMicros(nextCheckAt)
	if reviewReason.Valid {
		r.Review = &coupon.Review{Reason: reviewReason.String, Since: fromNullMicros(since), Attempts: r.CheckAttempts}
	}
	return &r, nil
}

// claimUnavailable explains why a claim could not be locked.
func claimUnavailable(ctx context.Context, tx *sql.Tx, claimID, userID string, at time.Time) error {
	var owner, status string
	var validFrom, validTo int64
	err := tx.QueryRowContext(ctx, `SELECT user_id, status, valid_from, valid_to FROM claims WHERE id = ?`, claimID).
		Scan(&owner, &status, &validFrom, &validTo)
	e := &store.ClaimUnavailableError{ClaimID: claimID, Status: coupon.ClaimStatus(status)}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		e.Reason = store.UnavailableNotFound
	case err != nil:
		return wrap("reserve: read claim", err)
	case owner != userID:
		e.Reason, e.Status = store.UnavailableNotYours, ""
	case status != string(coupon.ClaimAvailable):
		e.Reason = store.UnavailableStatus
	case at.Before(fromMicros(validFrom)):
		e.Reason = store.UnavailableNotYetValid
	default:
		e.Reason = store.UnavailableExpired
	}
	return e
}

func insertEvent(ctx context.Context, tx *sql.Tx, op string, e store.Event, at time.Time) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = at
	}
	payload := string(e.Payload)
	if payload == "" {
		payload = "null"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES (?, ?, ?, ?)`,
		e.Type, e.AggregateID, payload, micros(e.CreatedAt)); err != nil {
		return wrap(op+": outbox", err)
	}
	return nil
}

// execOne runs a statement that must change exactly one row.
func execOne(ctx context.Context, tx *sql.Tx, op, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap(op, err)
	}
	if n != 1 {
		q := strings.Join(strings.Fields(query), " ")
		return fmt.Errorf("sqlite: %s: %d rows changed, want 1: %s", op, n, q)
	}
	return nil
}

// extraScanner scans a row's first columns with the wrapped scanner's
// caller and the rest into extra.
type extraScanner struct {
	row   scanner
	extra []any
}

func (e extraScanner) Scan(dest ...any) error { return e.row.Scan(append(dest, e.extra...)...) }

// zeroOrMicros stores the zero time of the expiry state as 0.
func zeroOrMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return micros(t)
}

func zeroMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return fromMicros(us)
}
