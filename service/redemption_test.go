package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/ordersys/ordersystest"
	"github.com/coupond/coupond/rules"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// rdEnv is a service with redemption configured, over SQLite and the
// memory engine, with a fake order system on 127.0.0.1.
type rdEnv struct {
	svc    *service.Service
	store  *sqlite.Store
	clock  *clock
	orders *ordersystest.Server
	ctx    context.Context
}

func redemptionSetup(t *testing.T, mods ...func(*service.RedemptionConfig)) *rdEnv {
	t.Helper()
	e := &rdEnv{clock: &clock{t: time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)}, orders: ordersystest.New(t), ctx: t.Context()}
	st, err := sqlite.Open(e.ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "coupond.db"), Synchronous: "normal"})
	require.NoError(t, err)
	e.store = st
	cfg := service.RedemptionConfig{
		OrderSystem:    ordersys.New(ordersys.Config{Backoff: time.Millisecond, Attempts: 2, FailureThreshold: 100}),
		OrderSystemURL: e.orders.Endpoint(),
		CheckAttempts:  3, CheckBackoff: time.Minute,
	}
	for _, m := range mods {
		m(&cfg)
	}
	e.svc = service.New(service.Config{Store: st, Engine: memory.New(), Now: e.clock.Now, Redemption: cfg})
	t.Cleanup(func() {
		e.svc.Close()
		_ = st.Close()
	})
	return e
}

// batch publishes a batch of n coupons of spec, each worth amount, valid 7 days.
func (e *rdEnv) batch(t *testing.T, n int64, mods ...func(*coupon.BatchSpec)) *coupon.Batch {
	t.Helper()
	s := coupon.BatchSpec{
		Name: "redeem", TotalQuantity: n, PerUserLimit: int(min(n, 100)),
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
	}
	for _, m := range mods {
		m(&s)
	}
	b, err := e.svc.CreateBatch(e.ctx, s)
	require.NoError(t, err)
	v, err := e.svc.Transition(e.ctx, b.ID, coupon.Publish)
	require.NoError(t, err)
	return v.Batch
}

func (e *rdEnv) claim(t *testing.T, b *coupon.Batch, user string) *coupon.Claim {
	t.Helper()
	c, _, err := e.svc.Claim(e.ctx, claimReq(b.ID, user))
	require.NoError(t, err)
	return c
}

func (e *rdEnv) claimStatus(t *testing.T, id string) coupon.ClaimStatus {
	t.Helper()
	c, err := e.store.GetClaim(e.ctx, id)
	require.NoError(t, err)
	return c.Status
}

