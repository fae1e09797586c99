package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// redemptionTests are the subtests of the redemption part of the contract.
var redemptionTests = []struct {
	name string
	fn   func(t *testing.T, f *fixture)
}{
	{"Redemption/ReserveConfirm", testReserveConfirm},
	{"Redemption/Cancel", testCancelRedemption},
	{"Redemption/CancelPastValidity", testCancelPastValidity},
	{"Redemption/ReserveRefused", testReserveRefused},
	{"Redemption/ConcurrentOrdersOneClaim", testConcurrentOrdersOneClaim},
	{"Redemption/ConcurrentSameOrder", testConcurrentSameOrder},
	{"Redemption/ConcurrentConfirmCancel", testConcurrentConfirmCancel},
	{"Redemption/Direct", testDirectRedemption},
	{"Redemption/Refund", testRefundRedemption},
	{"Redemption/Tombstone", testTombstone},
	{"Redemption/DueAndReviews", testDueAndReviews},
	{"Expiry/Sweep", testSweepClaims},
	{"Expiry/Batches", testExpiryBatches},
}

// at is when the fixtures' redemptions happen: every fixture claim is valid.
var at = base.Add(time.Hour)

// claims stores n claims of b, one per user u0, u1, … (mods may change them).
func (f *fixture) claims(b *coupon.Batch, n int, mods ...func(*coupon.Claim)) []*coupon.Claim {
	f.t.Helper()
	cs := f.addCodes(b, n)
	out := make([]*coupon.Claim, n)
	writes := make([]store.ClaimWrite, n)
	for i, c := range cs {
		// Distinct sequence numbers, so that mods may give every claim one user.
		writes[i] = f.claim(b, c, fmt.Sprint("u", i), i+1, "")
		writes[i].Claim.UserLimit = n
		for _, m := range mods {
			m(writes[i].Claim)
		}
		out[i] = writes[i].Claim
	}
	f.insert(writes...)
	return out
}

// redemption returns a reservation of claims by order for user, not stored.
func (f *fixture) redemption(order, user string, cs ...*coupon.Claim) *coupon.Redemption {
	r := &coupon.Redemption{
		ID: f.id(), OrderID: order, UserID: user, Status: coupon.RedemptionReserved, Platform: "ios", Node: "order",
		Cart: coupon.Cart{
			Items:    []coupon.CartItem{{ID: "line-1", ProductID: "p1", CategoryIDs: []string{"c1"}, MerchantID: "m1", UnitPrice: 1500, Quantity: 2}},
			Shipping: []coupon.ShippingFee{{MerchantID: "m1", Amount: 500}},
		},
		Reason: "", ReservedAt: at, ExpiresAt: at.Add(15 * time.Minute), UpdatedAt: at, NextCheckAt: at.Add(15 * time.Minute),
		OrderSystemURL: "http://orders.test/orders/{order_id}", RequestHash: "hash-" + order,
	}
	for _, c := range cs {
		r.Claims = append(r.Claims, coupon.RedemptionClaim{
			ClaimID: c.ID, BatchID: c.BatchID, Code: c.Code, Discount: 100, Status: coupon.LineReserved,
			Lines: []coupon.Line{{Kind: coupon.LineItem, Item: "line-1", Amount: 100, Costs: []coupon.Cost{
				{Bearer: coupon.BearerPlatform, Amount: 60}, {Bearer: coupon.BearerMerchant, MerchantID: "m1", Amount: 40}}}},
		})
		r.Discount += 100
	}
	return r
}

func event(typ, aggregate string) store.Event {
	return store.Event{Type: typ, AggregateID: aggregate, Payload: json.RawMessage(`{"aggregate":"` + aggregate + `"}`)}
}

func (f *fixture) reserve(r *coupon.Redemption) *coupon.Redemption {
	f.t.Helper()
	got, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: r, Event: event("redemption.reserved", r.ID), At: at})
	require.NoError(f.t, err)
	return got
}

func (f *fixture) change(id, typ string, at time.Time) store.RedemptionChange {
	return store.RedemptionChange{ID: id, At: at, Reason: "test", Event: event(typ, id),
		Expired: func(c *coupon.Claim) store.Event { return event("claim.expired", c.ID) }}
}

