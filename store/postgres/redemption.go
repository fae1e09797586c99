package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Redemptions. Transactions run at READ COMMITTED. A reservation locks each
// claim with a conditional UPDATE: of concurrent reservations of one claim,
// the first takes the row lock, the others wait for it and then find the
// claim no longer available, so exactly one wins; claims are locked in id
// order so that two orders never wait on each other. A confirmation,
// cancellation or refund locks the redemption row first (FOR UPDATE), so
// they serialise per redemption. Every method reads and writes the primary.

const redemptionColumns = `id, order_id, user_id, status, platform, node, discount, cart, refunds, reason,
	order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at,
	check_attempts, next_check_at, review_reason, review_since, version`

const insertRedemptionSQL = `INSERT INTO redemptions (` + redemptionColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
	ON CONFLICT (order_id) DO NOTHING`

// Reserve locks the claims and writes the redemption, its lines and its
// event in one transaction.
func (s *Store) Reserve(ctx context.Context, p store.ReserveRedemption) (*coupon.Redemption, error) {
	r := p.Redemption
	op := "reserve for order " + r.OrderID
	var existing *coupon.Redemption
	err := s.retryTx(ctx, op, func(tx pgx.Tx) error {
		existing = nil
		inserted, err := insertRedemption(ctx, tx, r)
		if err != nil {
			return err
		}
		if !inserted {
			existing, err = getRedemption(ctx, tx, `order_id = $1`, r.OrderID, false)
			return err
		}
		if existing, err = archivedOrder(ctx, tx, r.OrderID); err != nil || existing != nil {
			return cmp.Or(err, errOrderArchived)
		}
		to := coupon.ClaimLocked
		if r.Status == coupon.RedemptionConfirmed {
			to = coupon.ClaimUsed
		}
		order := make([]int, len(r.Claims))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(r.Claims[a].ClaimID, r.Claims[b].ClaimID) })
		var failed []int
		for _, i := range order {
			tag, err := tx.Exec(ctx, `UPDATE claims SET status = $1, updated_at = $2
				WHERE id = $3 AND user_id = $4 AND status = 'available' AND valid_from <= $5 AND valid_to > $5`,
				string(to), r.UpdatedAt, r.Claims[i].ClaimID, r.UserID, p.At)
			if err != nil {
				return wrap(op, err)
			}
			if tag.RowsAffected() == 0 {
				failed = append(failed, i)
			}
		}
		if len(failed) > 0 {
			return claimUnavailable(ctx, tx, r.Claims[slices.Min(failed)].ClaimID, r.UserID, p.At)
		}
		for i, c := range r.Claims {
			lines, err := json.Marshal(c.Lines)
			if err != nil {
				return fmt.Errorf("postgres: %s: %w", op, err)
			}
			_, err = tx.Exec(ctx, `INSERT INTO redemption_claims (redemption_id, claim_id, position, batch_id, code, discount, status, lines)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)`, r.ID, c.ClaimID, i, c.BatchID, c.Code, c.Discount, string(c.Status), string(lines))
			if pe := pgError(err); pe != nil && pe.Code == uniqueViolation && pe.ConstraintName == "redemption_claims_held" {
				return &store.ClaimUnavailableError{ClaimID: c.ClaimID, Status: coupon.ClaimAvailable, Reason: store.UnavailableHeld}
			}
			if err != nil {
				return wrap(op+": line", err)
			}
		}
		return insertEvent(ctx, tx, op, p.Event, r.UpdatedAt)
	})
	if err != nil && !errors.Is(err, errOrderArchived) {
		return nil, err
	}
	if existing != nil {
		return existing, fmt.Errorf("postgres: order %s: %w", r.OrderID, store.ErrOrderExists)
	}
	return r, nil
}

// InsertTombstone records a cancellation that came before any reservation.
func (s *Store) InsertTombstone(ctx context.Context, r *coupon.Redemption) (*coupon.Redemption, error) {
	op := "tombstone for order " + r.OrderID
	var existing *coupon.Redemption
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		inserted, err := insertRedemption(ctx, tx, r)
		if err != nil {
			return err
		}
		if inserted {
			if existing, err = archivedOrder(ctx, tx, r.OrderID); err != nil || existing != nil {
				return cmp.Or(err, errOrderArchived)
			}
			return nil
		}
		existing, err = getRedemption(ctx, tx, `order_id = $1`, r.OrderID, false)
		return err
	})
	if err != nil && !errors.Is(err, errOrderArchived) {
		return nil, err
	}
	if existing != nil {
		return existing, fmt.Errorf("postgres: order %s: %w", r.OrderID, store.ErrOrderExists)
	}
	return r, nil
}

// GetRedemption returns a redemption with its claims, or ErrNotFound.
func (s *Store) GetRedemption(ctx context.Context, id string) (*coupon.Redemption, error) {
	return s.readRedemption(ctx, `id = $1`, id)
}

// GetRedemptionByOrder returns the redemption of an order, or ErrNotFound.
func (s *Store) GetRedemptionByOrder(ctx context.Context, orderID string) (*coupon.Redemption, error) {
	return s.readRedemption(ctx, `order_id = $1`, orderID)
}

func (s *Store) readRedemption(ctx context.Context, where, arg string) (*coupon.Redemption, error) {
	var r *coupon.Redemption
	err := inTx(ctx, s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, "get redemption",
		func(tx pgx.Tx) error {
			var err error
			r, _, err = getAnyRedemption(ctx, tx, where, arg)
			return err
		})
	return r, err
}

// ConfirmRedemption confirms a reserved redemption: lines confirmed, claims used.
func (s *Store) ConfirmRedemption(ctx context.Context, p store.RedemptionChange) (*coupon.Redemption, bool, error) {
	return s.change(ctx, p, "confirm", func(tx pgx.Tx, r *coupon.Redemption) (bool, error) {
		switch r.Status {
		case coupon.RedemptionConfirmed, coupon.RedemptionPartiallyRefunded, coupon.RedemptionRefunded:
			return false, nil
		case coupon.RedemptionReserved:
		default:
			return false, fmt.Errorf("postgres: redemption %s is %s: %w", r.ID, r.Status, store.ErrRedemptionStatus)
		}
		if err := setRedemptionStatus(ctx, tx, r.ID, coupon.RedemptionConfirmed, "confirmed_at", p.At, p.Reason); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `UPDATE redemption_claims SET status = 'confirmed'
			WHERE redemption_id = $1 AND status = 'reserved'`, r.ID); err != nil {
			return false, wrap("confirm redemption", err)
		}
		tag, err := tx.Exec(ctx, `UPDATE claims SET status = 'used', updated_at = $1
			WHERE id IN (SELECT claim_id FROM redemption_claims WHERE redemption_id = $2) AND status = 'locked'`, p.At, r.ID)
		if err != nil {
			return false, wrap("confirm redemption", err)
		}
		if int(tag.RowsAffected()) != len(r.Claims) {
			return false, fmt.Errorf("postgres: confirm redemption %s: %d of its %d claims were locked", r.ID, tag.RowsAffected(), len(r.Claims))
		}
		return true, insertEvent(ctx, tx, "confirm redemption", p.Event, p.At)
	})
}

// CancelRedemption cancels a reserved redemption: lines released, claims
// available again (or expired, past their validity).
func (s *Store) CancelRedemption(ctx context.Context, p store.RedemptionChange) (*coupon.Redemption, bool, error) {
	return s.change(ctx, p, "cancel", func(tx pgx.Tx, r *coupon.Redemption) (bool, error) {
		switch r.Status {
		case coupon.RedemptionCancelled:
			return false, nil
		case coupon.RedemptionReserved:
		default:
			return false, fmt.Errorf("postgres: redemption %s is %s: %w", r.ID, r.Status, store.ErrRedemptionStatus)
		}
		if err := setRedemptionStatus(ctx, tx, r.ID, coupon.RedemptionCancelled, "cancelled_at", p.At, p.Reason); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `UPDATE redemption_claims SET status = 'released'
			WHERE redemption_id = $1 AND status = 'reserved'`, r.ID); err != nil {
			return false, wrap("cancel redemption", err)
		}
		rows, err := tx.Query(ctx, `UPDATE claims
			SET status = CASE WHEN valid_to <= $1 THEN 'expired' ELSE 'available' END, updated_at = $1
			WHERE id IN (SELECT claim_id FROM redemption_claims WHERE redemption_id = $2) AND status = 'locked'
			RETURNING `+claimColumns, p.At, r.ID)
		if err != nil {
			return false, wrap("cancel redemption", err)
		}
		claims, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Claim, error) { return scanClaim(row) })
		if err != nil {
			return false, wrap("cancel redemption", err)
		}
		if len(claims) != len(r.Claims) {
			return false, fmt.Errorf("postgres: cancel redemption %s: %d of its %d claims were locked", r.ID, len(claims), len(r.Claims))
		}
		for _, c := range claims {
			if c.Status == coupon.ClaimExpired {
				if err := insertEvent(ctx, tx, "cancel redemption: claim expired", p.Expired(c), p.At); err != nil {
					return false, err
				}
			}
		}
		return true, insertEvent(ctx, tx, "cancel redemption", p.Event, p.At)
	})
}

// change runs a confirmation or cancellation on the redemption row locked
// for update; fn decides from it.
func (s *Store) change(ctx context.Context, p store.RedemptionChange, verb string,
	fn func(tx pgx.Tx, r *coupon.Redemption) (bool, error)) (*coupon.Redemption, bool, error) {
	op := verb + " redemption " + p.ID
	var r *coupon.Redemption
	var changed bool
	err := s.retryTx(ctx, op, func(tx pgx.Tx) error {
		var err error
		changed = false
		r, err = getRedemption(ctx, tx, `id = $1`, p.ID, true)
		if errors.Is(err, store.ErrNotFound) {
			// An archived redemption is settled: fn answers from its
			// status (unchanged, or ErrRedemptionStatus) and writes nothing.
			if r, err = getArchivedRedemption(ctx, tx, `id = $1`, p.ID); err != nil {
				return err
			}
			if changed, err = fn(tx, r); changed {
				return fmt.Errorf("postgres: %s: the redemption is archived: %w", op, store.ErrArchived)
			}
			return err
		}
		if err != nil {
			return err
		}
		if changed, err = fn(tx, r); err != nil || !changed {
			return err
		}
		r, err = getRedemption(ctx, tx, `id = $1`, p.ID, false)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrRedemptionStatus) {
		return nil, false, err
	}
	return r, changed, err
}

func setRedemptionStatus(ctx context.Context, tx pgx.Tx, id string, status coupon.RedemptionStatus, column string, at time.Time, reason string) error {
	tag, err := tx.Exec(ctx, `UPDATE redemptions SET status = $1, `+column+` = $2, updated_at = $2, reason = $3,
		review_reason = NULL, review_since = NULL, version = version + 1
		WHERE id = $4 AND status = 'reserved'`, string(status), at, reason, id)
	if err != nil {
		return wrap("set redemption status", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("postgres: redemption %s is no longer reserved: %w", id, store.ErrRedemptionStatus)
	}
	return nil
}

// RefundRedemption applies one refund computed from the redemption at p.Version.
func (s *Store) RefundRedemption(ctx context.Context, p store.RefundRedemption) (*coupon.Redemption, error) {
	op := "refund redemption " + p.ID
	var r *coupon.Redemption
	err := s.retryTx(ctx, op, func(tx pgx.Tx) error {
		cur, err := getRedemption(ctx, tx, `id = $1`, p.ID, true)
		if errors.Is(err, store.ErrNotFound) {
			if _, aerr := getArchivedRedemption(ctx, tx, `id = $1`, p.ID); aerr == nil {
				return fmt.Errorf("postgres: redemption %s: %w", p.ID, store.ErrArchived)
			}
		}
		if err != nil {
			return err
		}
		if cur.Version != p.Version {
			return fmt.Errorf("postgres: redemption %s is at version %d, not %d: %w", p.ID, cur.Version, p.Version, store.ErrStale)
		}
		refunds, err := json.Marshal(append(cur.Refunds, p.Refund))
		if err != nil {
			return fmt.Errorf("postgres: %s: %w", op, err)
		}
		tag, err := tx.Exec(ctx, `UPDATE redemptions SET status = $1, refunds = $2::jsonb, refunded_at = $3, updated_at = $3,
			version = version + 1 WHERE id = $4 AND version = $5`, string(p.Status), string(refunds), p.At, p.ID, p.Version)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: redemption %s: %w", p.ID, store.ErrStale)
		}
		for _, c := range p.Claims {
			to := coupon.ClaimRefunded
			if c.Line == coupon.LineReturned {
				to = coupon.ClaimAvailable
			}
			if err := execOne(ctx, tx, op, `UPDATE redemption_claims SET status = $1
				WHERE redemption_id = $2 AND claim_id = $3 AND status = 'confirmed'`, string(c.Line), p.ID, c.ClaimID); err != nil {
				return err
			}
			var archived bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM claims_archive WHERE id = $1)`, c.ClaimID).Scan(&archived); err != nil {
				return wrap(op, err)
			}
			if archived {
				return fmt.Errorf("postgres: claim %s: %w", c.ClaimID, store.ErrArchived)
			}
			if err := execOne(ctx, tx, op, `UPDATE claims SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'used'`,
				string(to), p.At, c.ClaimID); err != nil {
				return err
			}
		}
		if err := insertEvent(ctx, tx, op, p.Event, p.At); err != nil {
			return err
		}
		r, err = getRedemption(ctx, tx, `id = $1`, p.ID, false)
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
	err := s.primary.QueryRow(ctx, `SELECT count(*) FROM redemptions
		WHERE status = 'reserved' AND (review_reason IS NOT NULL OR expires_at < $1)`, now).Scan(&n)
	if err != nil {
		return 0, wrap("stuck reservations", err)
	}
	return n, nil
}