// events returns the pending events of the given types about aggregate.
func (e *rdEnv) events(t *testing.T, aggregate string, types ...string) []store.Event {
	t.Helper()
	all, err := e.store.PendingEvents(e.ctx, 1000)
	require.NoError(t, err)
	var out []store.Event
	for _, ev := range all {
		if ev.AggregateID == aggregate && (len(types) == 0 || contains(types, ev.Type)) {
			out = append(out, ev)
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func cart(items ...coupon.CartItem) coupon.Cart { return coupon.Cart{Items: items} }

func line(id, merchant string, price, qty int64) coupon.CartItem {
	return coupon.CartItem{ID: id, ProductID: "p-" + id, MerchantID: merchant, UnitPrice: price, Quantity: qty}
}

func (e *rdEnv) reserve(t *testing.T, order, user string, c coupon.Cart, claims ...*coupon.Claim) *coupon.Redemption {
	t.Helper()
	req := service.ReserveRequest{OrderID: order, UserID: user, Platform: "ios", Cart: c}
	for _, cl := range claims {
		req.ClaimIDs = append(req.ClaimIDs, cl.ID)
	}
	r, replayed, err := e.svc.Reserve(e.ctx, req)
	require.NoError(t, err)
	require.False(t, replayed)
	return r
}

func requireCode(t *testing.T, err error, code string, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Equal(t, code, coupon.ErrorCode(err), "error %v", err)
}

// TestQualifyListsCouponsAndTheBest: every available or locked coupon of
// the user with its discount or the reason it does not apply, and the best
// combination with the discount split over the cart.
func TestQualifyListsCouponsAndTheBest(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	platform := e.batch(t, 5)                                                                      // 500 off
	shop := e.batch(t, 5, func(s *coupon.BatchSpec) { s.MerchantID = "m1"; s.Amount.Value = 300 }) // m1's 300 off
	big := e.batch(t, 5, func(s *coupon.BatchSpec) {
		s.Type, s.MinSpend, s.Amount.Value = coupon.TypeThreshold, 10_000, 2000 // spend 100.00, get 20.00
	})
	onlyAndroid := e.batch(t, 5, func(s *coupon.BatchSpec) { s.UsagePlatforms = []string{"android"} })
	pc, sc, bc, ac := e.claim(t, platform, "amy"), e.claim(t, shop, "amy"), e.claim(t, big, "amy"), e.claim(t, onlyAndroid, "amy")
	e.claim(t, platform, "bob") // not amy's

	q, err := e.svc.Qualify(e.ctx, service.QualifyRequest{UserID: "amy", Platform: "ios",
		Cart: cart(line("a", "m1", 3000, 1), line("b", "m2", 2000, 1))})
	require.NoError(t, err)
	require.Len(t, q.Claims, 4)
	byID := map[string]service.ClaimQualification{}
	for _, c := range q.Claims {
		byID[c.Claim.ID] = c
	}
	require.True(t, byID[pc.ID].Usable)
	require.EqualValues(t, 500, byID[pc.ID].Discount)
	require.True(t, byID[sc.ID].Usable)
	require.EqualValues(t, 300, byID[sc.ID].Discount)
	require.False(t, byID[bc.ID].Usable)
	require.Equal(t, rules.ReasonMinSpend, byID[bc.ID].Reason.Code)
	require.False(t, byID[ac.ID].Usable)
	require.Equal(t, rules.ReasonPlatform, byID[ac.ID].Reason.Code)

	require.NotNil(t, q.Best)
	require.ElementsMatch(t, []string{pc.ID, sc.ID}, q.Best.ClaimIDs(), "one platform coupon and one of m1")
	require.EqualValues(t, 800, q.Best.Discount)

	// A locked coupon is listed, not usable.
	e.reserve(t, "o-1", "amy", cart(line("a", "m1", 3000, 1)), pc)
	q, err = e.svc.Qualify(e.ctx, service.QualifyRequest{UserID: "amy", Platform: "ios", Cart: cart(line("a", "m1", 3000, 1))})
	require.NoError(t, err)
	for _, c := range q.Claims {
		if c.Claim.ID == pc.ID {
			require.Equal(t, coupon.ClaimLocked, c.Claim.Status)
			require.False(t, c.Usable)
			require.Equal(t, rules.ReasonStatus, c.Reason.Code)
		}
	}
	require.Equal(t, []string{sc.ID}, q.Best.ClaimIDs())

	_, err = e.svc.Qualify(e.ctx, service.QualifyRequest{UserID: "amy", Cart: coupon.Cart{}})
	requireCode(t, err, coupon.CodeInvalid, "an empty cart")
}

// TestReserveConfirmCancel: the state machine through the service, each
// transition once with its event, idempotent by order.
func TestReserveConfirmCancel(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 10)
	c1, c2 := e.claim(t, b, "amy"), e.claim(t, b, "amy")
	basket := cart(line("a", "", 1200, 1), line("b", "", 800, 2))

	r := e.reserve(t, "o-1", "amy", basket, c1)
	require.Equal(t, coupon.RedemptionReserved, r.Status)
	require.EqualValues(t, 500, r.Discount)
	require.Equal(t, e.clock.Now().Add(15*time.Minute), r.ExpiresAt)
	require.Equal(t, coupon.ClaimLocked, e.claimStatus(t, c1.ID))
	var sum int64
	for _, l := range r.Claims[0].Lines {
		sum += l.Amount
	}
	require.EqualValues(t, 500, sum, "the lines split the discount exactly")

	// The same request again: the same redemption.
	again, replayed, err := e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-1", UserID: "amy", Platform: "ios", Cart: basket, ClaimIDs: []string{c1.ID}})
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, r.ID, again.ID)
	// Another request for the same order: conflict.
	_, _, err = e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-1", UserID: "amy", Platform: "ios", Cart: basket, ClaimIDs: []string{c2.ID}})
	requireCode(t, err, coupon.CodeConflict)
	// Another order for the locked coupon: not usable, naming it.
	_, _, err = e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-2", UserID: "amy", Platform: "ios", Cart: basket, ClaimIDs: []string{c1.ID}})
	requireCode(t, err, coupon.CodeNotUsable)
	require.Equal(t, "claim_ids[0]", err.(*coupon.Error).Fields[0].Field)
	// Someone else's coupon.
	_, _, err = e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-3", UserID: "bob", Platform: "ios", Cart: basket, ClaimIDs: []string{c2.ID}})
	requireCode(t, err, coupon.CodeNotUsable)

	done, err := e.svc.Confirm(e.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionConfirmed, done.Status)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, c1.ID))
	_, err = e.svc.Confirm(e.ctx, service.RedemptionRef{OrderID: "o-1"}, service.ByAPI)
	require.NoError(t, err, "confirming twice is a no-op")
	_, err = e.svc.Cancel(e.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
	requireCode(t, err, coupon.CodeConflict, "a confirmed redemption is refunded, not cancelled")
	require.Len(t, e.events(t, r.ID, bus.TypeRedemptionReserved), 1)
	require.Len(t, e.events(t, r.ID, bus.TypeRedemptionConfirmed), 1)

	r2 := e.reserve(t, "o-4", "amy", basket, c2)
	cancelled, err := e.svc.Cancel(e.ctx, service.RedemptionRef{OrderID: "o-4"}, service.ByAPI)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionCancelled, cancelled.Status)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, c2.ID))
	_, err = e.svc.Cancel(e.ctx, service.RedemptionRef{ID: r2.ID}, service.ByAPI)
	require.NoError(t, err, "cancelling twice is a no-op")
	require.Len(t, e.events(t, r2.ID, bus.TypeRedemptionCancelled), 1)

	var data bus.RedemptionChanged
	require.NoError(t, json.Unmarshal(e.events(t, r2.ID, bus.TypeRedemptionCancelled)[0].Payload, &data))
	require.Equal(t, "o-4", data.OrderID)
	require.Equal(t, "released", data.Claims[0].Status)
}

