package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var archiveTests = []struct {
	name string
	fn   func(t *testing.T, f *fixture)
}{
	{"Archive/Move", testArchiveMove},
	{"Archive/RedeemedClaims", testArchiveRedeemed},
	{"Archive/DuringClaims", testArchiveDuringClaims},
	{"Archive/HistoryPages", testArchiveHistoryPages},
	{"Archive/Prune", testArchivePrune},
	{"Archive/Search", testArchiveSearch},
	{"Archive/SearchPages", testArchiveSearchPages},
	{"Archive/SearchWhileArchiving", testArchiveSearchWhileArchiving},
	{"Archive/Redemptions", testArchiveRedemptions},
	{"Outbox/Prune", testOutboxPrune},
}

// later is after every fixture claim: archiving before it takes every
// settled fixture claim.
var later = base.Add(1000 * time.Hour)

func archiver(t *testing.T, f *fixture) store.ArchiveStore {
	a, ok := f.s.(store.ArchiveStore)
	if !ok {
		t.Skip("the store has no archive")
	}
	return a
}

// archiveAll archives in chunks of limit until a chunk comes back short, and
// returns how many claims moved and in how many chunks.
func archiveAll(t *testing.T, f *fixture, before time.Time, limit int) (moved, chunks int) {
	t.Helper()
	a := archiver(t, f)
	for {
		res, err := a.ArchiveClaims(f.ctx, store.ArchiveClaims{Before: before, At: later, Limit: limit})
		require.NoError(t, err)
		moved += res.Moved
		chunks++
		if res.Moved < limit {
			return moved, chunks
		}
	}
}

func history(t *testing.T, f *fixture, user string, limit int, afterTo time.Time, afterID string) []*coupon.Claim {
	t.Helper()
	cs, err := archiver(t, f).ListUserClaimHistory(f.ctx, store.UserClaimFilter{
		UserID: user, Now: later, Limit: limit, AfterValidTo: afterTo, AfterID: afterID})
	require.NoError(t, err)
	return cs
}