// DueRedemptions returns reserved redemptions whose next check is due.
func (s *Store) DueRedemptions(ctx context.Context, now time.Time, limit int) ([]*coupon.Redemption, error) {
	return s.listRedemptions(ctx, `status = 'reserved' AND review_reason IS NULL AND next_check_at <= $1
		ORDER BY next_check_at, id LIMIT $2`, now, clampLimit(limit))
}

// ListReviews returns the review list by id.
func (s *Store) ListReviews(ctx context.Context, f store.ReviewFilter) ([]*coupon.Redemption, error) {
	return s.listRedemptions(ctx, `review_reason IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`, f.AfterID, clampLimit(f.Limit))
}

func (s *Store) listRedemptions(ctx context.Context, where string, args ...any) ([]*coupon.Redemption, error) {
	var out []*coupon.Redemption
	err := inTx(ctx, s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, "list redemptions",
		func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT `+redemptionColumns+` FROM redemptions WHERE `+where, args...)
			if err != nil {
				return wrap("list redemptions", err)
			}
			out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Redemption, error) { return scanRedemption(row) })
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
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE redemptions SET check_attempts = $1, next_check_at = $2, updated_at = $3,
			review_reason = CASE WHEN $4 THEN NULL WHEN $5 <> '' THEN $5 ELSE review_reason END,
			review_since = CASE WHEN $4 THEN NULL WHEN $5 <> '' THEN coalesce(review_since, $3) ELSE review_since END,
			version = version + 1
			WHERE id = $6 AND status = $7`,
			p.Attempts, p.NextCheckAt, p.At, p.ClearReview, p.Review, p.ID, string(p.Status))
		if err != nil {
			return wrap(op, err)
		}
		if r, err = getRedemption(ctx, tx, `id = $1`, p.ID, false); err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: redemption %s is %s, not %s: %w", p.ID, r.Status, p.Status, store.ErrRedemptionStatus)
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
	tag, err := s.primary.Exec(ctx, `DELETE FROM redemptions WHERE id IN (
		SELECT id FROM redemptions WHERE user_id = '' AND updated_at < $1 LIMIT $2)`, before, clampLimit(limit))
	if err != nil {
		return 0, wrap("delete tombstones", err)
	}
	return int(tag.RowsAffected()), nil
}