// TestFiftyOrdersOneCoupon: 50 orders reserving the same coupon at once;
// exactly one gets it.
func TestFiftyOrdersOneCoupon(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 1)
	c := e.claim(t, b, "amy")
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		won     int
		refused int
	)
	for i := range 50 {
		wg.Go(func() {
			<-start
			_, _, err := e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: fmt.Sprint("o-", i), UserID: "amy",
				Cart: cart(line("a", "", 1000, 1)), ClaimIDs: []string{c.ID}})
			mu.Lock()
			defer mu.Unlock()
			switch coupon.ErrorCode(err) {
			case "":
				won++
			case coupon.CodeNotUsable:
				refused++
			default:
				t.Errorf("reserve: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, 1, won)
	require.Equal(t, 49, refused)
	require.Equal(t, coupon.ClaimLocked, e.claimStatus(t, c.ID))
}

// TestDuplicateAndOutOfOrderMessages: the order system's messages applied
// twice, or before the reservation's reply, leave one correct state.
func TestDuplicateAndOutOfOrderMessages(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 10)
	basket := cart(line("a", "", 2000, 1))
	msg := func(order string) ordersys.Message { return ordersys.Message{OrderID: order} }

	// Paid, twice.
	c1 := e.claim(t, b, "amy")
	r1 := e.reserve(t, "o-paid", "amy", basket, c1)
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderPaid, msg("o-paid")))
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderPaid, msg("o-paid")))
	require.Len(t, e.events(t, r1.ID, bus.TypeRedemptionConfirmed), 1)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, c1.ID))
	// A late cancellation of a paid order changes nothing and asks an operator.
	requireCode(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderCancelled, msg("o-paid")), coupon.CodeConflict)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, c1.ID))

	// Cancelled before the reservation arrived: the reservation locks nothing.
	c2 := e.claim(t, b, "amy")
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderCancelled, msg("o-early")))
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderCancelled, msg("o-early")))
	_, _, err := e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-early", UserID: "amy", Cart: basket, ClaimIDs: []string{c2.ID}})
	requireCode(t, err, coupon.CodeConflict)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, c2.ID))

	// Paid for an order without a reservation: nothing to do.
	requireCode(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderPaid, msg("o-none")), coupon.CodeNotFound)

	// Cancelled, then paid: the cancellation stands; an operator is asked.
	c3 := e.claim(t, b, "amy")
	r3 := e.reserve(t, "o-flip", "amy", basket, c3)
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderCancelled, msg("o-flip")))
	requireCode(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderPaid, msg("o-flip")), coupon.CodeConflict)
	got, err := e.svc.GetRedemption(e.ctx, service.RedemptionRef{ID: r3.ID})
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionCancelled, got.Status)
	require.NotNil(t, got.Review)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, c3.ID))

	// Refunded before paid arrived: confirmed, then refunded; both messages twice.
	c4 := e.claim(t, b, "amy")
	r4 := e.reserve(t, "o-refund", "amy", basket, c4)
	refund := ordersys.Message{OrderID: "o-refund", RefundID: "rf-1"}
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderRefunded, refund))
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderRefunded, refund))
	require.NoError(t, e.svc.ApplyOrderMessage(e.ctx, service.OrderPaid, msg("o-refund")))
	got, err = e.svc.GetRedemption(e.ctx, service.RedemptionRef{ID: r4.ID})
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionRefunded, got.Status)
	require.Len(t, got.Refunds, 1)
	require.Len(t, e.events(t, r4.ID, bus.TypeRedemptionConfirmed), 1)
	require.Len(t, e.events(t, r4.ID, bus.TypeRedemptionRefunded), 1)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, c4.ID), "returned: the default policy, still valid")

	reviews, _, err := e.svc.Reviews(e.ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, reviews, 2, "the paid-then-cancelled order and the cancelled-then-paid one")

	// The operator confirms the paid one (a no-op) and dismisses the other: the list is empty.
	done, err := e.svc.ResolveReview(e.ctx, r1.ID, service.ResolveConfirm)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionConfirmed, done.Status)
	require.Nil(t, done.Review)
	_, err = e.svc.ResolveReview(e.ctx, r3.ID, service.ResolveCancel)
	require.NoError(t, err, "cancelling a cancelled redemption settles its review")
	reviews, _, err = e.svc.Reviews(e.ctx, "", 10)
	require.NoError(t, err)
	require.Empty(t, reviews)
}

