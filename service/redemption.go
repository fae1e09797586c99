package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/rules"
	"github.com/coupond/coupond/store"
)

// RedemptionConfig configures redemption. The zero value works, without an
// order system to ask.
type RedemptionConfig struct {
	// OrderSystem asks the order system for an order's state; nil: late
	// reservations go to the review list at once.
	OrderSystem OrderSystem
	// OrderSystemURL is the order-state endpoint of batches that name none
	// (see ordersys.URL).
	OrderSystemURL string
	// ReservationTimeout is how long a reservation waits for its
	// confirmation before the reconciler asks the order system, for batches
	// that set none; default 15m.
	ReservationTimeout time.Duration
	// MaxCouponsPerOrder bounds the coupons of one order; default 5.
	MaxCouponsPerOrder int
	// CheckAttempts is how many passes of the reconciler may fail to get
	// an answer about an order before it goes to the review list; default 5.
	CheckAttempts int
	// CheckBackoff is the wait after the first failed check, doubling up to
	// CheckBackoffMax; defaults 30s and 10m.
	CheckBackoff    time.Duration
	CheckBackoffMax time.Duration
	// PendingRecheck is when to ask again about an order the order system
	// says is still pending; default 5m. PendingReview sends a reservation
	// that long old and still pending to the review list; default 24h.
	PendingRecheck time.Duration
	PendingReview  time.Duration
	// TombstoneTTL is how long a cancellation that came before its
	// reservation is remembered; default 7 days.
	TombstoneTTL time.Duration
	// ExpiringLead is how long before a claim's validity ends that
	// claim.expiring is written; default 24h.
	ExpiringLead time.Duration
	// ExpiryInterval is the time between expiry passes over a batch whose
	// coupons are valid for some days from their claim; default 10m.
	ExpiryInterval time.Duration
	// ExpiryGrace is how long after a batch's validity ends its expiry pass
	// waits, so that claims committing at that moment are seen; default 1m.
	ExpiryGrace time.Duration
}

// OrderSystem is what the reconciler asks; *ordersys.Client is one.
type OrderSystem interface {
	OrderState(ctx context.Context, endpoint, orderID string) (ordersys.Order, error)
}

func (c RedemptionConfig) withDefaults() RedemptionConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReservationTimeout, 15*time.Minute)
	def(&c.CheckBackoff, 30*time.Second)
	def(&c.CheckBackoffMax, 10*time.Minute)
	def(&c.PendingRecheck, 5*time.Minute)
	def(&c.PendingReview, 24*time.Hour)
	def(&c.TombstoneTTL, 7*24*time.Hour)
	def(&c.ExpiringLead, 24*time.Hour)
	def(&c.ExpiryInterval, 10*time.Minute)
	def(&c.ExpiryGrace, time.Minute)
	if c.MaxCouponsPerOrder <= 0 {
		c.MaxCouponsPerOrder = rules.DefaultMaxCoupons
	}
	if c.CheckAttempts <= 0 {
		c.CheckAttempts = 5
	}
	return c
}

// What caused a confirmation or cancellation; recorded as the redemption's reason.
const (
	ByAPI        = "api"
	ByMessage    = "message"
	ByReconciler = "reconciler"
	ByReview     = "review"
	ByDirect     = "direct"
)

// QualifyRequest asks which of a user's coupons an order can use.
type QualifyRequest struct {
	UserID   string
	Platform string
	Node     string // the checkout step; default "order"
	Cart     coupon.Cart
}

// Qualification is every coupon of the user that an order could consider,
// and the best combination.
type Qualification struct {
	Claims []ClaimQualification
	Best   *rules.Result // nil when no coupon applies
}

// ClaimQualification is one coupon alone on the order.
type ClaimQualification struct {
	Claim    *coupon.Claim
	Usable   bool
	Discount int64
	Reason   *rules.Reason
}