func (f *fixture) claimStatus(id string) coupon.ClaimStatus {
	f.t.Helper()
	c, err := f.s.GetClaim(f.ctx, id)
	require.NoError(f.t, err)
	return c.Status
}

func (f *fixture) requireClaims(status coupon.ClaimStatus, cs ...*coupon.Claim) {
	f.t.Helper()
	for _, c := range cs {
		require.Equal(f.t, status, f.claimStatus(c.ID), "claim %s", c.ID)
	}
}

// eventTypes lists the types of events, leaving out claim.created.
func eventTypes(es []store.Event) []string {
	out := []string{}
	for _, e := range es {
		if e.Type != "claim.created" {
			out = append(out, e.Type)
		}
	}
	return out
}

func lineStatuses(r *coupon.Redemption) []coupon.LineStatus {
	out := make([]coupon.LineStatus, len(r.Claims))
	for i, c := range r.Claims {
		out[i] = c.Status
	}
	return out
}

// testReserveConfirm: a reservation locks its claims and reads back whole;
// confirming uses them, once.
func testReserveConfirm(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 3, func(c *coupon.Claim) { c.UserID = "buyer" })
	r := f.redemption("order-1", "buyer", cs[0], cs[1])
	f.reserve(r)
	f.requireClaims(coupon.ClaimLocked, cs[0], cs[1])
	f.requireClaims(coupon.ClaimAvailable, cs[2])

	got, err := f.s.GetRedemption(f.ctx, r.ID)
	require.NoError(t, err)
	want := *r
	want.Version = 1
	require.Equal(t, &want, got)
	requireUTC(t, got.ReservedAt, got.ExpiresAt, got.UpdatedAt, got.NextCheckAt)
	byOrder, err := f.s.GetRedemptionByOrder(f.ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, got, byOrder)
	_, err = f.s.GetRedemption(f.ctx, f.id())
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.s.GetRedemptionByOrder(f.ctx, "order-none")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, []string{"redemption.reserved"}, eventTypes(f.eventsFor(r.ID)))

	later := at.Add(time.Minute)
	done, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(r.ID, "redemption.confirmed", later))
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, coupon.RedemptionConfirmed, done.Status)
	require.Equal(t, later, done.ConfirmedAt)
	require.Equal(t, "test", done.Reason)
	require.Equal(t, []coupon.LineStatus{coupon.LineConfirmed, coupon.LineConfirmed}, lineStatuses(done))
	f.requireClaims(coupon.ClaimUsed, cs[0], cs[1])

	again, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(r.ID, "redemption.confirmed", later.Add(time.Minute)))
	require.NoError(t, err, "confirming twice is a no-op")
	require.False(t, changed)
	require.Equal(t, done, again)
	_, changed, err = f.s.CancelRedemption(f.ctx, f.change(r.ID, "redemption.cancelled", later))
	require.ErrorIs(t, err, store.ErrRedemptionStatus, "a confirmed redemption cannot be cancelled")
	require.False(t, changed)
	f.requireClaims(coupon.ClaimUsed, cs[0], cs[1])
	require.Equal(t, []string{"redemption.reserved", "redemption.confirmed"}, eventTypes(f.eventsFor(r.ID)))

	_, _, err = f.s.ConfirmRedemption(f.ctx, f.change(f.id(), "redemption.confirmed", later))
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testCancelRedemption: cancelling releases the claims, once, and a
// cancelled redemption cannot be confirmed.
func testCancelRedemption(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 2, func(c *coupon.Claim) { c.UserID = "buyer" })
	r := f.reserve(f.redemption("order-1", "buyer", cs...))
	done, changed, err := f.s.CancelRedemption(f.ctx, f.change(r.ID, "redemption.cancelled", at))
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, coupon.RedemptionCancelled, done.Status)
	require.Equal(t, at, done.CancelledAt)
	require.Equal(t, []coupon.LineStatus{coupon.LineReleased, coupon.LineReleased}, lineStatuses(done))
	f.requireClaims(coupon.ClaimAvailable, cs...)

	_, changed, err = f.s.CancelRedemption(f.ctx, f.change(r.ID, "redemption.cancelled", at))
	require.NoError(t, err, "cancelling twice is a no-op")
	require.False(t, changed)
	got, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(r.ID, "redemption.confirmed", at))
	require.ErrorIs(t, err, store.ErrRedemptionStatus, "a cancelled redemption stays cancelled")
	require.False(t, changed)
	require.Equal(t, coupon.RedemptionCancelled, got.Status)
	f.requireClaims(coupon.ClaimAvailable, cs...)
	require.Equal(t, []string{"redemption.reserved", "redemption.cancelled"}, eventTypes(f.eventsFor(r.ID)))

	// Released claims serve another order.
	f.reserve(f.redemption("order-2", "buyer", cs...))
	f.requireClaims(coupon.ClaimLocked, cs...)
}