func claimIDs(cs []*coupon.Claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// testArchiveMove: only settled, old claims move, in chunks; every read
// that must see every claim ever made still sees the archived ones.
func testArchiveMove(t *testing.T, f *fixture) {
	archiver(t, f)
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 10 })
	cs := f.addCodes(b, 12)
	statuses := []coupon.ClaimStatus{
		coupon.ClaimUsed, coupon.ClaimUsed, coupon.ClaimUsed, coupon.ClaimExpired, coupon.ClaimExpired,
		coupon.ClaimRefunded, coupon.ClaimUsed, coupon.ClaimAvailable, coupon.ClaimAvailable, coupon.ClaimLocked,
	}
	var writes []store.ClaimWrite
	for i, st := range statuses {
		w := f.claim(b, cs[i], "alice", i+1, fmt.Sprint("key-", i))
		w.Claim.Status, w.Claim.Phone = st, "+8613800000000"
		if i == 6 { // used, but only lately: kept hot
			w.Claim.UpdatedAt = later.Add(time.Hour)
		}
		writes = append(writes, w)
	}
	f.insert(writes...)

	moved, chunks := archiveAll(t, f, later, 2)
	require.Equal(t, 6, moved)
	require.Equal(t, 4, chunks, "2+2+2, then an empty chunk")
	again, _ := archiveAll(t, f, later, 2)
	require.Zero(t, again, "archival is resumable: a finished run moves nothing more")

	hot, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "alice", Now: later})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{writes[6].Claim.ID, writes[7].Claim.ID, writes[8].Claim.ID, writes[9].Claim.ID}, claimIDs(hot))
	all := history(t, f, "alice", 100, time.Time{}, "")
	require.Len(t, all, len(statuses))
	for i, c := range all {
		if i > 0 {
			require.Less(t, all[i-1].ID, c.ID, "history in (valid_to, id) order")
		}
	}

	n, err := f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, len(statuses), n)
	for i := range 6 {
		got, err := f.s.GetClaim(f.ctx, writes[i].Claim.ID)
		require.NoError(t, err)
		require.Equal(t, normClaim(writes[i].Claim), got)
		got, err = f.s.GetClaimByKey(f.ctx, b.ID, "alice", writes[i].Claim.IdempotencyKey)
		require.NoError(t, err, "an idempotent replay finds the archived claim")
		require.Equal(t, writes[i].Claim.ID, got.ID)
		code, err := f.s.GetCode(f.ctx, cs[i].Code)
		require.NoError(t, err)
		require.Equal(t, coupon.CodeClaimed, code.Status)
		require.Equal(t, writes[i].Claim.ID, code.ClaimID)
	}
	claimed, err := f.s.ClaimedCodes(f.ctx, []string{cs[0].Code, cs[5].Code, cs[9].Code, cs[11].Code})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{cs[0].Code, cs[5].Code, cs[9].Code}, claimed)
	pool, err := f.s.UnclaimedCodes(f.ctx, b.ID, 0, 12)
	require.NoError(t, err)
	require.Equal(t, []store.PoolCode{{Code: cs[10].Code, Amount: cs[10].Amount}, {Code: cs[11].Code, Amount: cs[11].Amount}}, pool)

	snap, err := f.s.Snapshot(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, pool, snap.Pool, "an archived code never goes back to the pool")
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, snap.Users["alice"], "archived sequence numbers stay taken")
	require.Len(t, snap.Keys, len(statuses), "archived idempotency keys are remembered")

	if ac, ok := f.s.(store.AccessStore); ok {
		counts, err := ac.IdentityCounts(f.ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, len(statuses), counts["phone:+8613800000000"], "a phone's archived claims count toward its limit")
	}
	if au, ok := f.s.(store.Auditor); ok {
		vs, err := au.Audit(f.ctx, store.AuditParams{Now: later})
		require.NoError(t, err)
		for _, v := range vs {
			require.NotContains(t, []string{store.InvariantOverTotal, store.InvariantOverUserLimit, store.InvariantCodeTwice, store.InvariantCodeNotInBatch}, v.Invariant, "%+v", v)
		}
	}

	// The hot table still refuses what it refused: a sequence number or key
	// of a hot claim.
	w := f.claim(b, cs[10], "alice", 8, "")
	requireOutcome(t, f.s.InsertClaims(f.ctx, []store.ClaimWrite{w})[0], store.ErrSeqTaken)
}

// testArchiveRedeemed: a claim used by a confirmed redemption is archived
// and the redemption still reads whole; a claim a reservation holds stays.
func testArchiveRedeemed(t *testing.T, f *fixture) {
	archiver(t, f)
	b := f.createBatch()
	cs := f.claims(b, 2, func(c *coupon.Claim) { c.UserID = "bob" })
	direct := f.reserve(f.redemption("order-1", "bob", cs[0]))
	_, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(direct.ID, "redemption.confirmed", at))
	require.NoError(t, err)
	require.True(t, changed)
	held := f.reserve(f.redemption("order-2", "bob", cs[1]))
	f.requireClaims(coupon.ClaimUsed, cs[0])
	f.requireClaims(coupon.ClaimLocked, cs[1])

	moved, _ := archiveAll(t, f, later, 10)
	require.Equal(t, 1, moved)
	hot, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "bob", Now: at})
	require.NoError(t, err)
	require.Equal(t, []string{cs[1].ID}, claimIDs(hot))
	r, err := f.s.GetRedemption(f.ctx, direct.ID)
	require.NoError(t, err)
	require.Len(t, r.Claims, 1)
	require.Equal(t, cs[0].ID, r.Claims[0].ClaimID)
	f.requireClaims(coupon.ClaimUsed, cs[0])
	_, err = f.s.GetRedemption(f.ctx, held.ID)
	require.NoError(t, err)
}