// Qualify lists the user's available and locked coupons, says of each
// whether the order can use it, what it would take off and why not, and
// finds the combination that takes off the most.
func (s *Service) Qualify(ctx context.Context, req QualifyRequest) (*Qualification, error) {
	var v coupon.Validation
	coupon.ValidIdentifier(&v, "user_id", req.UserID, true)
	validOrder(&v, req.Platform, req.Node, &req.Cart)
	if err := v.Err(); err != nil {
		return nil, err
	}
	now := s.clock()
	var claims []*coupon.Claim
	for _, st := range []coupon.ClaimStatus{coupon.ClaimAvailable, coupon.ClaimLocked} {
		cs, err := s.store.ListUserClaims(ctx, store.UserClaimFilter{UserID: req.UserID, Status: st, Now: now, Limit: 1000})
		if err != nil {
			return nil, unavailable("list claims", err)
		}
		claims = append(claims, cs...)
	}
	coupons, err := s.couponsOf(ctx, claims)
	if err != nil {
		return nil, err
	}
	order := s.order(req.Platform, req.Node, req.Cart, now)
	q := &Qualification{Claims: make([]ClaimQualification, len(claims))}
	for i, e := range rules.Evaluate(order, coupons) {
		claims[i].Status = claims[i].EffectiveStatus(now)
		q.Claims[i] = ClaimQualification{Claim: claims[i], Usable: e.Usable, Discount: e.Discount, Reason: e.Reason}
	}
	q.Best = rules.Best(order, coupons)
	return q, nil
}

// ReserveRequest reserves coupons for an order.
type ReserveRequest struct {
	OrderID  string
	UserID   string
	Platform string
	Node     string // default "order"
	Cart     coupon.Cart
	ClaimIDs []string // the coupons, by claim id …
	Codes    []string // … and by code
}

// Reserve locks the chosen coupons to an order and returns the redemption
// with the discount split over the cart. It is idempotent by order id: the
// same request again returns the same redemption (replayed), a different
// one for the same order is a conflict, and an order cancelled before its
// reservation arrived stays cancelled. A coupon that cannot be used — locked
// by another order, used, out of scope, forbidden by the stacking rules — is
// refused with not_usable, naming it.
func (s *Service) Reserve(ctx context.Context, req ReserveRequest) (*coupon.Redemption, bool, error) {
	return s.redeem(ctx, req, false)
}

// DirectRequest redeems one code at a point of sale.
type DirectRequest struct {
	OrderID  string
	Code     string
	UserID   string // optional; when given, the code must be this user's
	Platform string
	Node     string
	Cart     coupon.Cart
}

// RedeemCode reserves and confirms one code in one step, for a code typed
// at a point of sale. An internal code must match its check character (a
// typo is refused before any lookup); a partner's code of an external batch
// is taken as given. Idempotent by order id like Reserve.
func (s *Service) RedeemCode(ctx context.Context, req DirectRequest) (*coupon.Redemption, bool, error) {
	var v coupon.Validation
	if err := coupon.ValidOrderID("order_id", req.OrderID); err != nil {
		return nil, false, err
	}
	if req.UserID != "" {
		coupon.ValidIdentifier(&v, "user_id", req.UserID, true)
	}
	if req.Code == "" || len(req.Code) > 2*coupon.MaxCodeChars {
		v.Add("code", "must be 1 to 64 characters")
	}
	if err := v.Err(); err != nil {
		return nil, false, err
	}
	c, err := s.claimOfCode(ctx, req.Code, "code")
	if err != nil {
		return nil, false, err
	}
	user := req.UserID
	if user == "" {
		user = c.UserID
	}
	return s.redeem(ctx, ReserveRequest{OrderID: req.OrderID, UserID: user, Platform: req.Platform, Node: req.Node,
		Cart: req.Cart, Codes: []string{req.Code}}, true)
}