// testCancelPastValidity: a cancellation after a claim's validity ended
// expires it, with its event, rather than making it available.
func testCancelPastValidity(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 2, func(c *coupon.Claim) { c.UserID = "buyer" })
	r := f.reserve(f.redemption("order-1", "buyer", cs...))
	// Cancelled when the first claim's validity ends; the second, claimed a
	// second later, is valid a second longer.
	late := cs[0].ValidTo
	require.True(t, cs[1].ValidTo.After(late))
	_, changed, err := f.s.CancelRedemption(f.ctx, f.change(r.ID, "redemption.cancelled", late))
	require.NoError(t, err)
	require.True(t, changed)
	for _, c := range cs {
		want := coupon.ClaimAvailable
		if !c.ValidTo.After(late) {
			want = coupon.ClaimExpired
			require.Equal(t, []string{"claim.expired"}, eventTypes(f.eventsFor(c.ID)))
		}
		require.Equal(t, want, f.claimStatus(c.ID))
	}
}

// testReserveRefused: a reservation that cannot take every claim writes
// nothing and names the claim; an order reserves once.
func testReserveRefused(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 5, func(c *coupon.Claim) { c.UserID = "buyer" })
	other := f.claims(b, 1)[0] // user u0
	r := f.reserve(f.redemption("order-1", "buyer", cs[0]))

	expired := cs[3]
	future := cs[4]
	for _, tc := range []struct {
		name   string
		claims []*coupon.Claim
		at     time.Time
		reason string
		claim  string
	}{
		{"locked by another order", []*coupon.Claim{cs[1], cs[0]}, at, store.UnavailableStatus, cs[0].ID},
		{"another user's", []*coupon.Claim{cs[1], other}, at, store.UnavailableNotYours, other.ID},
		{"unknown", []*coupon.Claim{cs[1], {ID: f.id(), BatchID: b.ID, Code: "NONE"}}, at, store.UnavailableNotFound, ""},
		{"past validity", []*coupon.Claim{expired}, expired.ValidTo, store.UnavailableExpired, expired.ID},
		{"before validity", []*coupon.Claim{future}, future.ValidFrom.Add(-time.Second), store.UnavailableNotYetValid, future.ID},
	} {
		rr := f.redemption("order-"+tc.name, "buyer", tc.claims...)
		_, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: rr, Event: event("redemption.reserved", rr.ID), At: tc.at})
		var ue *store.ClaimUnavailableError
		require.ErrorAs(t, err, &ue, tc.name)
		require.ErrorIs(t, err, store.ErrClaimUnavailable)
		require.Equal(t, tc.reason, ue.Reason, tc.name)
		if tc.claim != "" {
			require.Equal(t, tc.claim, ue.ClaimID, tc.name)
		}
		_, err = f.s.GetRedemptionByOrder(f.ctx, rr.OrderID)
		require.ErrorIs(t, err, store.ErrNotFound, "%s: nothing written", tc.name)
		require.Empty(t, f.eventsFor(rr.ID))
	}
	f.requireClaims(coupon.ClaimAvailable, cs[1], cs[2], expired, future, other)
	f.requireClaims(coupon.ClaimLocked, cs[0])

	// The same order again: the first redemption, nothing written.
	dup := f.redemption("order-1", "buyer", cs[2])
	got, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: dup, Event: event("redemption.reserved", dup.ID), At: at})
	require.ErrorIs(t, err, store.ErrOrderExists)
	require.Equal(t, r.ID, got.ID)
	f.requireClaims(coupon.ClaimAvailable, cs[2])
	require.Empty(t, f.eventsFor(dup.ID))
}