// TestRefunds: the batch's policy, the coupon's validity and the
// partial-refund rule.
func TestRefunds(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	keep := e.batch(t, 10)
	void := e.batch(t, 10, func(s *coupon.BatchSpec) {
		s.MerchantID = "m1"
		s.Redemption.RefundPolicy = coupon.RefundVoid
	})
	basket := cart(line("a", "", 3000, 2), line("b", "m1", 1000, 1))

	// Whole refund: the platform coupon comes back, the voiding batch's does not.
	kc, vc := e.claim(t, keep, "amy"), e.claim(t, void, "amy")
	r := e.reserve(t, "o-1", "amy", basket, kc, vc)
	_, err := e.svc.Confirm(e.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
	require.NoError(t, err)
	got, err := e.svc.Refund(e.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r.ID}, By: service.ByAPI})
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionRefunded, got.Status)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, kc.ID))
	require.Equal(t, coupon.ClaimRefunded, e.claimStatus(t, vc.ID))
	again, err := e.svc.Refund(e.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r.ID}, By: service.ByAPI})
	require.NoError(t, err, "a whole refund of a refunded order changes nothing")
	require.Equal(t, got.Version, again.Version)

	// Partial refunds: the coupon on items a and b stays used until both are refunded in full.
	kc2 := e.claim(t, keep, "amy")
	r2 := e.reserve(t, "o-2", "amy", basket, kc2)
	_, err = e.svc.Confirm(e.ctx, service.RedemptionRef{ID: r2.ID}, service.ByAPI)
	require.NoError(t, err)
	ref := service.RedemptionRef{OrderID: "o-2"}
	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: ref, Items: []coupon.RefundItem{{ID: "a", Quantity: 1}}})
	requireCode(t, err, coupon.CodeInvalid, "a partial refund needs its id")
	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: ref, RefundID: "x", Items: []coupon.RefundItem{{ID: "a", Quantity: 3}}})
	requireCode(t, err, coupon.CodeInvalid, "more than was bought")
	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: ref, RefundID: "x", Items: []coupon.RefundItem{{ID: "zz", Quantity: 1}}})
	requireCode(t, err, coupon.CodeInvalid, "an item the order does not hold")

	step := func(id string, items ...coupon.RefundItem) *coupon.Redemption {
		got, err := e.svc.Refund(e.ctx, service.RefundRequest{Ref: ref, RefundID: id, Items: items})
		require.NoError(t, err)
		return got
	}
	got = step("rf-1", coupon.RefundItem{ID: "a", Quantity: 1})
	require.Equal(t, coupon.RedemptionPartiallyRefunded, got.Status)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, kc2.ID))
	got = step("rf-1", coupon.RefundItem{ID: "a", Quantity: 1})
	require.Len(t, got.Refunds, 1, "the same refund id again is not applied twice")
	got = step("rf-2", coupon.RefundItem{ID: "a", Quantity: 1})
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, kc2.ID), "item b is not refunded yet")
	got = step("rf-3", coupon.RefundItem{ID: "b", Quantity: 1})
	require.Equal(t, coupon.RedemptionRefunded, got.Status)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, kc2.ID))
	require.Len(t, got.Refunds, 3)

	// Returned only while valid: a refund after the coupon's validity marks it refunded.
	kc3 := e.claim(t, keep, "amy")
	r3 := e.reserve(t, "o-3", "amy", basket, kc3)
	_, err = e.svc.Confirm(e.ctx, service.RedemptionRef{ID: r3.ID}, service.ByAPI)
	require.NoError(t, err)
	e.clock.Advance(8 * 24 * time.Hour)
	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r3.ID}})
	require.NoError(t, err)
	require.Equal(t, coupon.ClaimRefunded, e.claimStatus(t, kc3.ID))

	// A cancelled order has nothing to refund.
	kc4 := e.claim(t, keep, "bob")
	r4 := e.reserve(t, "o-4", "bob", basket, kc4)
	_, err = e.svc.Cancel(e.ctx, service.RedemptionRef{ID: r4.ID}, service.ByAPI)
	require.NoError(t, err)
	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r4.ID}})
	requireCode(t, err, coupon.CodeConflict)
}