func (s *Service) redeem(ctx context.Context, req ReserveRequest, direct bool) (*coupon.Redemption, bool, error) {
	var v coupon.Validation
	if err := coupon.ValidOrderID("order_id", req.OrderID); err != nil {
		return nil, false, err
	}
	coupon.ValidIdentifier(&v, "user_id", req.UserID, true)
	validOrder(&v, req.Platform, req.Node, &req.Cart)
	if n := len(req.ClaimIDs) + len(req.Codes); n == 0 {
		v.Add("claim_ids", "name at least one coupon, by claim id or by code")
	} else if n > coupon.MaxRedemptionCoupons {
		v.Addf("claim_ids", "name at most %d coupons", coupon.MaxRedemptionCoupons)
	}
	for i, id := range req.ClaimIDs {
		if !coupon.ValidID(id) {
			v.Add(fmt.Sprintf("claim_ids[%d]", i), "is not a claim id")
		}
	}
	if err := v.Err(); err != nil {
		return nil, false, err
	}
	if req.Node == "" {
		req.Node = rules.DefaultNode
	}
	hash := requestHash(req, direct)
	if r, err := s.store.GetRedemptionByOrder(ctx, req.OrderID); err == nil {
		return replay(r, hash)
	} else if !errors.Is(err, coupon.ErrNotFound) {
		return nil, false, unavailable("get redemption", err)
	}

	// The coupons, each named by the field it came from.
	claims := make([]*coupon.Claim, 0, len(req.ClaimIDs)+len(req.Codes))
	fields := make([]string, 0, cap(claims))
	for i, id := range req.ClaimIDs {
		c, err := s.store.GetClaim(ctx, id)
		if errors.Is(err, coupon.ErrNotFound) {
			return nil, false, notUsable(fmt.Sprintf("claim_ids[%d]", i), "not_found", "no such coupon")
		}
		if err != nil {
			return nil, false, unavailable("get claim", err)
		}
		claims, fields = append(claims, c), append(fields, fmt.Sprintf("claim_ids[%d]", i))
	}
	for i, code := range req.Codes {
		c, err := s.claimOfCode(ctx, code, fmt.Sprintf("codes[%d]", i))
		if err != nil {
			return nil, false, err
		}
		claims, fields = append(claims, c), append(fields, fmt.Sprintf("codes[%d]", i))
	}
	for i, c := range claims {
		if c.UserID != req.UserID {
			return nil, false, notUsable(fields[i], "not_yours", "the coupon is not the user's")
		}
	}
	coupons, err := s.couponsOf(ctx, claims)
	if err != nil {
		return nil, false, err
	}
	now := s.clock()
	res, err := rules.Apply(s.order(req.Platform, req.Node, req.Cart, now), coupons)
	var refusal *rules.Refusal
	if errors.As(err, &refusal) {
		i := slices.IndexFunc(claims, func(c *coupon.Claim) bool { return c.ID == refusal.ClaimID })
		return nil, false, notUsable(fields[max(i, 0)], refusal.Reason.Code, refusal.Reason.Message)
	}
	if err != nil {
		return nil, false, err
	}

	r, err := s.newRedemption(ctx, req, res, claims, hash, direct, now)
	if err != nil {
		return nil, false, err
	}
	typ := bus.TypeRedemptionReserved
	if direct {
		typ = bus.TypeRedemptionConfirmed
	}
	got, err := s.store.Reserve(ctx, store.ReserveRedemption{Redemption: r, Event: redemptionEvent(typ, r, nil, now), At: now})
	var ue *store.ClaimUnavailableError
	switch {
	case err == nil:
		s.onCommit()
		s.claimsChanged(ctx, got.UserID)
		return got, false, nil
	case errors.Is(err, store.ErrOrderExists):
		return replay(got, hash)
	case errors.As(err, &ue):
		i := slices.IndexFunc(claims, func(c *coupon.Claim) bool { return c.ID == ue.ClaimID })
		field := "claim_ids"
		if i >= 0 {
			field = fields[i]
		}
		return nil, false, notUsable(field, ue.Reason, unavailableMessage(ue))
	}
	return nil, false, unavailable("reserve", err)
}