// testArchiveDuringClaims: archival runs while claims are written; no claim
// is lost or duplicated, every history lists each of its user's claims once,
// and the snapshot a rebuild reads keeps every archived code out of the pool
// and every archived sequence number taken.
func testArchiveDuringClaims(t *testing.T, f *fixture) {
	a := archiver(t, f)
	const (
		writers  = 4
		rounds   = 15
		perRound = 5
		users    = 10
		limit    = writers * rounds * perRound / users
	)
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity, b.PerUserLimit = 1000, limit })
	codes := f.addCodes(b, writers*rounds*perRound+20)

	// Every claim is settled and old, so each can be archived the moment it
	// commits: the archiver races the writers as hard as it can.
	var mu sync.Mutex
	seq := map[string]int{}
	next := 0
	take := func(w int) store.ClaimWrite {
		mu.Lock()
		defer mu.Unlock()
		user := fmt.Sprint("user-", next%users)
		seq[user]++
		c := f.claim(b, codes[next], user, seq[user], fmt.Sprint("k-", next))
		next++
		c.Claim.Status = coupon.ClaimUsed
		return c
	}
	var wg sync.WaitGroup
	var written []string
	var wmu sync.Mutex
	for w := range writers {
		wg.Go(func() {
			for range rounds {
				batch := make([]store.ClaimWrite, perRound)
				for i := range batch {
					batch[i] = take(w)
				}
				for i, err := range f.s.InsertClaims(f.ctx, batch) {
					require.NoError(t, err)
					wmu.Lock()
					written = append(written, batch[i].Claim.ID)
					wmu.Unlock()
				}
			}
		})
	}
	done := make(chan struct{})
	archived := 0
	var awg sync.WaitGroup
	awg.Go(func() {
		for {
			res, err := a.ArchiveClaims(f.ctx, store.ArchiveClaims{Before: later, Limit: 7})
			require.NoError(t, err)
			archived += res.Moved
			select {
			case <-done:
				if res.Moved < 7 {
					return
				}
			default:
			}
		}
	})
	wg.Wait()
	close(done)
	awg.Wait()

	total := writers * rounds * perRound
	require.Len(t, written, total)
	require.Equal(t, total, archived, "every claim archived once")
	n, err := f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, total, n, "no claim lost or counted twice")
	hot, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "user-0", Now: later})
	require.NoError(t, err)
	require.Empty(t, hot)

	var listed []string
	for u := range users {
		cs := history(t, f, fmt.Sprint("user-", u), 1000, time.Time{}, "")
		require.Len(t, cs, limit)
		listed = append(listed, claimIDs(cs)...)
	}
	slices.Sort(listed)
	slices.Sort(written)
	require.Equal(t, written, listed, "every claim listed once")

	allCodes := make([]string, len(codes))
	for i, c := range codes {
		allCodes[i] = c.Code
	}
	claimed, err := f.s.ClaimedCodes(f.ctx, allCodes)
	require.NoError(t, err)
	require.Len(t, claimed, total)

	snap, err := f.s.Snapshot(f.ctx, b.ID)
	require.NoError(t, err)
	require.Len(t, snap.Pool, 20, "only never-claimed codes are in a rebuilt pool")
	isClaimed := map[string]bool{}
	for _, c := range claimed {
		isClaimed[c] = true
	}
	for _, p := range snap.Pool {
		require.False(t, isClaimed[p.Code], "an archived code in the rebuilt pool")
	}
	require.Len(t, snap.Users, users)
	for u, seqs := range snap.Users {
		require.Len(t, seqs, limit, "user %s: every sequence number of the limit is taken", u)
	}
	require.Len(t, snap.Keys, total)
}