// testConcurrentOrdersOneClaim: 50 orders race for one claim; exactly one
// reserves it.
func testConcurrentOrdersOneClaim(t *testing.T, f *fixture) {
	b := f.createBatch()
	c := f.claims(b, 1, func(c *coupon.Claim) { c.UserID = "buyer" })[0]
	const orders = 50
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		mu     sync.Mutex
		won    []string
		errs   []error
		refuse int
	)
	for i := range orders {
		r := f.redemption(fmt.Sprint("order-", i), "buyer", c)
		wg.Go(func() {
			<-start
			_, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: r, Event: event("redemption.reserved", r.ID), At: at})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, r.OrderID)
			case errors.Is(err, store.ErrClaimUnavailable):
				refuse++
			default:
				errs = append(errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Empty(t, errs)
	require.Len(t, won, 1, "exactly one order reserves the claim")
	require.Equal(t, orders-1, refuse)
	f.requireClaims(coupon.ClaimLocked, c)
	winner, err := f.s.GetRedemptionByOrder(f.ctx, won[0])
	require.NoError(t, err)
	require.Equal(t, c.ID, winner.Claims[0].ClaimID)
	reserved := 0
	for _, e := range f.events() {
		if e.Type == "redemption.reserved" {
			reserved++
		}
	}
	require.Equal(t, 1, reserved, "one reservation event")
}

// testConcurrentSameOrder: retries of one order racing each other reserve
// once; the others get the first redemption.
func testConcurrentSameOrder(t *testing.T, f *fixture) {
	b := f.createBatch()
	c := f.claims(b, 1, func(c *coupon.Claim) { c.UserID = "buyer" })[0]
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		ids   = map[string]int{}
		fresh int
	)
	for range 20 {
		r := f.redemption("order-1", "buyer", c)
		wg.Go(func() {
			<-start
			got, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: r, Event: event("redemption.reserved", r.ID), At: at})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				fresh++
				ids[got.ID]++
			case errors.Is(err, store.ErrOrderExists):
				ids[got.ID]++
			default:
				t.Errorf("reserve: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, 1, fresh)
	require.Len(t, ids, 1, "every call names the one redemption")
}

// testConcurrentConfirmCancel: a confirmation and a cancellation racing
// leave one of the two states, with its claims to match.
func testConcurrentConfirmCancel(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 20, func(c *coupon.Claim) { c.UserID = "buyer" })
	for i, c := range cs {
		r := f.reserve(f.redemption(fmt.Sprint("order-", i), "buyer", c))
		var wg sync.WaitGroup
		var confirmed, cancelled bool
		wg.Go(func() {
			_, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(r.ID, "redemption.confirmed", at))
			if err != nil && !errors.Is(err, store.ErrRedemptionStatus) {
				t.Error(err)
			}
			confirmed = changed
		})
		wg.Go(func() {
			_, changed, err := f.s.CancelRedemption(f.ctx, f.change(r.ID, "redemption.cancelled", at))
			if err != nil && !errors.Is(err, store.ErrRedemptionStatus) {
				t.Error(err)
			}
			cancelled = changed
		})
		wg.Wait()
		require.NotEqual(t, confirmed, cancelled, "exactly one of confirm and cancel took effect")
		got, err := f.s.GetRedemption(f.ctx, r.ID)
		require.NoError(t, err)
		if confirmed {
			require.Equal(t, coupon.RedemptionConfirmed, got.Status)
			f.requireClaims(coupon.ClaimUsed, c)
		} else {
			require.Equal(t, coupon.RedemptionCancelled, got.Status)
			f.requireClaims(coupon.ClaimAvailable, c)
		}
		require.Len(t, eventTypes(f.eventsFor(r.ID)), 2)
	}
}

// testDirectRedemption: a redemption written confirmed uses its claims at once.
func testDirectRedemption(t *testing.T, f *fixture) {
	b := f.createBatch()
	c := f.claims(b, 1, func(c *coupon.Claim) { c.UserID = "buyer" })[0]
	r := f.redemption("pos-1", "buyer", c)
	r.Status, r.ConfirmedAt, r.Reason = coupon.RedemptionConfirmed, at, "direct"
	r.Claims[0].Status = coupon.LineConfirmed
	f.reserve(r)
	f.requireClaims(coupon.ClaimUsed, c)
	got, err := f.s.GetRedemption(f.ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionConfirmed, got.Status)
	require.Equal(t, at, got.ConfirmedAt)

	// Its claim cannot serve another order.
	rr := f.redemption("pos-2", "buyer", c)
	_, err = f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: rr, Event: event("redemption.reserved", rr.ID), At: at})
	require.ErrorIs(t, err, store.ErrClaimUnavailable)
}

