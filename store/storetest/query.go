package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// queryTests are the subtests of the query part of the contract.
var queryTests = []struct {
	name string
	fn   func(t *testing.T, f *fixture)
}{
	{"Query/SearchClaims", testSearchClaims},
	{"Query/SearchClaimsPages", testSearchClaimsPages},
	{"Query/SearchCodes", testSearchCodes},
	{"Query/SearchRedemptions", testSearchRedemptions},
	{"Query/CountUserClaims", testCountUserClaims},
	{"Query/StatsCountOnce", testStatsCountOnce},
	{"Query/StatsMerchant", testStatsMerchant},
	{"Query/StockOutOnce", testStockOutOnce},
	{"Query/BatchTagged", testBatchTagged},
}

// searchClaims stores claims of b by users s0, s1, … made a minute apart
// from base, ids made at their claim time as the service makes them.
func (f *fixture) searchClaims(b *coupon.Batch, n int, mods ...func(i int, c *coupon.Claim)) []*coupon.Claim {
	f.t.Helper()
	cs := f.addCodes(b, n)
	out := make([]*coupon.Claim, n)
	writes := make([]store.ClaimWrite, n)
	for i, code := range cs {
		w := f.claim(b, code, fmt.Sprint("s", i), 1, "")
		c := w.Claim
		c.ClaimedAt = base.Add(time.Duration(i) * time.Minute)
		c.UpdatedAt, c.ValidFrom, c.ValidTo = c.ClaimedAt, c.ClaimedAt, c.ClaimedAt.Add(24*time.Hour)
		c.ID = coupon.NewID(c.ClaimedAt)
		w.Event.AggregateID = c.ID
		for _, m := range mods {
			m(i, c)
		}
		writes[i], out[i] = w, c
	}
	f.insert(writes...)
	return out
}

func (f *fixture) search(q store.ClaimSearch) []string {
	f.t.Helper()
	got, err := f.s.SearchClaims(f.ctx, q)
	require.NoError(f.t, err)
	return ids(got, claimID)
}