// newRedemption builds the record of a computed combination.
func (s *Service) newRedemption(ctx context.Context, req ReserveRequest, res *rules.Result, claims []*coupon.Claim,
	hash string, direct bool, now time.Time) (*coupon.Redemption, error) {
	cfg := s.redemption
	timeout := cfg.ReservationTimeout
	endpoint := ""
	for _, c := range claims {
		b, err := s.batches.get(ctx, c.BatchID)
		if err != nil {
			return nil, unavailable("get batch", err)
		}
		o := b.Redemption
		if o.ReservationTimeout > 0 {
			timeout = min(timeout, time.Duration(o.ReservationTimeout)*time.Second)
		}
		switch {
		case o.OrderSystemURL == "":
		case endpoint == "":
			endpoint = o.OrderSystemURL
		case endpoint != o.OrderSystemURL:
			return nil, coupon.Errorf(coupon.CodeInvalid, "the coupons' batches name different order systems (%s and %s)", endpoint, o.OrderSystemURL)
		}
	}
	if endpoint == "" {
		endpoint = cfg.OrderSystemURL
	}
	r := &coupon.Redemption{
		ID: coupon.NewID(now), OrderID: req.OrderID, UserID: req.UserID, Status: coupon.RedemptionReserved,
		Platform: req.Platform, Node: req.Node, Discount: res.Discount, Cart: req.Cart,
		ReservedAt: now, ExpiresAt: now.Add(timeout), UpdatedAt: now, NextCheckAt: now.Add(timeout),
		OrderSystemURL: endpoint, RequestHash: hash,
	}
	line := coupon.LineReserved
	if direct {
		r.Status, r.ConfirmedAt, r.Reason, line = coupon.RedemptionConfirmed, now, ByDirect, coupon.LineConfirmed
	}
	for _, a := range res.Coupons {
		r.Claims = append(r.Claims, coupon.RedemptionClaim{ClaimID: a.ClaimID, BatchID: a.BatchID, Code: a.Code,
			Discount: a.Discount, Status: line, Lines: a.Lines})
	}
	return r, nil
}

// RedemptionRef names a redemption by its id or by its order's id.
type RedemptionRef struct {
	ID      string
	OrderID string
}

// GetRedemption returns a redemption by id or by order.
func (s *Service) GetRedemption(ctx context.Context, ref RedemptionRef) (*coupon.Redemption, error) {
	var r *coupon.Redemption
	var err error
	switch {
	case ref.ID != "":
		if !coupon.ValidID(ref.ID) {
			return nil, fmt.Errorf("redemption %q: %w", ref.ID, coupon.ErrNotFound)
		}
		r, err = s.store.GetRedemption(ctx, ref.ID)
	default:
		if err := coupon.ValidOrderID("order_id", ref.OrderID); err != nil {
			return nil, err
		}
		r, err = s.store.GetRedemptionByOrder(ctx, ref.OrderID)
	}
	if err != nil {
		return nil, unavailable("get redemption", notFound("redemption", ref.ID+ref.OrderID, err))
	}
	switch ok, err := s.seesRedemption(ctx, r); { // scope.go
	case err != nil:
		return nil, err
	case !ok:
		return nil, hidden("redemption", ref.ID+ref.OrderID)
	}
	return r, nil
}

// Confirm marks a reserved redemption's coupons used. Confirming a
// confirmed (or since refunded) redemption returns it unchanged. A
// cancelled redemption stays cancelled: conflict; when the order system
// itself says the order was paid (a message, the reconciler), the
// redemption also goes to the review list, since the order got a discount
// whose coupons were released.
func (s *Service) Confirm(ctx context.Context, ref RedemptionRef, by string) (*coupon.Redemption, error) {
	r, err := s.GetRedemption(ctx, ref)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	after := withStatus(r, coupon.RedemptionConfirmed, coupon.LineReserved, coupon.LineConfirmed, by)
	got, changed, err := s.store.ConfirmRedemption(ctx, store.RedemptionChange{ID: r.ID, At: now, Reason: by,
		Event: redemptionEvent(bus.TypeRedemptionConfirmed, after, nil, now)})
	switch {
	case err == nil:
		if changed {
			s.onCommit()
			s.claimsChanged(ctx, got.UserID)
		}
		return got, nil
	case errors.Is(err, store.ErrRedemptionStatus):
		if by == ByMessage || by == ByReconciler {
			s.review(ctx, got, "the order system says the order was paid, but its reservation was cancelled")
		}
		return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s is %s and cannot be confirmed", got.ID, got.Status)
	}
	return nil, unavailable("confirm", notFound("redemption", r.ID, err))
}