// testArchiveHistoryPages: paging a user's history while their claims move
// to the archive between pages lists every claim once, in order.
func testArchiveHistoryPages(t *testing.T, f *fixture) {
	a := archiver(t, f)
	const n = 40
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity, b.PerUserLimit = n, n })
	cs := f.claims(b, n, func(c *coupon.Claim) { c.UserID, c.Status = "carol", coupon.ClaimExpired })
	var want []string
	for _, c := range cs {
		want = append(want, c.ID)
	}
	slices.Sort(want) // valid_to follows the claim time, as ids do

	var got []string
	var afterTo time.Time
	afterID := ""
	for {
		page := history(t, f, "carol", 6, afterTo, afterID)
		got = append(got, claimIDs(page)...)
		if len(page) < 6 {
			break
		}
		last := page[len(page)-1]
		afterTo, afterID = last.ValidTo, last.ID
		_, err := a.ArchiveClaims(f.ctx, store.ArchiveClaims{Before: later, Limit: 5})
		require.NoError(t, err)
	}
	require.Equal(t, want, got)
}

// testArchivePrune: retention deletes the archived claims claimed before its
// cutoff only.
func testArchivePrune(t *testing.T, f *fixture) {
	a := archiver(t, f)
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity, b.PerUserLimit = 10, 10 })
	cs := f.claims(b, 6, func(c *coupon.Claim) { c.UserID, c.Status = "dave", coupon.ClaimUsed })
	moved, _ := archiveAll(t, f, later, 100)
	require.Equal(t, 6, moved)
	cutoff := cs[3].ClaimedAt // cs[0..2] are older
	pruned, err := a.PruneArchive(f.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, pruned)
	pruned, err = a.PruneArchive(f.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, pruned)
	left := history(t, f, "dave", 100, time.Time{}, "")
	require.Equal(t, claimIDs(cs[3:]), claimIDs(left))
}