func reversed(cs []*coupon.Claim) []string {
	out := ids(cs, claimID)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func testSearchClaims(t *testing.T, f *fixture) {
	b1 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-a" })
	b2 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-b" })
	cs1 := f.searchClaims(b1, 6, func(i int, c *coupon.Claim) {
		c.MerchantID = "m-a"
		if i%2 == 0 {
			c.Channel, c.Phone = "push", "+8613800000000"
		}
	})
	cs2 := f.searchClaims(b2, 3, func(i int, c *coupon.Claim) { c.MerchantID = "m-b"; c.UserID = fmt.Sprint("t", i) })

	all := f.search(store.ClaimSearch{Now: base})
	require.Len(t, all, 9)
	require.Equal(t, reversed(cs1), f.search(store.ClaimSearch{BatchID: b1.ID, Now: base}), "newest first")
	require.Equal(t, reversed(cs2), f.search(store.ClaimSearch{MerchantID: "m-b", Now: base}))
	require.Equal(t, []string{cs1[4].ID, cs1[2].ID, cs1[0].ID}, f.search(store.ClaimSearch{Channel: "push", Now: base}))
	require.Equal(t, []string{cs1[4].ID, cs1[2].ID, cs1[0].ID}, f.search(store.ClaimSearch{Phone: "+8613800000000", BatchID: b1.ID}))
	require.Equal(t, []string{cs1[3].ID}, f.search(store.ClaimSearch{UserID: "s3", MerchantID: "m-a"}))
	require.Equal(t, []string{cs2[1].ID}, f.search(store.ClaimSearch{Code: cs2[1].Code}))
	require.Empty(t, f.search(store.ClaimSearch{Code: cs2[1].Code, BatchID: b1.ID}), "every filter applies")

	// Claim-time range: [minute 1, minute 3).
	require.Equal(t, []string{cs1[2].ID, cs1[1].ID}, f.search(store.ClaimSearch{BatchID: b1.ID,
		ClaimedFrom: base.Add(time.Minute), ClaimedTo: base.Add(3 * time.Minute)}))
	require.Equal(t, []string{cs1[5].ID}, f.search(store.ClaimSearch{BatchID: b1.ID, ClaimedFrom: base.Add(5 * time.Minute)}))
	// Validity range.
	require.Equal(t, []string{cs1[1].ID, cs1[0].ID}, f.search(store.ClaimSearch{BatchID: b1.ID,
		ValidToTo: base.Add(24*time.Hour + 2*time.Minute)}))

	// Effective status: at minute 24h+2.5 the first three have expired.
	later := base.Add(24*time.Hour + 150*time.Second)
	require.Equal(t, []string{cs1[2].ID, cs1[1].ID, cs1[0].ID}, f.search(store.ClaimSearch{BatchID: b1.ID, Status: coupon.ClaimExpired, Now: later}))
	require.Equal(t, []string{cs1[5].ID, cs1[4].ID, cs1[3].ID}, f.search(store.ClaimSearch{BatchID: b1.ID, Status: coupon.ClaimAvailable, Now: later}))
	require.Empty(t, f.search(store.ClaimSearch{Status: coupon.ClaimUsed}))
	// A status or a channel with no filter of many values (PostgreSQL reads
	// those from their own indexes): the same answers.
	require.Equal(t, []string{cs1[5].ID, cs1[4].ID, cs1[3].ID}, f.search(store.ClaimSearch{Status: coupon.ClaimAvailable, Now: later}))
	expired := append(ids(cs2, claimID), cs1[0].ID, cs1[1].ID, cs1[2].ID)
	slices.Sort(expired)
	slices.Reverse(expired)
	require.Equal(t, expired, f.search(store.ClaimSearch{Status: coupon.ClaimExpired, Now: later}))
	require.Equal(t, []string{cs1[4].ID}, f.search(store.ClaimSearch{Channel: "push", Status: coupon.ClaimAvailable, Now: later}))
	require.Equal(t, []string{cs1[2].ID, cs1[0].ID}, f.search(store.ClaimSearch{Channel: "push", BeforeID: cs1[4].ID, Now: base}))
	require.Equal(t, []string{cs1[2].ID}, f.search(store.ClaimSearch{Channel: "push", ClaimedFrom: base.Add(time.Minute), ClaimedTo: base.Add(3 * time.Minute)}))
}

func testSearchClaimsPages(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.searchClaims(b, 7)
	var got []string
	before := ""
	for range 10 {
		page, err := f.s.SearchClaims(f.ctx, store.ClaimSearch{BatchID: b.ID, BeforeID: before, Limit: 3})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 3)
		got = append(got, ids(page, claimID)...)
		if len(page) < 3 {
			break
		}
		before = page[len(page)-1].ID
	}
	require.Equal(t, reversed(cs), got)
}

func testSearchCodes(t *testing.T, f *fixture) {
	b1 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-c" })
	b2 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-d" })
	claimed := f.searchClaims(b1, 2)
	free := f.addCodes(b1, 3)
	f.addCodes(b2, 2)

	get := func(q store.CodeSearch) []*coupon.Code {
		t.Helper()
		got, err := f.s.SearchCodes(f.ctx, q)
		require.NoError(t, err)
		return got
	}
	all := get(store.CodeSearch{BatchID: b1.ID})
	require.Len(t, all, 5)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].Code, all[i].Code, "by code")
	}
	cl := get(store.CodeSearch{BatchID: b1.ID, Status: coupon.CodeClaimed})
	require.ElementsMatch(t, []string{claimed[0].Code, claimed[1].Code}, ids(cl, func(c *coupon.Code) string { return c.Code }))
	for _, c := range cl {
		require.NotEmpty(t, c.ClaimID)
		require.NotNil(t, c.IssuedAt)
	}
	un := get(store.CodeSearch{MerchantID: "m-c", Status: coupon.CodeUnclaimed})
	require.ElementsMatch(t, ids(free, func(c coupon.Code) string { return c.Code }), ids(un, func(c *coupon.Code) string { return c.Code }))
	require.Len(t, get(store.CodeSearch{MerchantID: "m-d"}), 2)
	require.Len(t, get(store.CodeSearch{Code: free[0].Code}), 1)
	page := get(store.CodeSearch{BatchID: b1.ID, AfterCode: all[2].Code, Limit: 1})
	require.Equal(t, []string{all[3].Code}, ids(page, func(c *coupon.Code) string { return c.Code }))
}