// Cancel releases a reserved redemption's coupons. Cancelling a cancelled
// redemption returns it unchanged; a confirmed one cannot be cancelled
// (refund it): conflict. Cancelling by order id an order that has no
// redemption yet records the cancellation, so that a reservation arriving
// after it is refused and locks nothing.
func (s *Service) Cancel(ctx context.Context, ref RedemptionRef, by string) (*coupon.Redemption, error) {
	r, err := s.GetRedemption(ctx, ref)
	if errors.Is(err, coupon.ErrNotFound) && ref.ID == "" {
		now := s.clock()
		tomb := &coupon.Redemption{ID: coupon.NewID(now), OrderID: ref.OrderID, Status: coupon.RedemptionCancelled,
			Reason: by, Cart: coupon.Cart{Items: []coupon.CartItem{}}, ReservedAt: now, ExpiresAt: now,
			CancelledAt: now, UpdatedAt: now, NextCheckAt: now}
		r, err = s.store.InsertTombstone(ctx, tomb)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, store.ErrOrderExists) {
			return nil, unavailable("record cancellation", err)
		}
		err = nil // its reservation arrived meanwhile: cancel that
	}
	if err != nil {
		return nil, err
	}
	now := s.clock()
	after := withStatus(r, coupon.RedemptionCancelled, coupon.LineReserved, coupon.LineReleased, by)
	got, changed, err := s.store.CancelRedemption(ctx, store.RedemptionChange{ID: r.ID, At: now, Reason: by,
		Event: redemptionEvent(bus.TypeRedemptionCancelled, after, nil, now), Expired: s.expiredEvent(now)})
	switch {
	case err == nil:
		if changed {
			s.onCommit()
			s.claimsChanged(ctx, got.UserID)
		}
		return got, nil
	case errors.Is(err, store.ErrRedemptionStatus):
		if by == ByMessage {
			s.review(ctx, got, "the order system cancelled an order whose coupons were already used; a refund was expected")
		}
		return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s is %s and cannot be cancelled; refund it instead", got.ID, got.Status)
	}
	return nil, unavailable("cancel", notFound("redemption", r.ID, err))
}

// RefundRequest is one refund of an order.
type RefundRequest struct {
	Ref RedemptionRef
	// RefundID is the order system's id of the refund; a refund id seen
	// before is not applied again. Required for a partial refund.
	RefundID string
	// Items are the refunded quantities; none: the whole order.
	Items []coupon.RefundItem
	By    string
}

// Refund applies a refund to a confirmed redemption (see rules.PlanRefund
// for the partial-refund rule). Each coupon the refund releases is given
// back — available again, to the same user — when its batch's refund policy
// is return and it is still valid; otherwise it is marked refunded. A
// refund of a reservation not confirmed yet confirms it first: the order
// system only refunds paid orders. A refund id seen before, or a whole
// refund of a refunded redemption, changes nothing.
func (s *Service) Refund(ctx context.Context, req RefundRequest) (*coupon.Redemption, error) {
	var v coupon.Validation
	if req.RefundID != "" {
		coupon.ValidIdentifier(&v, "refund_id", req.RefundID, true)
	} else if len(req.Items) > 0 {
		v.Add("refund_id", "is required for a partial refund, so that a repeated one is not applied twice")
	}
	if len(req.Items) > coupon.MaxCartItems {
		v.Addf("items", "must list at most %d items", coupon.MaxCartItems)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		r, err := s.GetRedemption(ctx, req.Ref)
		if err != nil {
			return nil, err
		}
		switch {
		case r.Status == coupon.RedemptionReserved:
			if _, err := s.Confirm(ctx, RedemptionRef{ID: r.ID}, req.By); err != nil {
				return nil, err
			}
			continue
		case r.Status == coupon.RedemptionCancelled:
			return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s is cancelled: its coupons were released, nothing to refund", r.ID)
		case req.RefundID != "" && slices.ContainsFunc(r.Refunds, func(f coupon.Refund) bool { return f.ID == req.RefundID }),
			req.RefundID == "" && r.Status == coupon.RedemptionRefunded:
			return r, nil
		}
		got, err := s.refundOnce(ctx, r, req)
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			continue
		}
		return got, err
	}
}