// testArchiveRedemptions: settled redemptions move to the archive once none
// of their held lines has a hot claim; they read as before, their order
// cannot be redeemed again, they no longer change, and a search lists each
// once.
func testArchiveRedemptions(t *testing.T, f *fixture) {
	ra, ok := f.s.(store.RedemptionArchiver)
	if !ok {
		t.Skip("the store keeps every redemption in its tables")
	}
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 10 })
	cs := f.claims(b, 4, func(c *coupon.Claim) { c.UserID = "erin" })
	confirmed := f.reserve(f.redemption("order-1", "erin", cs[0]))
	confirmed, _, err := f.s.ConfirmRedemption(f.ctx, f.change(confirmed.ID, "redemption.confirmed", at))
	require.NoError(t, err)
	cancelled := f.reserve(f.redemption("order-2", "erin", cs[1]))
	cancelled, _, err = f.s.CancelRedemption(f.ctx, f.change(cancelled.ID, "redemption.cancelled", at))
	require.NoError(t, err)
	reserved := f.reserve(f.redemption("order-3", "erin", cs[2]))
	archive := func() int {
		t.Helper()
		n, err := ra.ArchiveRedemptions(f.ctx, store.ArchiveRedemptions{Before: later, At: later, Limit: 10})
		require.NoError(t, err)
		return n
	}

	require.Equal(t, 1, archive(), "the cancelled one; the confirmed one's claim is hot and could be refunded")
	moved, _ := archiveAll(t, f, later, 10)
	require.Equal(t, 1, moved, "the used claim")
	require.Equal(t, 1, archive(), "the confirmed one, now that its claim is archived")
	require.Zero(t, archive(), "the reservation stays")

	for _, want := range []*coupon.Redemption{confirmed, cancelled} {
		got, err := f.s.GetRedemption(f.ctx, want.ID)
		require.NoError(t, err)
		require.Equal(t, want, got)
		got, err = f.s.GetRedemptionByOrder(f.ctx, want.OrderID)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}

	// An archived order is still an order with a redemption.
	again := f.redemption("order-1", "erin", cs[3])
	existing, err := f.s.Reserve(f.ctx, store.ReserveRedemption{Redemption: again, Event: event("redemption.reserved", again.ID), At: at})
	require.ErrorIs(t, err, store.ErrOrderExists)
	require.Equal(t, confirmed.ID, existing.ID)
	f.requireClaims(coupon.ClaimAvailable, cs[3])
	require.Empty(t, f.eventsFor(again.ID), "nothing written")
	_, err = f.s.GetRedemption(f.ctx, again.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	tomb := &coupon.Redemption{ID: f.id(), OrderID: "order-2", Status: coupon.RedemptionCancelled, Reason: "message",
		Cart: coupon.Cart{Items: []coupon.CartItem{}}, ReservedAt: at, ExpiresAt: at, CancelledAt: at, UpdatedAt: at, NextCheckAt: at}
	existing, err = f.s.InsertTombstone(f.ctx, tomb)
	require.ErrorIs(t, err, store.ErrOrderExists)
	require.Equal(t, cancelled.ID, existing.ID)

	// Settled is settled: the same answers as before archival, no writes.
	got, changed, err := f.s.ConfirmRedemption(f.ctx, f.change(confirmed.ID, "redemption.confirmed", at))
	require.NoError(t, err)
	require.False(t, changed)
	require.Equal(t, confirmed, got)
	_, _, err = f.s.CancelRedemption(f.ctx, f.change(confirmed.ID, "redemption.cancelled", at))
	require.ErrorIs(t, err, store.ErrRedemptionStatus)
	_, changed, err = f.s.CancelRedemption(f.ctx, f.change(cancelled.ID, "redemption.cancelled", at))
	require.NoError(t, err)
	require.False(t, changed)
	_, err = f.s.RefundRedemption(f.ctx, store.RefundRedemption{ID: confirmed.ID, Version: confirmed.Version,
		Status: coupon.RedemptionRefunded, At: at, Event: event("redemption.refunded", confirmed.ID)})
	require.ErrorIs(t, err, store.ErrArchived)

	search := func(q store.RedemptionSearch) []string {
		t.Helper()
		rs, err := f.s.SearchRedemptions(f.ctx, q)
		require.NoError(t, err)
		for _, r := range rs {
			require.NotEmpty(t, r.Claims, "with their lines")
		}
		return ids(rs, func(r *coupon.Redemption) string { return r.ID })
	}
	require.Equal(t, []string{reserved.ID, cancelled.ID, confirmed.ID}, search(store.RedemptionSearch{UserID: "erin"}))
	require.Equal(t, []string{reserved.ID, cancelled.ID, confirmed.ID}, search(store.RedemptionSearch{BatchID: b.ID}))
	require.Equal(t, []string{reserved.ID, cancelled.ID, confirmed.ID}, search(store.RedemptionSearch{MerchantID: b.MerchantID}))
	require.Equal(t, []string{confirmed.ID}, search(store.RedemptionSearch{Status: coupon.RedemptionConfirmed}))
	require.Equal(t, []string{reserved.ID}, search(store.RedemptionSearch{Status: coupon.RedemptionReserved}))
	require.Equal(t, []string{cancelled.ID}, search(store.RedemptionSearch{OrderID: "order-2"}))
	require.Equal(t, []string{cancelled.ID}, search(store.RedemptionSearch{UserID: "erin", BeforeID: reserved.ID, Limit: 1}))

	// Retention forgets archived claims and redemptions alike.
	pruned, err := archiver(t, f).PruneArchive(f.ctx, later, 100)
	require.NoError(t, err)
	require.Equal(t, 3, pruned, "one claim, two redemptions")
	_, err = f.s.GetRedemption(f.ctx, confirmed.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testOutboxPrune: the outbox's retention deletes published events created
// before its cutoff and never an unpublished one.
func testOutboxPrune(t *testing.T, f *fixture) {
	p, ok := f.s.(store.OutboxPruner)
	if !ok {
		t.Skip("the store does not prune its outbox")
	}
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 10 })
	cs := f.addCodes(b, 4)
	var writes []store.ClaimWrite
	for i, c := range cs {
		w := f.claim(b, c, "olga", i+1, "")
		w.Event.CreatedAt = base.Add(time.Duration(i) * time.Hour)
		writes = append(writes, w)
	}
	f.insert(writes...)
	evs := f.eventsFor(writes[0].Claim.ID)
	evs = append(evs, f.eventsFor(writes[1].Claim.ID)...)
	evs = append(evs, f.eventsFor(writes[2].Claim.ID)...)
	require.Len(t, evs, 3)
	require.NoError(t, f.s.MarkPublished(f.ctx, []int64{evs[0].ID, evs[1].ID, evs[2].ID}, later))

	prune := func(before time.Time) int {
		t.Helper()
		n, err := p.PruneOutbox(f.ctx, before, 100)
		require.NoError(t, err)
		return n
	}
	require.Equal(t, 2, prune(base.Add(2*time.Hour)), "the published events created before the cutoff")
	require.Zero(t, prune(base.Add(2*time.Hour)))
	require.Equal(t, 1, prune(later), "the last published one; never the pending one, however old")
	pending := f.eventsFor(writes[3].Claim.ID)
	require.Len(t, pending, 1, "the unpublished event stays")
	require.Zero(t, prune(later))
}