// TestRedeemCode: a code typed at a point of sale, reserved and confirmed
// in one call; an internal code's check character is verified, a partner's
// code is taken as given.
func TestRedeemCode(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 5)
	c := e.claim(t, b, "amy")
	basket := cart(line("a", "", 2000, 1))

	// A typo: two adjacent characters swapped.
	typo := []byte(c.Code)
	i := 0
	for typo[i] == typo[i+1] {
		i++
	}
	typo[i], typo[i+1] = typo[i+1], typo[i]
	_, _, err := e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-1", Code: string(typo), Cart: basket})
	requireCode(t, err, coupon.CodeInvalid)
	require.Contains(t, err.Error(), "check character")

	// As a person types it: lower case, with hyphens.
	typed := strings.ToLower(c.Code[:4] + "-" + c.Code[4:])
	r, replayed, err := e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-1", Code: typed, Cart: basket})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, coupon.RedemptionConfirmed, r.Status)
	require.Equal(t, "amy", r.UserID)
	require.Equal(t, service.ByDirect, r.Reason)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, c.ID))
	require.Len(t, e.events(t, r.ID, bus.TypeRedemptionConfirmed), 1)
	_, replayed, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-1", Code: typed, Cart: basket})
	require.NoError(t, err)
	require.True(t, replayed)
	_, _, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-2", Code: c.Code, Cart: basket})
	requireCode(t, err, coupon.CodeNotUsable, "used already")

	// The wrong user.
	c2 := e.claim(t, b, "amy")
	_, _, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-3", Code: c2.Code, UserID: "bob", Cart: basket})
	requireCode(t, err, coupon.CodeNotUsable)

	// A partner's code of an external batch, with no check character.
	now := e.clock.Now()
	ext := &coupon.Batch{ID: coupon.NewID(now), Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now, BatchSpec: coupon.BatchSpec{
		Name: "partner", Type: coupon.TypeCash, TotalQuantity: 2, PerUserLimit: 1, Validity: coupon.Validity{Days: 7},
		Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 700}, BatchOptions: coupon.BatchOptions{Source: coupon.SourceExternal},
	}}
	require.NoError(t, e.store.CreateBatch(e.ctx, ext))
	_, err = e.store.AddCodes(e.ctx, ext.ID, []coupon.Code{{Code: "PARTNER-xyz-42", Amount: 700}, {Code: "PARTNER-unclaimed", Amount: 700}})
	require.NoError(t, err)
	pc := coupon.NewClaim(ext, coupon.NewID(now), coupon.Claimant{UserID: "cat"}, "PARTNER-xyz-42", 700, 1, "", now)
	require.NoError(t, e.store.InsertClaims(e.ctx, []store.ClaimWrite{{Claim: pc, Event: store.Event{Type: "claim.created", AggregateID: pc.ID, Payload: json.RawMessage(`{}`)}}})[0])
	r, _, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-4", Code: "PARTNER-xyz-42", Cart: basket})
	require.NoError(t, err)
	require.EqualValues(t, 700, r.Discount)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, pc.ID))
	_, _, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-5", Code: "PARTNER-unclaimed", Cart: basket})
	requireCode(t, err, coupon.CodeNotUsable, "a code nobody holds")
	_, _, err = e.svc.RedeemCode(e.ctx, service.DirectRequest{OrderID: "pos-6", Code: "PARTNER-nope", Cart: basket})
	requireCode(t, err, coupon.CodeInvalid, "neither a partner's code nor one with a valid check character")
}