func (s *Service) refundOnce(ctx context.Context, r *coupon.Redemption, req RefundRequest) (*coupon.Redemption, error) {
	plan, err := rules.PlanRefund(r, req.Items)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	refund := coupon.Refund{ID: req.RefundID, Items: req.Items, At: now}
	p := store.RefundRedemption{ID: r.ID, Version: r.Version, Status: plan.Status, Refund: refund, At: now}
	after := *r
	after.Claims = slices.Clone(r.Claims)
	after.Status, after.Reason = plan.Status, req.By
	for _, id := range plan.Released {
		c, err := s.store.GetClaim(ctx, id)
		if err != nil {
			return nil, unavailable("get claim", err)
		}
		b, err := s.batches.get(ctx, c.BatchID)
		if err != nil {
			return nil, unavailable("get batch", err)
		}
		line := coupon.LineRefunded
		if b.Redemption.Policy() == coupon.RefundReturn && now.Before(c.ValidTo) {
			line = coupon.LineReturned
		}
		p.Claims = append(p.Claims, store.ClaimRefund{ClaimID: id, Line: line})
		for i := range after.Claims {
			if after.Claims[i].ClaimID == id {
				after.Claims[i].Status = line
			}
		}
	}
	p.Event = redemptionEvent(bus.TypeRedemptionRefunded, &after, &refund, now)
	got, err := s.store.RefundRedemption(ctx, p)
	if err != nil {
		if errors.Is(err, store.ErrStale) {
			return nil, err
		}
		if errors.Is(err, store.ErrArchived) {
			return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s: a coupon of it was archived (COUPOND_ARCHIVE_AFTER) and can no longer be refunded", r.ID)
		}
		return nil, unavailable("refund", err)
	}
	s.onCommit()
	s.claimsChanged(ctx, got.UserID)
	return got, nil
}

