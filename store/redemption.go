package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Errors of redemption.
var (
	// ErrOrderExists: the order has a redemption already. Reserve and
	// InsertTombstone return it with that redemption.
	ErrOrderExists = errors.New("store: the order has a redemption already")
	// ErrClaimUnavailable: a claim to reserve is not available to the order
	// (see *ClaimUnavailableError).
	ErrClaimUnavailable = errors.New("store: claim not available")
	// ErrRedemptionStatus: the redemption is not in a status the change
	// starts from.
	ErrRedemptionStatus = errors.New("store: redemption status does not allow this change")
	// ErrStale: the redemption changed since the caller read it.
	ErrStale = errors.New("store: redemption changed since it was read")
)

// ClaimUnavailableError names the claim that Reserve could not lock and its
// status then ("" when there is no such claim of the user).
type ClaimUnavailableError struct {
	ClaimID string
	Status  coupon.ClaimStatus
	Reason  string // not_found, not_yours, status, not_yet_valid, expired, held
}

func (e *ClaimUnavailableError) Error() string {
	return fmt.Sprintf("store: claim %s cannot be reserved (%s, status %q)", e.ClaimID, e.Reason, e.Status)
}

func (e *ClaimUnavailableError) Unwrap() error { return ErrClaimUnavailable }

// Reasons of ClaimUnavailableError.
const (
	UnavailableNotFound    = "not_found"
	UnavailableNotYours    = "not_yours"
	UnavailableStatus      = "status"
	UnavailableNotYetValid = "not_yet_valid"
	UnavailableExpired     = "expired"
	UnavailableHeld        = "held" // another redemption holds it (its line is reserved or confirmed)
)

// RedemptionStore is the part of the store that redemption uses: orders'
// reservations of claims, their confirmation, cancellation and refunds, the
// reconciler's bookkeeping and review list, and the expiry of claims. It is
// embedded in Store.
//
// Every change of a claim's status is a conditional update (… WHERE status =
// 'available' …), so that of concurrent changes exactly one wins, and the
// store holds a claim in at most one reserved or confirmed redemption line
// by a unique index as well. Every change that is an event writes its outbox
// row in the same transaction. Times are stored at microsecond precision.
type RedemptionStore interface {
	// Reserve writes a new redemption with its claims, atomically: each claim
	// goes from available to locked (to used when r.Status is confirmed: a
	// direct redemption), only if it is the user's and valid at p.At; then
	// the redemption, its lines and p.Event. If the order has a redemption
	// already, nothing is written and that one is returned with
	// ErrOrderExists; if a claim cannot be taken, nothing is written and the
	// error is a *ClaimUnavailableError (the first claim, in the given
	// order, that failed).
	Reserve(ctx context.Context, p ReserveRedemption) (*coupon.Redemption, error)
	// InsertTombstone records that an order was cancelled before any
	// reservation of it arrived: r, cancelled, without claims, and no event.
	// If the order has a redemption already, it is returned with
	// ErrOrderExists.
	InsertTombstone(ctx context.Context, r *coupon.Redemption) (*coupon.Redemption, error)
	// GetRedemption returns a redemption with its claims, or ErrNotFound.
	GetRedemption(ctx context.Context, id string) (*coupon.Redemption, error)
	// GetRedemptionByOrder returns the redemption of an order, or ErrNotFound.
	GetRedemptionByOrder(ctx context.Context, orderID string) (*coupon.Redemption, error)

	// ConfirmRedemption moves a reserved redemption to confirmed, its lines
	// to confirmed and its claims from locked to used, clears its review and
	// writes p.Event, atomically; changed is true. A redemption confirmed
	// already (or refunded since) is returned unchanged, changed false. Any
	// other status: ErrRedemptionStatus with the redemption.
	ConfirmRedemption(ctx context.Context, p RedemptionChange) (r *coupon.Redemption, changed bool, err error)
	// CancelRedemption moves a reserved redemption to cancelled, its lines
	// to released and its claims from locked back to available — or to
	// expired, with p.Expired's event, when their validity ended by p.At —
	// clears its review and writes p.Event, atomically; changed is true. A
	// cancelled redemption is returned unchanged, changed false. Any other
	// status: ErrRedemptionStatus with the redemption.
	CancelRedemption(ctx context.Context, p RedemptionChange) (r *coupon.Redemption, changed bool, err error)
	// RefundRedemption applies one refund to a redemption read at
	// p.Version: its status becomes p.Status, p.Refund is appended, each of
	// p.Claims goes from used to available (line returned) or refunded
	// (line refunded), and p.Event is written, atomically. ErrStale if the
	// redemption is no longer at p.Version; nothing is written then.
	RefundRedemption(ctx context.Context, p RefundRedemption) (*coupon.Redemption, error)

	// DueRedemptions returns up to limit reserved redemptions whose next
	// check is due at now and that no operator is to review, soonest first.
	DueRedemptions(ctx context.Context, now time.Time, limit int) ([]*coupon.Redemption, error)
	// NoteRedemptionCheck records the reconciler's bookkeeping of a
	// redemption, or puts it on or takes it off the review list, if it is
	// still in p.Status: ErrRedemptionStatus otherwise.
	NoteRedemptionCheck(ctx context.Context, p RedemptionCheck) (*coupon.Redemption, error)
	// ListReviews returns the redemptions on the review list, by id, after
	// the cursor.
	ListReviews(ctx context.Context, f ReviewFilter) ([]*coupon.Redemption, error)
	// StuckReservations counts the reservations a person must look at:
	// still reserved past their timeout at now (the reconciler could not
	// settle them), or on the review list.
	StuckReservations(ctx context.Context, now time.Time) (int64, error)
	// DeleteTombstones deletes up to limit tombstones last updated before
	// before and returns how many.
	DeleteTombstones(ctx context.Context, before time.Time, limit int) (int, error)

	// ExpiryBatches returns up to limit batches (not drafts) whose expiry
	// sweep is not finished and whose next pass is due at now, with their
	// sweep state.
	ExpiryBatches(ctx context.Context, now time.Time, limit int) ([]ExpiryBatch, error)
	// SweepClaims sweeps one chunk of a batch's claims, in one short
	// transaction: up to p.Limit claims after the cursor in the order of
	// (user_id, user_seq), the batch's own index, so that it never scans
	// another batch's claims. Of those, available claims past their validity
	// at p.Now become expired, each with p.Expired's event; available claims
	// whose validity ends in (max(p.NoticeFrom, p.Now), p.NoticeTo] get
	// p.Expiring's event. The state is saved with the chunk: the cursor and
	// the pass's window while the pass goes on; p.NextAt, p.NoticeTo as the
	// new noticed-to and p.Finished once a chunk reaches the end.
	SweepClaims(ctx context.Context, p SweepClaims) (SweepResult, error)
	// ScheduleExpiry sets when a batch's next expiry pass is due, keeping
	// the rest of its sweep state.
	ScheduleExpiry(ctx context.Context, batchID string, next time.Time) error
}

