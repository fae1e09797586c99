package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/store"
)

// CheckResult counts what one pass of the redemption reconciler did.
type CheckResult struct {
	Checked    int // late reservations looked at
	Confirmed  int // the order was paid
	Cancelled  int // the order was cancelled or never placed
	Pending    int // the order is still open: asked again later
	Failed     int // no answer: asked again later, with backoff
	Reviewed   int // sent to the review list
	Tombstones int // old cancellations-before-reservation forgotten
}

// CheckRedemptions is one pass of the redemption reconciler. A reservation
// whose confirmation has not come within its timeout is not left to a
// message that may never come: the order system is asked for the order's
// state (its client retries, backs off and breaks the circuit of an
// endpoint that keeps failing), then
//
//	paid                confirm; refunded: confirm, then refund
//	cancelled, unknown  cancel (the order was never placed, or is void)
//	pending             ask again after PendingRecheck; review after PendingReview
//	no answer           ask again with backoff; review after CheckAttempts passes
//
// A reservation on the review list is left to an operator. The pass also
// forgets cancellations-before-reservation older than TombstoneTTL.
func (s *Service) CheckRedemptions(ctx context.Context) (CheckResult, error) {
	var res CheckResult
	cfg := s.redemption
	now := s.clock()
	due, err := s.store.DueRedemptions(ctx, now, 100)
	if err != nil {
		return res, unavailable("due redemptions", err)
	}
	var errs []error
	for _, r := range due {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Checked++
		if err := s.checkOne(ctx, r, &res); err != nil {
			errs = append(errs, fmt.Errorf("redemption %s: %w", r.ID, err))
		}
	}
	n, err := s.store.DeleteTombstones(ctx, now.Add(-cfg.TombstoneTTL), 1000)
	res.Tombstones = n
	errs = append(errs, err)
	return res, errors.Join(errs...)
}

func (s *Service) checkOne(ctx context.Context, r *coupon.Redemption, res *CheckResult) error {
	cfg := s.redemption
	now := s.clock()
	ref := RedemptionRef{ID: r.ID}
	if cfg.OrderSystem == nil || r.OrderSystemURL == "" {
		res.Reviewed++
		return s.note(ctx, r, r.CheckAttempts, now, "its confirmation is late and no order system is configured to ask")
	}
	o, err := cfg.OrderSystem.OrderState(ctx, r.OrderSystemURL, r.OrderID)
	if err != nil {
		attempts := r.CheckAttempts + 1
		if attempts >= cfg.CheckAttempts {
			res.Reviewed++
			return s.note(ctx, r, attempts, now, fmt.Sprintf("the order system gave no answer in %d attempts: %v", attempts, err))
		}
		res.Failed++
		s.log.WarnContext(ctx, "order system gave no answer; will ask again", "redemption", r.ID, "order", r.OrderID, "attempt", attempts, "err", err)
		return s.note(ctx, r, attempts, now.Add(checkBackoff(attempts, cfg.CheckBackoff, cfg.CheckBackoffMax)), "")
	}
	switch o.State {
	case ordersys.StatePaid:
		_, err = s.Confirm(ctx, ref, ByReconciler)
		res.Confirmed++
	case ordersys.StateRefunded:
		_, err = s.Refund(ctx, RefundRequest{Ref: ref, By: ByReconciler})
		res.Confirmed++
	case ordersys.StateCancelled, ordersys.StateNotFound:
		_, err = s.Cancel(ctx, ref, ByReconciler)
		res.Cancelled++
	case ordersys.StatePending:
		if now.Sub(r.ReservedAt) >= cfg.PendingReview {
			res.Reviewed++
			return s.note(ctx, r, 0, now, fmt.Sprintf("the order is still pending %s after its reservation", now.Sub(r.ReservedAt).Round(time.Minute)))
		}
		res.Pending++
		return s.note(ctx, r, 0, now.Add(cfg.PendingRecheck), "")
	}
	if coupon.ErrorCode(err) == coupon.CodeConflict {
		return nil // it changed meanwhile (a message came): that state stands
	}
	return err
}

// note records a check of a reserved redemption; a review reason puts it
// on the review list. A redemption that changed meanwhile is left as it is.
func (s *Service) note(ctx context.Context, r *coupon.Redemption, attempts int, next time.Time, review string) error {
	_, err := s.store.NoteRedemptionCheck(ctx, store.RedemptionCheck{ID: r.ID, Status: coupon.RedemptionReserved,
		Attempts: attempts, NextCheckAt: next, Review: review, At: s.clock()})
	if errors.Is(err, store.ErrRedemptionStatus) {
		return nil
	}
	if err == nil && review != "" {
		s.log.WarnContext(ctx, "redemption needs review", "redemption", r.ID, "order", r.OrderID, "reason", review)
	}
	return err
}

func checkBackoff(attempt int, first, limit time.Duration) time.Duration {
	d := first
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Kinds of the order system's messages.
const (
	OrderPaid      = "paid"
	OrderCancelled = "cancelled"
	OrderRefunded  = "refunded"
)

// ApplyOrderMessage applies one message of the order system. Every effect
// is idempotent, so a message delivered twice, or out of order, leaves one
// state: a paid order's reservation is confirmed (an order without one is
// none of coupond's business); a cancelled order's is released, or, when
// none exists yet, the cancellation is recorded so that a late reservation
// locks nothing; a refund applies once per refund id. A message that
// contradicts the state (paid after the coupons were released, cancelled
// after they were used) puts the redemption on the review list. The error
// is the service's: not_found, conflict and invalid mean the message can do
// nothing more; unavailable means it should be delivered again.
func (s *Service) ApplyOrderMessage(ctx context.Context, kind string, m ordersys.Message) error {
	ref := RedemptionRef{OrderID: m.OrderID}
	var err error
	switch kind {
	case OrderPaid:
		_, err = s.Confirm(ctx, ref, ByMessage)
	case OrderCancelled:
		_, err = s.Cancel(ctx, ref, ByMessage)
	case OrderRefunded:
		_, err = s.Refund(ctx, RefundRequest{Ref: ref, RefundID: m.RefundID, Items: m.Items, By: ByMessage})
	default:
		return coupon.Errorf(coupon.CodeInvalid, "unknown kind of order message %q", kind)
	}
	return err
}