// TestLostConfirmation: the order system's message never came; after the
// reservation's timeout the reconciler asks the order system (a real HTTP
// server) and confirms, releases, or — when it cannot get an answer —
// retries with backoff and then puts the redemption on the review list.
func TestLostConfirmation(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 10)
	basket := cart(line("a", "", 2000, 1))
	paid, cancelled, never, pending, down := e.claim(t, b, "amy"), e.claim(t, b, "amy"), e.claim(t, b, "amy"), e.claim(t, b, "amy"), e.claim(t, b, "amy")
	rPaid := e.reserve(t, "o-paid", "amy", basket, paid)
	rCancelled := e.reserve(t, "o-cancelled", "amy", basket, cancelled)
	rNever := e.reserve(t, "o-never", "amy", basket, never)
	rPending := e.reserve(t, "o-pending", "amy", basket, pending)
	e.orders.Set("o-paid", "paid")
	e.orders.Set("o-cancelled", "cancelled")
	e.orders.Set("o-pending", "pending")
	// o-never is unknown to the order system: it was never placed.

	// Within the timeout nobody asks.
	res, err := e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{}, res)
	require.Zero(t, e.orders.Asked("o-paid"))

	e.clock.Advance(16 * time.Minute)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 4, Confirmed: 1, Cancelled: 2, Pending: 1}, res)
	status := func(id string) coupon.RedemptionStatus {
		r, err := e.svc.GetRedemption(e.ctx, service.RedemptionRef{ID: id})
		require.NoError(t, err)
		return r.Status
	}
	require.Equal(t, coupon.RedemptionConfirmed, status(rPaid.ID))
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, paid.ID))
	require.Equal(t, coupon.RedemptionCancelled, status(rCancelled.ID))
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, cancelled.ID))
	require.Equal(t, coupon.RedemptionCancelled, status(rNever.ID))
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, never.ID))
	require.Equal(t, coupon.RedemptionReserved, status(rPending.ID))
	got, err := e.svc.GetRedemption(e.ctx, service.RedemptionRef{ID: rPaid.ID})
	require.NoError(t, err)
	require.Equal(t, service.ByReconciler, got.Reason)

	// The pending order is asked again later, and confirmed once paid.
	e.orders.Set("o-pending", "paid")
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{}, res, "not before its recheck")
	e.clock.Advance(5 * time.Minute)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 1, Confirmed: 1}, res)
	require.Equal(t, coupon.ClaimUsed, e.claimStatus(t, pending.ID))

	// The order system is down: retries with backoff, then the review list.
	rDown := e.reserve(t, "o-down", "amy", basket, down)
	e.orders.Set("o-down", "paid")
	e.orders.Down(true)
	e.clock.Advance(16 * time.Minute)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 1, Failed: 1}, res)
	asked := e.orders.Asked("o-down")
	require.Equal(t, 2, asked, "the client tried twice within the pass")
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{}, res, "backing off")
	e.clock.Advance(time.Minute)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 1, Failed: 1}, res)
	e.clock.Advance(2 * time.Minute)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 1, Reviewed: 1}, res, "the third failed attempt sends it to review")
	e.clock.Advance(time.Hour)
	res, err = e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{}, res, "under review: left to an operator")
	require.Equal(t, coupon.ClaimLocked, e.claimStatus(t, down.ID), "never released without an answer")

	reviews, next, err := e.svc.Reviews(e.ctx, "", 10)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, reviews, 1)
	require.Equal(t, rDown.ID, reviews[0].ID)
	require.Equal(t, 3, reviews[0].Review.Attempts)
	require.Contains(t, reviews[0].Review.Reason, "no answer")

	_, err = e.svc.ResolveReview(e.ctx, rDown.ID, "shrug")
	requireCode(t, err, coupon.CodeInvalid)
	done, err := e.svc.ResolveReview(e.ctx, rDown.ID, service.ResolveConfirm)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionConfirmed, done.Status)
	require.Nil(t, done.Review)
	require.Equal(t, service.ByReview, done.Reason)
	reviews, _, err = e.svc.Reviews(e.ctx, "", 10)
	require.NoError(t, err)
	require.Empty(t, reviews)
	_, err = e.svc.ResolveReview(e.ctx, rDown.ID, service.ResolveCancel)
	requireCode(t, err, coupon.CodeConflict, "not on the list any more")
}