// testRefundRedemption: a refund returns one claim and voids another,
// guarded by the version read; a returned claim serves another order.
func testRefundRedemption(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 2, func(c *coupon.Claim) { c.UserID = "buyer" })
	r := f.reserve(f.redemption("order-1", "buyer", cs...))
	_, err := f.s.RefundRedemption(f.ctx, store.RefundRedemption{ID: f.id(), Version: 1, At: at})
	require.ErrorIs(t, err, store.ErrNotFound)
	confirmed, _, err := f.s.ConfirmRedemption(f.ctx, f.change(r.ID, "redemption.confirmed", at))
	require.NoError(t, err)

	refund := coupon.Refund{ID: "refund-1", Items: []coupon.RefundItem{{ID: "line-1", Quantity: 2}}, At: at.Add(time.Hour)}
	p := store.RefundRedemption{
		ID: r.ID, Version: confirmed.Version, Status: coupon.RedemptionRefunded, Refund: refund,
		Claims: []store.ClaimRefund{{ClaimID: cs[0].ID, Line: coupon.LineReturned}, {ClaimID: cs[1].ID, Line: coupon.LineRefunded}},
		At:     refund.At, Event: event("redemption.refunded", r.ID),
	}
	stale := p
	stale.Version--
	_, err = f.s.RefundRedemption(f.ctx, stale)
	require.ErrorIs(t, err, store.ErrStale)
	f.requireClaims(coupon.ClaimUsed, cs...)

	got, err := f.s.RefundRedemption(f.ctx, p)
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionRefunded, got.Status)
	require.Equal(t, []coupon.Refund{refund}, got.Refunds)
	require.Equal(t, refund.At, got.RefundedAt)
	require.Equal(t, confirmed.Version+1, got.Version)
	require.Equal(t, []coupon.LineStatus{coupon.LineReturned, coupon.LineRefunded}, lineStatuses(got))
	f.requireClaims(coupon.ClaimAvailable, cs[0])
	f.requireClaims(coupon.ClaimRefunded, cs[1])
	require.Equal(t, []string{"redemption.reserved", "redemption.confirmed", "redemption.refunded"}, eventTypes(f.eventsFor(r.ID)))

	_, err = f.s.RefundRedemption(f.ctx, p)
	require.ErrorIs(t, err, store.ErrStale, "the same refund at the old version again")

	// The returned claim serves a new order; the refunded one does not.
	f.reserve(f.redemption("order-2", "buyer", cs[0]))
	rr := f.redemption("order-3", "buyer", cs[1])
	_, err = f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: rr, Event: event("redemption.reserved", rr.ID), At: at})
	require.ErrorIs(t, err, store.ErrClaimUnavailable)
}