// ReserveRedemption is one reservation (or direct redemption) for Reserve.
type ReserveRedemption struct {
	// Redemption is written as given: its ID, order, user, status (reserved,
	// or confirmed for a direct redemption), claims with their lines, and
	// times.
	Redemption *coupon.Redemption
	Event      Event
	At         time.Time // the claims must be valid at At
}

// RedemptionChange is a confirmation or cancellation.
type RedemptionChange struct {
	ID     string
	At     time.Time
	Reason string // api, message, reconciler, review, …
	Event  Event
	// Expired builds the claim.expired event of a claim a cancellation
	// finds past its validity; required by CancelRedemption.
	Expired func(c *coupon.Claim) Event
}

// RefundRedemption is one refund, computed by the caller from the
// redemption it read at Version.
type RefundRedemption struct {
	ID      string
	Version int64
	Status  coupon.RedemptionStatus // partially_refunded or refunded
	Refund  coupon.Refund
	Claims  []ClaimRefund
	At      time.Time
	Event   Event
}

// ClaimRefund is what a refund does to one claim of the redemption.
type ClaimRefund struct {
	ClaimID string
	Line    coupon.LineStatus // returned (claim available again) or refunded
}

// RedemptionCheck is the reconciler's bookkeeping of one redemption.
type RedemptionCheck struct {
	ID          string
	Status      coupon.RedemptionStatus // the status it must still be in
	Attempts    int
	NextCheckAt time.Time
	// Review, when not empty, puts the redemption on the review list with
	// this reason; an earlier review keeps its time. ClearReview takes it off.
	Review      string
	ClearReview bool
	At          time.Time
}

// ReviewFilter selects the review list.
type ReviewFilter struct {
	AfterID string
	Limit   int // ≤ 0: 100; at most 1000
}

// ExpiryBatch is a batch whose claims the expiry sweeper looks at.
type ExpiryBatch struct {
	Batch *coupon.Batch
	State ExpiryState
}

// ExpiryState is where the sweep of a batch is.
type ExpiryState struct {
	NextAt    time.Time // the next pass is due; zero: now
	NoticedTo time.Time // claim.expiring is written for claims ending up to here
	// A pass in progress (InPass): its notice window and the last claim it swept.
	InPass     bool
	PassFrom   time.Time
	PassTo     time.Time
	CursorUser string
	CursorSeq  int
}

// SweepClaims is one chunk of an expiry pass.
type SweepClaims struct {
	BatchID    string
	Now        time.Time
	NoticeFrom time.Time
	NoticeTo   time.Time
	AfterUser  string
	AfterSeq   int
	Limit      int // ≤ 0: 500; at most 5000
	Expired    func(c *coupon.Claim) Event
	Expiring   func(c *coupon.Claim) Event
	// Saved when this chunk ends the pass.
	NextAt   time.Time
	Finished bool
}

// SweepResult is what one chunk did.
type SweepResult struct {
	Scanned  int
	Expired  int
	Noticed  int
	LastUser string
	LastSeq  int
	Done     bool // the pass reached the batch's last claim
}