// TestReviewWithoutOrderSystem: with no order system to ask, a late
// reservation goes to the review list at once.
func TestReviewWithoutOrderSystem(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t, func(c *service.RedemptionConfig) { c.OrderSystem, c.OrderSystemURL = nil, "" })
	b := e.batch(t, 1)
	c := e.claim(t, b, "amy")
	r := e.reserve(t, "o-1", "amy", cart(line("a", "", 900, 1)), c)
	e.clock.Advance(time.Hour)
	res, err := e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.CheckResult{Checked: 1, Reviewed: 1}, res)
	got, err := e.svc.ResolveReview(e.ctx, r.ID, service.ResolveCancel)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionCancelled, got.Status)
	require.Equal(t, coupon.ClaimAvailable, e.claimStatus(t, c.ID))
}

// TestBatchRedemptionOptions: a batch's own timeout and order system, and
// its per-order limit.
func TestBatchRedemptionOptions(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	other := ordersystest.New(t)
	b := e.batch(t, 10, func(s *coupon.BatchSpec) {
		s.Redemption = coupon.RedemptionOptions{ReservationTimeout: 60, OrderSystemURL: other.Endpoint(), MaxPerOrder: 2}
	})
	c1, c2, c3 := e.claim(t, b, "amy"), e.claim(t, b, "amy"), e.claim(t, b, "amy")
	basket := cart(line("a", "", 5000, 1))
	_, _, err := e.svc.Reserve(e.ctx, service.ReserveRequest{OrderID: "o-3", UserID: "amy", Cart: basket, ClaimIDs: []string{c1.ID, c2.ID, c3.ID}})
	requireCode(t, err, coupon.CodeNotUsable, "three of a batch allowing two")
	r := e.reserve(t, "o-2", "amy", basket, c1, c2)
	require.EqualValues(t, 1000, r.Discount)
	require.Equal(t, e.clock.Now().Add(time.Minute), r.ExpiresAt)

	other.Set("o-2", "paid")
	e.clock.Advance(2 * time.Minute)
	res, err := e.svc.CheckRedemptions(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Confirmed)
	require.Equal(t, 1, other.Asked("o-2"), "the batch's order system was asked")
	require.Zero(t, e.orders.Asked("o-2"))
}