// testTombstone: a cancellation before any reservation blocks the order's
// reservation, and old tombstones are pruned.
func testTombstone(t *testing.T, f *fixture) {
	b := f.createBatch()
	c := f.claims(b, 1, func(c *coupon.Claim) { c.UserID = "buyer" })[0]
	tomb := &coupon.Redemption{ID: f.id(), OrderID: "order-1", Status: coupon.RedemptionCancelled, Reason: "message",
		Cart: coupon.Cart{Items: []coupon.CartItem{}}, ReservedAt: at, ExpiresAt: at, CancelledAt: at, UpdatedAt: at, NextCheckAt: at}
	got, err := f.s.InsertTombstone(f.ctx, tomb)
	require.NoError(t, err)
	require.True(t, got.Tombstone())
	read, err := f.s.GetRedemptionByOrder(f.ctx, "order-1")
	require.NoError(t, err)
	require.True(t, read.Tombstone())
	require.Empty(t, f.eventsFor(tomb.ID), "a tombstone is no transition")

	r := f.redemption("order-1", "buyer", c)
	existing, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: r, Event: event("redemption.reserved", r.ID), At: at})
	require.ErrorIs(t, err, store.ErrOrderExists)
	require.Equal(t, tomb.ID, existing.ID)
	f.requireClaims(coupon.ClaimAvailable, c)

	// A tombstone for an order that has a redemption: that one.
	live := f.reserve(f.redemption("order-2", "buyer", c))
	again := *tomb
	again.ID, again.OrderID = f.id(), "order-2"
	existing, err = f.s.InsertTombstone(f.ctx, &again)
	require.ErrorIs(t, err, store.ErrOrderExists)
	require.Equal(t, live.ID, existing.ID)

	newer := *tomb
	newer.ID, newer.OrderID, newer.UpdatedAt = f.id(), "order-3", at.Add(time.Hour)
	_, err = f.s.InsertTombstone(f.ctx, &newer)
	require.NoError(t, err)
	n, err := f.s.DeleteTombstones(f.ctx, at.Add(time.Minute), 100)
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the old tombstone; never a redemption")
	_, err = f.s.GetRedemptionByOrder(f.ctx, "order-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	for _, order := range []string{"order-2", "order-3"} {
		_, err = f.s.GetRedemptionByOrder(f.ctx, order)
		require.NoError(t, err)
	}
}