func testSearchRedemptions(t *testing.T, f *fixture) {
	b1 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-r" })
	b2 := f.createBatch()
	cs := f.claims(b1, 2)
	other := f.claims(b2, 1)
	r1 := f.reserve(f.redemption("o1", "u0", cs[0]))
	r2 := f.reserve(f.redemption("o2", "u1", cs[1]))
	r3 := f.reserve(f.redemption("o3", "u0", other[0]))
	_, _, err := f.s.ConfirmRedemption(f.ctx, f.change(r2.ID, "redemption.confirmed", at))
	require.NoError(t, err)

	get := func(q store.RedemptionSearch) []string {
		t.Helper()
		got, err := f.s.SearchRedemptions(f.ctx, q)
		require.NoError(t, err)
		for _, r := range got {
			require.NotEmpty(t, r.Claims, "with their claims")
		}
		return ids(got, func(r *coupon.Redemption) string { return r.ID })
	}
	require.Equal(t, []string{r3.ID, r2.ID, r1.ID}, get(store.RedemptionSearch{}))
	require.Equal(t, []string{r3.ID, r1.ID}, get(store.RedemptionSearch{UserID: "u0"}))
	require.Equal(t, []string{r2.ID, r1.ID}, get(store.RedemptionSearch{BatchID: b1.ID}))
	require.Equal(t, []string{r2.ID, r1.ID}, get(store.RedemptionSearch{MerchantID: "m-r"}))
	require.Equal(t, []string{r2.ID}, get(store.RedemptionSearch{Status: coupon.RedemptionConfirmed}))
	require.Equal(t, []string{r3.ID}, get(store.RedemptionSearch{OrderID: "o3"}))
	require.Equal(t, []string{r1.ID}, get(store.RedemptionSearch{BeforeID: r2.ID}))
}