// Reviews lists the redemptions waiting for an operator, with the cursor of
// the next page ("" on the last).
func (s *Service) Reviews(ctx context.Context, cursor string, limit int) ([]*coupon.Redemption, string, error) {
	var v coupon.Validation
	limit = clampLimit(&v, limit)
	if cursor != "" && !coupon.ValidID(cursor) {
		v.Add("cursor", "is not a cursor this API returned")
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	rs, err := s.store.ListReviews(ctx, store.ReviewFilter{AfterID: cursor, Limit: limit + 1})
	if err != nil {
		return nil, "", unavailable("list reviews", err)
	}
	next := ""
	if len(rs) > limit {
		rs = rs[:limit]
		next = rs[limit-1].ID
	}
	return rs, next, nil
}

// Outcomes of a review.
const (
	ResolveConfirm = "confirm" // the order was paid: use the coupons
	ResolveCancel  = "cancel"  // the order is void: release the coupons
	ResolveDismiss = "dismiss" // nothing to do: take it off the list
)

// ResolveReview settles a redemption on the review list: confirm or cancel
// it (a reserved one), or dismiss the review.
func (s *Service) ResolveReview(ctx context.Context, id, outcome string) (*coupon.Redemption, error) {
	r, err := s.GetRedemption(ctx, RedemptionRef{ID: id})
	if err != nil {
		return nil, err
	}
	if r.Review == nil {
		return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s is not on the review list", id)
	}
	switch outcome {
	case ResolveConfirm:
		r, err = s.Confirm(ctx, RedemptionRef{ID: id}, ByReview)
	case ResolveCancel:
		r, err = s.Cancel(ctx, RedemptionRef{ID: id}, ByReview)
	case ResolveDismiss:
	default:
		return nil, coupon.Errorf(coupon.CodeInvalid, "outcome must be confirm, cancel or dismiss")
	}
	if err != nil || r.Review == nil {
		return r, err
	}
	// Dismissed, or confirmed or cancelled already (the change was a no-op
	// and left the review): take it off the list.
	got, err := s.store.NoteRedemptionCheck(ctx, store.RedemptionCheck{ID: id, Status: r.Status, Attempts: r.CheckAttempts,
		NextCheckAt: r.NextCheckAt, ClearReview: true, At: s.clock()})
	if errors.Is(err, store.ErrRedemptionStatus) {
		return nil, coupon.Errorf(coupon.CodeConflict, "redemption %s changed meanwhile; look again", id)
	}
	return got, unavailable("dismiss review", err)
}

// review puts a redemption on the review list; a failure is only logged,
// as the caller reports the conflict anyway.
func (s *Service) review(ctx context.Context, r *coupon.Redemption, reason string) {
	_, err := s.store.NoteRedemptionCheck(ctx, store.RedemptionCheck{ID: r.ID, Status: r.Status, Attempts: r.CheckAttempts,
		NextCheckAt: r.NextCheckAt, Review: reason, At: s.clock()})
	if err != nil {
		s.log.ErrorContext(ctx, "could not put a redemption on the review list", "redemption", r.ID, "order", r.OrderID, "reason", reason, "err", err)
		return
	}
	s.log.WarnContext(ctx, "redemption needs review", "redemption", r.ID, "order", r.OrderID, "reason", reason)
}

// couponsOf builds the rule engine's view of claims with their batches.
func (s *Service) couponsOf(ctx context.Context, claims []*coupon.Claim) ([]rules.Coupon, error) {
	out := make([]rules.Coupon, len(claims))
	for i, c := range claims {
		b, err := s.batches.get(ctx, c.BatchID)
		if err != nil {
			return nil, unavailable("get batch", err)
		}
		out[i] = rules.FromClaim(c, b)
	}
	return out, nil
}

func (s *Service) order(platform, node string, cart coupon.Cart, now time.Time) rules.Order {
	if node == "" {
		node = rules.DefaultNode
	}
	return rules.Order{Cart: cart, Platform: platform, Node: node, At: now, MaxCoupons: s.redemption.MaxCouponsPerOrder}
}

// claimOfCode finds the claim holding a code as a person typed it: an
// internal code by its canonical form (a wrong check character is refused),
// a partner's code of an external batch as given.
func (s *Service) claimOfCode(ctx context.Context, typed, field string) (*coupon.Claim, error) {
	canonical, perr := coupon.ParseCode(typed)
	var code *coupon.Code
	if perr == nil {
		c, err := s.store.GetCode(ctx, canonical)
		switch {
		case err == nil:
			code = c
		case !errors.Is(err, coupon.ErrNotFound):
			return nil, unavailable("get code", err)
		}
	}
	if code == nil {
		c, err := s.store.GetCode(ctx, typed)
		switch {
		case err == nil:
			b, err := s.batches.get(ctx, c.BatchID)
			if err != nil {
				return nil, unavailable("get batch", err)
			}
			if b.Source == coupon.SourceExternal {
				code = c
			}
		case !errors.Is(err, coupon.ErrNotFound):
			return nil, unavailable("get code", err)
		}
	}
	if code == nil {
		if perr != nil {
			var ce *coupon.Error
			if errors.As(perr, &ce) && len(ce.Fields) > 0 {
				return nil, &coupon.Error{Code: coupon.CodeInvalid, Message: ce.Message,
					Fields: []coupon.FieldError{{Field: field, Reason: ce.Fields[0].Reason}}}
			}
			return nil, perr
		}
		return nil, notUsable(field, "not_found", "no such code")
	}
	// Another merchant's code is, to a merchant, no code at all (scope.go).
	switch ok, err := s.seesBatch(ctx, code.BatchID); {
	case err != nil:
		return nil, err
	case !ok:
		return nil, notUsable(field, "not_found", "no such code")
	}
	if code.ClaimID == "" {
		return nil, notUsable(field, "not_issued", "the code has not been claimed by anyone")
	}
	c, err := s.store.GetClaim(ctx, code.ClaimID)
	if err != nil {
		return nil, unavailable("get claim", notFound("claim", code.ClaimID, err))
	}
	return c, nil
}

// validOrder checks what an order says of itself.
func validOrder(v *coupon.Validation, platform, node string, cart *coupon.Cart) {
	if platform != "" && !coupon.ValidPlatform(platform) {
		v.Add("platform", "must be 1 to 32 characters of a-z, 0-9, '-' and '_'")
	}
	coupon.ValidIdentifier(v, "node", node, false)
	cart.Validate(v, "cart")
}

// replay answers a repeated reservation of an order.
func replay(r *coupon.Redemption, hash string) (*coupon.Redemption, bool, error) {
	switch {
	case r.Tombstone():
		return nil, false, coupon.Errorf(coupon.CodeConflict, "order %s was cancelled before its reservation arrived", r.OrderID)
	case r.RequestHash != hash:
		return nil, false, coupon.Errorf(coupon.CodeConflict, "order %s has a redemption already (%s), made with a different request", r.OrderID, r.ID)
	}
	return r, true, nil
}

// requestHash identifies a reservation request, for idempotency by order.
func requestHash(req ReserveRequest, direct bool) string {
	b, _ := json.Marshal(struct {
		Direct bool
		ReserveRequest
	}{direct, req})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// withStatus returns a copy of r as a change to status would leave it.
func withStatus(r *coupon.Redemption, status coupon.RedemptionStatus, from, to coupon.LineStatus, by string) *coupon.Redemption {
	after := *r
	after.Status, after.Reason = status, by
	after.Claims = slices.Clone(r.Claims)
	for i := range after.Claims {
		if after.Claims[i].Status == from {
			after.Claims[i].Status = to
		}
	}
	return &after
}

func redemptionEvent(typ string, r *coupon.Redemption, refund *coupon.Refund, at time.Time) store.Event {
	d := bus.RedemptionChanged{RedemptionID: r.ID, OrderID: r.OrderID, UserID: r.UserID, Status: string(r.Status),
		Discount: r.Discount, Reason: r.Reason, Refund: refund, At: at, Claims: make([]bus.RedemptionClaim, len(r.Claims))}
	for i, c := range r.Claims {
		d.Claims[i] = bus.RedemptionClaim{ClaimID: c.ClaimID, BatchID: c.BatchID, Code: c.Code, Discount: c.Discount,
			Status: string(c.Status), Lines: c.Lines}
	}
	data, _ := json.Marshal(d)
	return store.Event{Type: typ, AggregateID: r.ID, Payload: data, CreatedAt: at}
}

// notUsable is the not_usable error naming one coupon's field and why.
func notUsable(field, reason, message string) error {
	return &coupon.Error{Code: coupon.CodeNotUsable, Message: coupon.ErrNotUsable.Message,
		Fields: []coupon.FieldError{{Field: field, Reason: reason + ": " + message}}}
}

func unavailableMessage(e *store.ClaimUnavailableError) string {
	switch e.Reason {
	case store.UnavailableNotFound:
		return "no such coupon"
	case store.UnavailableNotYours:
		return "the coupon is not the user's"
	case store.UnavailableStatus:
		return fmt.Sprintf("the coupon is %s", e.Status)
	case store.UnavailableNotYetValid:
		return "the coupon is not valid yet"
	case store.UnavailableExpired:
		return "the coupon has expired"
	}
	return "another order holds the coupon"
}