// testArchiveSearch: every back-office search finds archived claims as it
// finds hot ones, and a code whose claim is archived is claimed.
func testArchiveSearch(t *testing.T, f *fixture) {
	archiver(t, f)
	b1 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-x" })
	b2 := f.createBatch(func(b *coupon.Batch) { b.MerchantID = "m-y" })
	cs := f.searchClaims(b1, 6, func(i int, c *coupon.Claim) {
		c.MerchantID, c.Channel, c.Phone = "m-x", "push", "+8613900000000"
		if i < 4 {
			c.Status = coupon.ClaimUsed // cs[0..3] are archived, cs[4..5] stay hot
		}
		if i == 1 {
			c.Status = coupon.ClaimRefunded
		}
	})
	other := f.searchClaims(b2, 2, func(i int, c *coupon.Claim) { c.MerchantID = "m-y"; c.UserID = fmt.Sprint("t", i) })
	free := f.addCodes(b1, 1)
	moved, _ := archiveAll(t, f, later, 100)
	require.Equal(t, 4, moved)

	now := base.Add(time.Minute) // before any claim's validity ends
	require.Equal(t, reversed(cs), f.search(store.ClaimSearch{BatchID: b1.ID, Now: now}), "hot and archived, newest first")
	require.Equal(t, reversed(cs), f.search(store.ClaimSearch{MerchantID: "m-x", Now: now}))
	require.Equal(t, reversed(cs), f.search(store.ClaimSearch{Phone: "+8613900000000", Now: now}))
	require.Equal(t, reversed(cs), f.search(store.ClaimSearch{Channel: "push", Now: now}))
	require.Equal(t, []string{cs[2].ID}, f.search(store.ClaimSearch{UserID: "s2", MerchantID: "m-x", Now: now}))
	require.Equal(t, []string{cs[3].ID}, f.search(store.ClaimSearch{Code: cs[3].Code, Now: now}))
	require.Equal(t, []string{cs[1].ID}, f.search(store.ClaimSearch{Status: coupon.ClaimRefunded, Now: now}), "a status alone")
	require.Equal(t, []string{cs[3].ID, cs[2].ID, cs[0].ID}, f.search(store.ClaimSearch{Status: coupon.ClaimUsed, Channel: "push", Now: now}))
	require.Equal(t, []string{cs[5].ID, cs[4].ID}, f.search(store.ClaimSearch{BatchID: b1.ID, Status: coupon.ClaimAvailable, Now: now}))
	require.Equal(t, []string{cs[2].ID, cs[1].ID}, f.search(store.ClaimSearch{BatchID: b1.ID, Now: now,
		ClaimedFrom: base.Add(time.Minute), ClaimedTo: base.Add(3 * time.Minute)}))
	all := f.search(store.ClaimSearch{Now: now})
	want := append(ids(cs, claimID), ids(other, claimID)...)
	slices.Sort(want)
	slices.Reverse(want)
	require.Equal(t, want, all, "with no filter: every claim, newest first")

	codes, err := f.s.SearchCodes(f.ctx, store.CodeSearch{BatchID: b1.ID, Status: coupon.CodeClaimed})
	require.NoError(t, err)
	require.Len(t, codes, 6)
	byCode := map[string]string{}
	for _, c := range codes {
		require.NotNil(t, c.IssuedAt)
		byCode[c.Code] = c.ClaimID
	}
	require.Equal(t, cs[0].ID, byCode[cs[0].Code], "an archived claim's code")
	require.Equal(t, cs[5].ID, byCode[cs[5].Code])
	codes, err = f.s.SearchCodes(f.ctx, store.CodeSearch{BatchID: b1.ID, Status: coupon.CodeUnclaimed})
	require.NoError(t, err)
	require.Equal(t, []string{free[0].Code}, ids(codes, func(c *coupon.Code) string { return c.Code }))
	codes, err = f.s.SearchCodes(f.ctx, store.CodeSearch{Code: cs[1].Code})
	require.NoError(t, err)
	require.Len(t, codes, 1)
	require.Equal(t, coupon.CodeClaimed, codes[0].Status)
	require.Equal(t, cs[1].ID, codes[0].ClaimID)
}