func testCountUserClaims(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.searchClaims(b, 4, func(i int, c *coupon.Claim) { c.UserID = "counted"; c.UserSeq = i + 1; c.UserLimit = 4 })
	// At minute 3 + 1s: every claim valid; those ending before 24h+2m are soon.
	now := base.Add(3*time.Minute + time.Second)
	avail, soon, err := f.s.CountUserClaims(f.ctx, "counted", now, base.Add(24*time.Hour+2*time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(4), avail)
	require.Equal(t, int64(3), soon, "valid_to at 24h, 24h+1m and 24h+2m")
	avail, soon, err = f.s.CountUserClaims(f.ctx, "counted", base.Add(24*time.Hour+90*time.Second), base.Add(48*time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(2), avail, "two have expired")
	require.Equal(t, int64(2), soon)
	_ = cs
	avail, soon, err = f.s.CountUserClaims(f.ctx, "nobody", now, now)
	require.NoError(t, err)
	require.Zero(t, avail+soon)
}

func testStatsCountOnce(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 3 })
	cs := f.searchClaims(b, 2, func(_ int, c *coupon.Claim) { c.Platform, c.Channel = "android", "feed" })
	hour := base.Add(90 * time.Minute)
	claimed := func(id int64, platform string) store.StatsEvent {
		return store.StatsEvent{ID: id, Deltas: []store.StatsDelta{{BatchID: b.ID, Hour: hour, Platform: platform, Channel: "app",
			StatsCounts: store.StatsCounts{Claimed: 1, ClaimedAmount: 500}}}}
	}
	soldOut, err := f.s.ApplyStats(f.ctx, []store.StatsEvent{claimed(1, "ios"), claimed(2, "ios"), claimed(1, "ios")})
	require.NoError(t, err)
	require.Empty(t, soldOut)
	soldOut, err = f.s.ApplyStats(f.ctx, []store.StatsEvent{claimed(2, "ios"), claimed(1, "ios")})
	require.NoError(t, err, "a redelivered batch of events")
	require.Empty(t, soldOut)

	// A redemption names claims; the row is the claim's batch, platform, channel.
	redeem := store.StatsEvent{ID: 3, Deltas: []store.StatsDelta{
		{ClaimID: cs[0].ID, Hour: hour, StatsCounts: store.StatsCounts{Redeemed: 1, Discount: 100, DiscountPlatform: 60, DiscountMerchant: 40}},
		{ClaimID: "unknown-claim", Hour: hour, StatsCounts: store.StatsCounts{Redeemed: 1}},
	}}
	refund := func(id int64) store.StatsEvent {
		return store.StatsEvent{ID: id, Deltas: []store.StatsDelta{{ClaimID: cs[0].ID, Hour: hour, Key: "refund:" + cs[0].ID,
			StatsCounts: store.StatsCounts{Refunded: 1, RefundedDiscount: 100}}}}
	}
	_, err = f.s.ApplyStats(f.ctx, []store.StatsEvent{redeem, refund(4), redeem, refund(5)})
	require.NoError(t, err)
	soldOut, err = f.s.ApplyStats(f.ctx, []store.StatsEvent{claimed(6, "web"), refund(4)})
	require.NoError(t, err)
	require.Equal(t, []string{b.ID}, soldOut, "the third claim counted reaches the total")

	rows, err := f.s.BatchStats(f.ctx, b.ID)
	require.NoError(t, err)
	var total store.StatsCounts
	byPlatform := map[string]store.StatsCounts{}
	for _, r := range rows {
		require.Equal(t, b.ID, r.BatchID)
		require.True(t, hour.Truncate(time.Hour).Equal(r.Hour), "truncated to the hour: %s", r.Hour)
		total.Add(r.StatsCounts)
		c := byPlatform[r.Platform+"/"+r.Channel]
		c.Add(r.StatsCounts)
		byPlatform[r.Platform+"/"+r.Channel] = c
	}
	require.Equal(t, store.StatsCounts{Claimed: 3, ClaimedAmount: 1500, Redeemed: 1, Discount: 100, DiscountPlatform: 60,
		DiscountMerchant: 40, Refunded: 1, RefundedDiscount: 100}, total)
	require.Equal(t, int64(2), byPlatform["ios/app"].Claimed)
	require.Equal(t, int64(1), byPlatform["web/app"].Claimed)
	require.Equal(t, int64(1), byPlatform["android/feed"].Redeemed)

	n, err := f.s.PruneStatsEvents(f.ctx, time.Now().Add(time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 6, n, "the events' records; the once-only keys stay")
	_, err = f.s.ApplyStats(f.ctx, []store.StatsEvent{refund(7)})
	require.NoError(t, err)
	require.Equal(t, int64(1), statsTotal(t, f, b.ID).Refunded)

	// Deltas of two claims of one row, in one event and in two, add up.
	expired := func(id int64, claims ...*coupon.Claim) store.StatsEvent {
		ev := store.StatsEvent{ID: id}
		for _, c := range claims {
			ev.Deltas = append(ev.Deltas, store.StatsDelta{ClaimID: c.ID, Hour: hour, StatsCounts: store.StatsCounts{Expired: 1}})
		}
		return ev
	}
	_, err = f.s.ApplyStats(f.ctx, []store.StatsEvent{expired(8, cs[0], cs[1]), expired(9, cs[1]), expired(8, cs[0], cs[1])})
	require.NoError(t, err)
	require.Equal(t, int64(3), statsTotal(t, f, b.ID).Expired)
}

// statsTotal sums the batch's statistics rows.
func statsTotal(t *testing.T, f *fixture, batchID string) store.StatsCounts {
	t.Helper()
	rows, err := f.s.BatchStats(f.ctx, batchID)
	require.NoError(t, err)
	var total store.StatsCounts
	for _, r := range rows {
		total.Add(r.StatsCounts)
	}
	return total
}

func testStatsMerchant(t *testing.T, f *fixture) {
	b1 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-s" })
	b2 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-s" })
	b3 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-other" })
	var evs []store.StatsEvent
	for i, b := range []*coupon.Batch{b1, b1, b2, b3} {
		evs = append(evs, store.StatsEvent{ID: int64(100 + i), Deltas: []store.StatsDelta{{BatchID: b.ID, Hour: base.Add(time.Duration(i) * time.Hour),
			Platform: "ios", StatsCounts: store.StatsCounts{Claimed: 1, Expired: int64(i)}}}})
	}
	_, err := f.s.ApplyStats(f.ctx, evs)
	require.NoError(t, err)
	rows, err := f.s.MerchantStats(f.ctx, "m-s")
	require.NoError(t, err)
	require.Len(t, rows, 2)
	got := map[string]store.StatsCounts{}
	for _, r := range rows {
		require.True(t, r.Hour.IsZero())
		got[r.BatchID] = r.StatsCounts
	}
	require.Equal(t, store.StatsCounts{Claimed: 2, Expired: 1}, got[b1.ID])
	require.Equal(t, store.StatsCounts{Claimed: 1, Expired: 2}, got[b2.ID])
}

func testStockOutOnce(t *testing.T, f *fixture) {
	b := f.createBatch()
	flags, err := f.s.BatchFlags(f.ctx, b.ID)
	require.NoError(t, err)
	require.Zero(t, flags)
	ok, err := f.s.MarkStockOut(f.ctx, b.ID, at, event("batch.stock_out", b.ID))
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = f.s.MarkStockOut(f.ctx, b.ID, at.Add(time.Second), event("batch.stock_out", b.ID))
	require.NoError(t, err)
	require.False(t, ok, "once")
	require.Len(t, f.eventsFor(b.ID), 1)
	flags, err = f.s.BatchFlags(f.ctx, b.ID)
	require.NoError(t, err)
	require.True(t, at.Equal(flags.StockOutAt))
	_, err = f.s.MarkStockOut(f.ctx, f.id(), at, event("batch.stock_out", "x"))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testBatchTagged(t *testing.T, f *fixture) {
	b1, b2 := f.createBatch(), f.createBatch()
	set := func(b *coupon.Batch, tagged bool) bool {
		t.Helper()
		ok, err := f.s.SetBatchTagged(f.ctx, b.ID, tagged, at, event("product.tags_changed", b.ID))
		require.NoError(t, err)
		return ok
	}
	require.False(t, set(b1, false), "untagged from the start: no change")
	require.True(t, set(b1, true))
	require.False(t, set(b1, true))
	require.True(t, set(b2, true))
	tagged, err := f.s.TaggedBatches(f.ctx, "", 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{b1.ID, b2.ID}, tagged)
	require.True(t, set(b1, false))
	require.False(t, set(b1, false))
	require.Len(t, f.eventsFor(b1.ID), 2, "one event per change")
	tagged, err = f.s.TaggedBatches(f.ctx, "", 10)
	require.NoError(t, err)
	require.Equal(t, []string{b2.ID}, tagged)
	flags, err := f.s.BatchFlags(f.ctx, b2.ID)
	require.NoError(t, err)
	require.True(t, flags.Tagged)
	_, err = f.s.SetBatchTagged(f.ctx, f.id(), true, at, store.Event{})
	require.ErrorIs(t, err, store.ErrNotFound)
}