// testDueAndReviews: the reconciler's list, its bookkeeping and the review list.
func testDueAndReviews(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.claims(b, 4, func(c *coupon.Claim) { c.UserID = "buyer" })
	var rs []*coupon.Redemption
	for i, c := range cs {
		r := f.redemption(fmt.Sprint("order-", i), "buyer", c)
		r.NextCheckAt = at.Add(time.Duration(4-i) * time.Minute) // later orders are due sooner
		rs = append(rs, f.reserve(r))
	}
	_, _, err := f.s.ConfirmRedemption(f.ctx, f.change(rs[3].ID, "redemption.confirmed", at))
	require.NoError(t, err)

	due, err := f.s.DueRedemptions(f.ctx, at.Add(3*time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []string{rs[2].ID, rs[1].ID}, ids(due, func(r *coupon.Redemption) string { return r.ID }),
		"reserved, due, soonest first; a confirmed one is not due")
	require.Len(t, due[0].Claims, 1)

	next := at.Add(time.Hour)
	got, err := f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[2].ID, Status: coupon.RedemptionReserved,
		Attempts: 1, NextCheckAt: next, At: at})
	require.NoError(t, err)
	require.Equal(t, 1, got.CheckAttempts)
	require.Equal(t, next, got.NextCheckAt)
	require.Nil(t, got.Review)

	reviewAt := at.Add(2 * time.Minute)
	got, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[1].ID, Status: coupon.RedemptionReserved,
		Attempts: 5, NextCheckAt: next, Review: "order system unreachable", At: reviewAt})
	require.NoError(t, err)
	require.Equal(t, &coupon.Review{Reason: "order system unreachable", Since: reviewAt, Attempts: 5}, got.Review)
	// A second review keeps its first time.
	got, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[1].ID, Status: coupon.RedemptionReserved,
		Attempts: 6, NextCheckAt: next, Review: "still unreachable", At: reviewAt.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, reviewAt, got.Review.Since)
	require.Equal(t, "still unreachable", got.Review.Reason)

	due, err = f.s.DueRedemptions(f.ctx, next.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{rs[0].ID, rs[2].ID}, ids(due, func(r *coupon.Redemption) string { return r.ID }),
		"under review: not due")

	_, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[0].ID, Status: coupon.RedemptionReserved,
		Review: "paid after cancel", At: at})
	require.NoError(t, err)
	reviews, err := f.s.ListReviews(f.ctx, store.ReviewFilter{})
	require.NoError(t, err)
	require.Equal(t, []string{rs[0].ID, rs[1].ID}, ids(reviews, func(r *coupon.Redemption) string { return r.ID }))
	stuck, err := f.s.StuckReservations(f.ctx, at)
	require.NoError(t, err)
	require.EqualValues(t, 2, stuck, "the two under review")
	stuck, err = f.s.StuckReservations(f.ctx, at.Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 3, stuck, "and, past its timeout, the third still reserved; not the confirmed one")
	page, err := f.s.ListReviews(f.ctx, store.ReviewFilter{AfterID: rs[0].ID, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, []string{rs[1].ID}, ids(page, func(r *coupon.Redemption) string { return r.ID }))

	// Resolving takes it off the list: clearing, or a confirmation.
	_, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[0].ID, Status: coupon.RedemptionReserved, ClearReview: true, At: at})
	require.NoError(t, err)
	confirmed, _, err := f.s.ConfirmRedemption(f.ctx, f.change(rs[1].ID, "redemption.confirmed", at))
	require.NoError(t, err)
	require.Nil(t, confirmed.Review)
	reviews, err = f.s.ListReviews(f.ctx, store.ReviewFilter{})
	require.NoError(t, err)
	require.Empty(t, reviews)
	stuck, err = f.s.StuckReservations(f.ctx, at)
	require.NoError(t, err)
	require.Zero(t, stuck)

	// The status guard.
	_, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: rs[3].ID, Status: coupon.RedemptionReserved, Attempts: 1, At: at})
	require.ErrorIs(t, err, store.ErrRedemptionStatus)
	_, err = f.s.NoteRedemptionCheck(f.ctx, store.RedemptionCheck{ID: f.id(), Status: coupon.RedemptionReserved, At: at})
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testSweepClaims: chunks of a batch's claims: available claims past their
// validity expire with an event, those ending within the notice window get
// claim.expiring, others are left alone; the cursor walks the batch once.
func testSweepClaims(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 50 })
	other := f.createBatch()
	now := at.Add(30 * 24 * time.Hour)
	var pastDue, soon, later, locked []*coupon.Claim
	codes := f.addCodes(b, 12)
	var writes []store.ClaimWrite
	for i, code := range codes {
		w := f.claim(b, code, fmt.Sprintf("user-%02d", i), 1, "")
		c := w.Claim
		switch i % 4 {
		case 0:
			c.ValidTo = now.Add(-time.Hour)
			pastDue = append(pastDue, c)
		case 1:
			c.ValidTo = now.Add(time.Hour)
			soon = append(soon, c)
		case 2:
			c.ValidTo = now.Add(48 * time.Hour)
			later = append(later, c)
		case 3:
			c.ValidTo = now.Add(-time.Hour)
			locked = append(locked, c)
		}
		writes = append(writes, w)
	}
	f.insert(writes...)
	for i, c := range locked {
		r := f.redemption(fmt.Sprint("order-", i), c.UserID, c)
		f.reserve(r)
	}
	untouched := f.claims(other, 1, func(c *coupon.Claim) { c.ValidTo = now.Add(-time.Hour) })

	expired := func(c *coupon.Claim) store.Event { return event("claim.expired", c.ID) }
	expiring := func(c *coupon.Claim) store.Event { return event("claim.expiring", c.ID) }
	p := store.SweepClaims{BatchID: b.ID, Now: now, NoticeFrom: time.Time{}, NoticeTo: now.Add(24 * time.Hour),
		Limit: 5, Expired: expired, Expiring: expiring, NextAt: now.Add(time.Minute)}
	var total store.SweepResult
	chunks := 0
	for {
		res, err := f.s.SweepClaims(f.ctx, p)
		require.NoError(t, err)
		chunks++
		total.Scanned += res.Scanned
		total.Expired += res.Expired
		total.Noticed += res.Noticed
		if res.Done {
			break
		}
		require.Equal(t, 5, res.Scanned)
		p.AfterUser, p.AfterSeq = res.LastUser, res.LastSeq
		require.Less(t, chunks, 10)
	}
	require.Equal(t, 3, chunks)
	require.Equal(t, store.SweepResult{Scanned: 12, Expired: 3, Noticed: 3}, store.SweepResult{Scanned: total.Scanned, Expired: total.Expired, Noticed: total.Noticed})
	f.requireClaims(coupon.ClaimExpired, pastDue...)
	f.requireClaims(coupon.ClaimAvailable, soon...)
	f.requireClaims(coupon.ClaimAvailable, later...)
	f.requireClaims(coupon.ClaimLocked, locked...)
	f.requireClaims(coupon.ClaimAvailable, untouched...)
	for _, c := range pastDue {
		require.Equal(t, []string{"claim.expired"}, eventTypes(f.eventsFor(c.ID)))
	}
	for _, c := range soon {
		require.Equal(t, []string{"claim.expiring"}, eventTypes(f.eventsFor(c.ID)))
	}
	for _, c := range append(later, locked...) {
		require.Empty(t, eventTypes(f.eventsFor(c.ID)))
	}

	// A second pass over the same window notices nothing again and finds
	// nothing to expire.
	p.AfterUser, p.AfterSeq, p.Limit = "", 0, 100
	p.NoticeFrom = p.NoticeTo
	p.NoticeTo = now.Add(25 * time.Hour)
	res, err := f.s.SweepClaims(f.ctx, p)
	require.NoError(t, err)
	require.Equal(t, store.SweepResult{Scanned: 12, Done: true, LastUser: "user-11", LastSeq: 1}, res)
}