// testArchiveSearchPages: paging a search while its claims move to the
// archive between pages lists every claim once, newest first — with a
// filter and without.
func testArchiveSearchPages(t *testing.T, f *fixture) {
	a := archiver(t, f)
	const n = 40
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = n })
	cs := f.searchClaims(b, n, func(_ int, c *coupon.Claim) { c.Status = coupon.ClaimExpired })
	for _, q := range []store.ClaimSearch{{BatchID: b.ID}, {}, {Status: coupon.ClaimExpired}} {
		var got []string
		for {
			q.Limit = 6
			page := f.search(q)
			got = append(got, page...)
			if len(page) < 6 {
				break
			}
			q.BeforeID = page[len(page)-1]
			// Archival takes the oldest first: it meets the pages half-way.
			_, err := a.ArchiveClaims(f.ctx, store.ArchiveClaims{Before: later, Limit: 4})
			require.NoError(t, err)
		}
		require.Equal(t, reversed(cs), got, "%+v", q)
	}
}

// testArchiveSearchWhileArchiving: an export's pages read while the
// archiver moves claims at the same moment list every claim once.
func testArchiveSearchWhileArchiving(t *testing.T, f *fixture) {
	a := archiver(t, f)
	const n = 300
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = n })
	cs := f.searchClaims(b, n, func(_ int, c *coupon.Claim) { c.Status = coupon.ClaimUsed })
	for round := range 3 {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := a.ArchiveClaims(f.ctx, store.ArchiveClaims{Before: later, Limit: 3}); err != nil {
					t.Error(err)
					return
				}
			}
		})
		var got []string
		q := store.ClaimSearch{BatchID: b.ID, Limit: 17}
		for {
			page := f.search(q)
			got = append(got, page...)
			if len(page) < q.Limit {
				break
			}
			q.BeforeID = page[len(page)-1]
		}
		close(done)
		wg.Wait()
		require.Equal(t, reversed(cs), got, "round %d", round)
	}
	archiveAll(t, f, later, 1000)
	require.Equal(t, reversed(cs), f.search(store.ClaimSearch{BatchID: b.ID, Limit: 1000}), "all archived, all found")
}