// ExpiryBatches returns the batches whose expiry sweep is due.
func (s *Store) ExpiryBatches(ctx context.Context, now time.Time, limit int) ([]store.ExpiryBatch, error) {
	rows, err := s.primary.Query(ctx, `SELECT `+batchColumns+`, NULL::json,
			e.next_at, e.noticed_to, e.pass_from, e.pass_to, e.cursor_user, coalesce(e.cursor_seq, 0)
		FROM batches b LEFT JOIN claim_expiry e ON e.batch_id = b.id
		WHERE b.status <> 'draft' AND NOT coalesce(e.finished, false) AND (e.next_at IS NULL OR e.next_at <= $1)
		ORDER BY b.id LIMIT $2`, now, clampLimit(limit))
	if err != nil {
		return nil, wrap("expiry batches", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ExpiryBatch, error) {
		var (
			e                                   store.ExpiryBatch
			nextAt, noticedTo, passFrom, passTo pgtype.Timestamptz
			cursorUser                          pgtype.Text
		)
		b, err := scanBatch(extraRow{row, []any{&nextAt, &noticedTo, &passFrom, &passTo, &cursorUser, &e.State.CursorSeq}})
		if err != nil {
			return e, err
		}
		e.Batch = b
		e.State.NextAt, e.State.NoticedTo = fromNullTime(nextAt), fromNullTime(noticedTo)
		e.State.InPass = passTo.Valid
		e.State.PassFrom, e.State.PassTo = fromNullTime(passFrom), fromNullTime(passTo)
		e.State.CursorUser = cursorUser.String
		return e, nil
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
	err := s.retryTx(ctx, op, func(tx pgx.Tx) error {
		res = store.SweepResult{}
		rows, err := tx.Query(ctx, `SELECT `+claimColumns+` FROM claims
			WHERE batch_id = $1 AND (user_id, user_seq) > ($2, $3) ORDER BY user_id, user_seq LIMIT $4`,
			p.BatchID, p.AfterUser, p.AfterSeq, limit)
		if err != nil {
			return wrap(op, err)
		}
		claims, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Claim, error) { return scanClaim(row) })
		if err != nil {
			return wrap(op, err)
		}
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
				tag, err := tx.Exec(ctx, `UPDATE claims SET status = 'expired', updated_at = $1
					WHERE id = $2 AND status = 'available' AND valid_to <= $1`, p.Now, c.ID)
				if err != nil {
					return wrap(op, err)
				}
				if tag.RowsAffected() == 1 {
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
			_, err = tx.Exec(ctx, `INSERT INTO claim_expiry (batch_id, next_at, noticed_to, finished)
				VALUES ($1, $2, $3, $4)
				ON CONFLICT (batch_id) DO UPDATE SET next_at = excluded.next_at, noticed_to = excluded.noticed_to,
					finished = excluded.finished, pass_from = NULL, pass_to = NULL, cursor_user = NULL, cursor_seq = NULL`,
				p.BatchID, nullTime(p.NextAt), nullTime(p.NoticeTo), p.Finished)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO claim_expiry (batch_id, pass_from, pass_to, cursor_user, cursor_seq)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (batch_id) DO UPDATE SET pass_from = excluded.pass_from, pass_to = excluded.pass_to,
					cursor_user = excluded.cursor_user, cursor_seq = excluded.cursor_seq`,
				p.BatchID, nullTime(p.NoticeFrom), nullTime(p.NoticeTo), res.LastUser, res.LastSeq)
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
	_, err := s.primary.Exec(ctx, `INSERT INTO claim_expiry (batch_id, next_at) VALUES ($1, $2)
		ON CONFLICT (batch_id) DO UPDATE SET next_at = excluded.next_at`, batchID, nullTime(next))
	if err != nil {
		return wrap("schedule expiry of batch "+batchID, err)
	}
	return nil
}

// retryTx runs fn in a transaction of the primary, again (three times at
// most) when it fails on a deadlock or a serialisation failure, which wrote
// nothing.
func (s *Store) retryTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	return retry(func() error { return inTx(ctx, s.primary, pgx.TxOptions{}, op, fn) })
}

// insertRedemption inserts r unless its order has a redemption already.
func insertRedemption(ctx context.Context, tx pgx.Tx, r *coupon.Redemption) (bool, error) {
	cart, err := json.Marshal(r.Cart)
	if err != nil {
		return false, fmt.Errorf("postgres: redemption %s: %w", r.ID, err)
	}
	var refunds any // NULL when there are none
	if len(r.Refunds) > 0 {
		b, err := json.Marshal(r.Refunds)
		if err != nil {
			return false, fmt.Errorf("postgres: redemption %s: %w", r.ID, err)
		}
		refunds = string(b)
	}
	var reviewReason pgtype.Text
	var reviewSince pgtype.Timestamptz
	if r.Review != nil {
		reviewReason, reviewSince = pgtype.Text{String: r.Review.Reason, Valid: true}, nullTime(r.Review.Since)
	}
	if r.Version < 1 {
		r.Version = 1
	}
	tag, err := tx.Exec(ctx, insertRedemptionSQL,
		r.ID, r.OrderID, r.UserID, string(r.Status), r.Platform, r.Node, r.Discount, string(cart), refunds, r.Reason,
		r.OrderSystemURL, r.RequestHash, r.ReservedAt, r.ExpiresAt,
		nullTime(r.ConfirmedAt), nullTime(r.CancelledAt), nullTime(r.RefundedAt), r.UpdatedAt,
		r.CheckAttempts, r.NextCheckAt, reviewReason, reviewSince, r.Version)
	if err != nil {
		if pe := pgError(err); pe != nil && pe.Code == uniqueViolation && pe.ConstraintName == "redemptions_pkey" {
			return false, fmt.Errorf("postgres: redemption %s exists already: %w", r.ID, coupon.ErrConflict)
		}
		return false, wrap("insert redemption", err)
	}
	return tag.RowsAffected() == 1, nil
}

// getRedemption reads one redemption and its lines inside tx (locking its
// row when forUpdate), or ErrNotFound.
func getRedemption(ctx context.Context, tx pgx.Tx, where, arg string, forUpdate bool) (*coupon.Redemption, error) {
	q := `SELECT ` + redemptionColumns + ` FROM redemptions WHERE ` + where
	if forUpdate {
		q += ` FOR UPDATE`
	}
	r, err := scanRedemption(tx.QueryRow(ctx, q, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: redemption %s: %w", arg, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get redemption", err)
	}
	if err := readLines(ctx, tx, []*coupon.Redemption{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// readLines reads the claims of the redemptions, in their order.
func readLines(ctx context.Context, tx pgx.Tx, rs []*coupon.Redemption) error {
	if len(rs) == 0 {
		return nil
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return scanLines(ctx, tx, rs, `SELECT redemption_id, claim_id, batch_id, code, discount, status, lines FROM redemption_claims
		WHERE redemption_id = ANY($1::text[]) ORDER BY redemption_id, position`, ids)
}

// scanLines runs a query of lines (redemption_id, claim_id, batch_id, code,
// discount, status, lines) and gives each redemption of rs its own.
func scanLines(ctx context.Context, tx pgx.Tx, rs []*coupon.Redemption, q string, args ...any) error {
	byID := make(map[string]*coupon.Redemption, len(rs))
	for _, r := range rs {
		byID[r.ID] = r
		r.Claims = []coupon.RedemptionClaim{}
	}
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return wrap("read redemption claims", err)
	}
	var (
		redemptionID, status string
		lines                []byte
		c                    coupon.RedemptionClaim
	)
	_, err = pgx.ForEachRow(rows, []any{&redemptionID, &c.ClaimID, &c.BatchID, &c.Code, &c.Discount, &status, &lines}, func() error {
		line := c
		line.Status, line.Lines = coupon.LineStatus(status), nil
		if err := json.Unmarshal(lines, &line.Lines); err != nil {
			return fmt.Errorf("postgres: lines of redemption %s: %w", redemptionID, err)
		}
		if r := byID[redemptionID]; r != nil {
			r.Claims = append(r.Claims, line)
		}
		return nil
	})
	if err != nil {
		return wrap("read redemption claims", err)
	}
	return nil
}

func scanRedemption(row pgx.Row) (*coupon.Redemption, error) {
	var (
		r                                           coupon.Redemption
		status                                      string
		cart, refunds                               []byte
		reviewReason                                pgtype.Text
		confirmedAt, cancelledAt, refundedAt, since pgtype.Timestamptz
	)
	err := row.Scan(&r.ID, &r.OrderID, &r.UserID, &status, &r.Platform, &r.Node, &r.Discount, &cart, &refunds, &r.Reason,
		&r.OrderSystemURL, &r.RequestHash, &r.ReservedAt, &r.ExpiresAt, &confirmedAt, &cancelledAt, &refundedAt, &r.UpdatedAt,
		&r.CheckAttempts, &r.NextCheckAt, &reviewReason, &since, &r.Version)
	if err != nil {
		return nil, err
	}
	r.Status = coupon.RedemptionStatus(status)
	if err := json.Unmarshal(cart, &r.Cart); err != nil {
		return nil, fmt.Errorf("postgres: cart of redemption %s: %w", r.ID, err)
	}
	if len(refunds) > 0 {
		if err := json.Unmarshal(refunds, &r.Refunds); err != nil {
			return nil, fmt.Errorf("postgres: refunds of redemption %s: %w", r.ID, err)
		}
	}
	r.ReservedAt, r.ExpiresAt, r.UpdatedAt, r.NextCheckAt = utc(r.ReservedAt), utc(r.ExpiresAt), utc(r.UpdatedAt), utc(r.NextCheckAt)
	r.ConfirmedAt, r.CancelledAt, r.RefundedAt = fromNullTime(confirmedAt), fromNullTime(cancelledAt), fromNullTime(refundedAt)
	if reviewReason.Valid {
		r.Review = &coupon.Review{Reason: reviewReason.String, Since: fromNullTime(since), Attempts: r.CheckAttempts}
	}
	return &r, nil
}

// claimUnavailable explains why a claim could not be locked.
func claimUnavailable(ctx context.Context, tx pgx.Tx, claimID, userID string, at time.Time) error {
	var owner, status string
	var validFrom time.Time
	err := tx.QueryRow(ctx, `SELECT user_id, status, valid_from FROM claims WHERE id = $1`, claimID).Scan(&owner, &status, &validFrom)
	e := &store.ClaimUnavailableError{ClaimID: claimID, Status: coupon.ClaimStatus(status)}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		e.Reason = store.UnavailableNotFound
	case err != nil:
		return wrap("reserve: read claim", err)
	case owner != userID:
		e.Reason, e.Status = store.UnavailableNotYours, ""
	case status != string(coupon.ClaimAvailable):
		e.Reason = store.UnavailableStatus
	case at.Before(validFrom):
		e.Reason = store.UnavailableNotYetValid
	default:
		e.Reason = store.UnavailableExpired
	}
	return e
}

func insertEvent(ctx context.Context, tx pgx.Tx, op string, e store.Event, at time.Time) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = at
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES ($1, $2, $3::json, $4)`,
		e.Type, e.AggregateID, payloadArg(e.Payload), e.CreatedAt); err != nil {
		return wrap(op+": outbox", err)
	}
	return nil
}

// execOne runs a statement that must change exactly one row.
func execOne(ctx context.Context, tx pgx.Tx, op, query string, args ...any) error {
	tag, err := tx.Exec(ctx, query, args...)
	if err != nil {
		return wrap(op, err)
	}
	if n := tag.RowsAffected(); n != 1 {
		return fmt.Errorf("postgres: %s: %d rows changed, want 1", op, n)
	}
	return nil
}

// extraRow scans a row's first columns into the caller's destinations and
// the rest into extra.
type extraRow struct {
	row   pgx.Row
	extra []any
}

func (e extraRow) Scan(dest ...any) error { return e.row.Scan(append(dest, e.extra...)...) }