// testExpiryBatches: batches whose sweep is due, with the state a pass saves.
func testExpiryBatches(t *testing.T, f *fixture) {
	draft := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusDraft })
	active := f.createBatch()
	ended := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusEnded })
	f.claims(active, 3)
	batchIDs := func(es []store.ExpiryBatch) []string {
		return ids(es, func(e store.ExpiryBatch) string { return e.Batch.ID })
	}
	es, err := f.s.ExpiryBatches(f.ctx, at, 10)
	require.NoError(t, err)
	require.Equal(t, []string{active.ID, ended.ID}, batchIDs(es), "no drafts")
	require.Equal(t, store.ExpiryState{}, es[0].State)
	require.Equal(t, normBatch(active).Validity, es[0].Batch.Validity)

	nop := func(c *coupon.Claim) store.Event { return event("x", c.ID) }
	// A pass in progress is listed with its window and cursor.
	res, err := f.s.SweepClaims(f.ctx, store.SweepClaims{BatchID: active.ID, Now: at, NoticeFrom: at, NoticeTo: at.Add(time.Hour),
		Limit: 2, Expired: nop, Expiring: nop})
	require.NoError(t, err)
	require.False(t, res.Done)
	es, err = f.s.ExpiryBatches(f.ctx, at, 10)
	require.NoError(t, err)
	require.Equal(t, store.ExpiryState{InPass: true, PassFrom: at, PassTo: at.Add(time.Hour), CursorUser: res.LastUser, CursorSeq: res.LastSeq}, es[0].State)

	// The pass ends: next at a later time.
	res, err = f.s.SweepClaims(f.ctx, store.SweepClaims{BatchID: active.ID, Now: at, NoticeFrom: at, NoticeTo: at.Add(time.Hour),
		AfterUser: res.LastUser, AfterSeq: res.LastSeq, Limit: 2, Expired: nop, Expiring: nop, NextAt: at.Add(time.Hour)})
	require.NoError(t, err)
	require.True(t, res.Done)
	es, err = f.s.ExpiryBatches(f.ctx, at, 10)
	require.NoError(t, err)
	require.Equal(t, []string{ended.ID}, batchIDs(es), "not due before its next pass")
	es, err = f.s.ExpiryBatches(f.ctx, at.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{active.ID, ended.ID}, batchIDs(es))
	require.Equal(t, store.ExpiryState{NextAt: at.Add(time.Hour), NoticedTo: at.Add(time.Hour)}, es[0].State)

	// Scheduling moves the next pass and keeps the rest of the state.
	require.NoError(t, f.s.ScheduleExpiry(f.ctx, active.ID, at.Add(2*time.Hour)))
	es, err = f.s.ExpiryBatches(f.ctx, at.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{ended.ID}, batchIDs(es))
	es, err = f.s.ExpiryBatches(f.ctx, at.Add(2*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, store.ExpiryState{NextAt: at.Add(2 * time.Hour), NoticedTo: at.Add(time.Hour)}, es[0].State)
	require.NoError(t, f.s.ScheduleExpiry(f.ctx, draft.ID, at), "a batch without state gets one")

	// A finished batch is never listed again.
	_, err = f.s.SweepClaims(f.ctx, store.SweepClaims{BatchID: ended.ID, Now: at, Limit: 10, Expired: nop, Expiring: nop, Finished: true})
	require.NoError(t, err)
	es, err = f.s.ExpiryBatches(f.ctx, at.Add(1000*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{active.ID}, batchIDs(es))
}