// TestExpirySweep: available claims past their validity become expired
// with an event, claim.expiring comes the lead before, locked and used
// claims are left alone, and nothing is noticed twice.
func TestExpirySweep(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t, func(c *service.RedemptionConfig) {
		c.ExpiringLead, c.ExpiryInterval = 24*time.Hour, 10*time.Minute
	})
	days := e.batch(t, 10) // 7 days from the claim
	end := e.clock.Now().Add(3 * 24 * time.Hour)
	fixed := e.batch(t, 10, func(s *coupon.BatchSpec) { s.Validity = coupon.Validity{Start: e.clock.Now(), End: end} })
	d1, d2 := e.claim(t, days, "amy"), e.claim(t, days, "bob")
	f1, f2 := e.claim(t, fixed, "amy"), e.claim(t, fixed, "bob")
	// Locked claims: never expired by the sweeper.
	e.reserve(t, "o-1", "bob", cart(line("a", "", 5000, 1)), d2)
	e.reserve(t, "o-2", "bob", cart(line("a", "", 5000, 1)), f2)

	res, err := e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 1}, res, "the fixed batch is not due before its notice lead")

	// Two days later: the fixed batch ends within the lead.
	e.clock.Advance(2*24*time.Hour + time.Hour)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 2, Noticed: 1}, res)
	require.Len(t, e.events(t, f1.ID, bus.TypeClaimExpiring), 1)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{}, res, "nothing due")

	// After its end (and the grace): f1 expires; the fixed batch is finished.
	e.clock.Advance(24 * time.Hour)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 2, Expired: 1}, res)
	require.Equal(t, coupon.ClaimExpired, e.claimStatus(t, f1.ID))
	require.Equal(t, coupon.ClaimLocked, e.claimStatus(t, f2.ID))
	require.Len(t, e.events(t, f1.ID, bus.TypeClaimExpired), 1)

	// Day 6.x: d1 is within its lead; day 7.x: it expires.
	e.clock.Advance(3 * 24 * time.Hour)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 1, Noticed: 1}, res)
	e.clock.Advance(11 * time.Minute)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 1}, res, "noticed once")
	e.clock.Advance(24 * time.Hour)
	res, err = e.svc.SweepExpiry(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.ExpiryResult{Batches: 1, Expired: 1}, res)
	require.Equal(t, coupon.ClaimExpired, e.claimStatus(t, d1.ID))
	require.Equal(t, coupon.ClaimLocked, e.claimStatus(t, d2.ID))
	var data bus.ClaimExpiry
	require.NoError(t, json.Unmarshal(e.events(t, d1.ID, bus.TypeClaimExpired)[0].Payload, &data))
	require.Equal(t, "amy", data.UserID)
	require.Equal(t, d1.ValidTo, data.ValidTo)

	// A locked claim released after its validity ended expires at once.
	for _, order := range []string{"o-1", "o-2"} {
		_, err = e.svc.Cancel(e.ctx, service.RedemptionRef{OrderID: order}, service.ByAPI)
		require.NoError(t, err)
	}
	require.Equal(t, coupon.ClaimExpired, e.claimStatus(t, d2.ID))
	require.Equal(t, coupon.ClaimExpired, e.claimStatus(t, f2.ID))
	require.Len(t, e.events(t, d2.ID, bus.TypeClaimExpired), 1)
}
