package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testClaimedCodes: exactly the claimed ones of the codes asked about, of
// any batch, each once; unknown and unclaimed codes are left out.
func testClaimedCodes(t *testing.T, f *fixture) {
	for _, in := range [][]string{nil, {}} {
		got, err := f.s.ClaimedCodes(f.ctx, in)
		require.NoError(t, err)
		require.Empty(t, got)
	}

	b := f.createBatch()
	other := f.createBatch()
	cs := f.addCodes(b, 4)
	oc := f.addCodes(other, 2)
	f.insert(f.claim(b, cs[0], "u1", 1, ""), f.claim(b, cs[2], "u2", 1, ""), f.claim(other, oc[1], "u1", 1, ""))
	// A refused claim holds no code.
	errs := f.s.InsertClaims(f.ctx, []store.ClaimWrite{f.claim(b, cs[3], "u1", 1, "")})
	require.ErrorIs(t, errs[0], store.ErrSeqTaken)

	got, err := f.s.ClaimedCodes(f.ctx, []string{
		cs[0].Code, cs[1].Code, cs[2].Code, cs[3].Code, oc[0].Code, oc[1].Code, "NO-SUCH-CODE", cs[0].Code,
	})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{cs[0].Code, cs[2].Code, oc[1].Code}, got)

	got, err = f.s.ClaimedCodes(f.ctx, []string{cs[1].Code, "NO-SUCH-CODE"})
	require.NoError(t, err)
	require.Empty(t, got)

	// Many codes at once: a reconciler pass asks about a whole pending list.
	many := make([]string, 0, 2000)
	for i := range 2000 {
		many = append(many, fmt.Sprintf("UNKNOWN-%d", i))
	}
	many = append(many, oc[1].Code)
	got, err = f.s.ClaimedCodes(f.ctx, many)
	require.NoError(t, err)
	require.Equal(t, []string{oc[1].Code}, got)
}

// testInsertClaimsExistingID: a claim whose ID exists, from an earlier call
// or earlier in the same call, is refused with coupon.ErrConflict (no
// per-row sentinel) and changes nothing.
func testInsertClaimsExistingID(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 5 })
	cs := f.addCodes(b, 5)
	first := f.claim(b, cs[0], "u1", 1, "")
	f.insert(first)

	again := f.claim(b, cs[1], "u2", 1, "")
	again.Claim.ID = first.Claim.ID
	twin := f.claim(b, cs[3], "u3", 1, "")
	twinAgain := f.claim(b, cs[4], "u4", 1, "")
	twinAgain.Claim.ID = twin.Claim.ID
	good := f.claim(b, cs[2], "u5", 1, "")
	errs := f.s.InsertClaims(f.ctx, []store.ClaimWrite{again, twin, twinAgain, good})
	require.Len(t, errs, 4)
	for _, i := range []int{0, 2} {
		require.ErrorIs(t, errs[i], coupon.ErrConflict, "row %d", i)
		for _, rowErr := range rowErrors {
			require.NotErrorIs(t, errs[i], rowErr, "row %d", i)
		}
	}
	require.NoError(t, errs[1])
	require.NoError(t, errs[3])

	got, err := f.s.GetClaim(f.ctx, first.Claim.ID)
	require.NoError(t, err)
	require.Equal(t, normClaim(first.Claim), got, "the first claim with the ID is kept")
	got, err = f.s.GetClaim(f.ctx, twin.Claim.ID)
	require.NoError(t, err)
	require.Equal(t, normClaim(twin.Claim), got)
	claimed, err := f.s.ClaimedCodes(f.ctx, []string{cs[1].Code, cs[4].Code})
	require.NoError(t, err)
	require.Empty(t, claimed, "a refused claim holds no code")
	require.Len(t, f.eventsFor(first.Claim.ID), 1)
	require.Len(t, f.eventsFor(twin.Claim.ID), 1)
	require.Len(t, f.events(), 3)
}

// testInsertClaimsEventTime: an event with a zero CreatedAt gets its
// claim's ClaimedAt; one with a time keeps it.
func testInsertClaimsEventTime(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.addCodes(b, 2)
	zero := f.claim(b, cs[0], "u1", 1, "")
	zero.Event.CreatedAt = time.Time{}
	zero.Claim.ClaimedAt = time.Date(2031, 7, 1, 10, 0, 0, 250000, time.UTC)
	set := f.claim(b, cs[1], "u2", 1, "")
	set.Event.CreatedAt = time.Date(2031, 7, 2, 10, 0, 0, 0, time.FixedZone("UTC+8", 8*3600))
	f.insert(zero, set)

	events := f.events()
	require.Len(t, events, 2)
	require.Equal(t, zero.Claim.ClaimedAt, events[0].CreatedAt)
	require.Equal(t, set.Event.CreatedAt.UTC(), events[1].CreatedAt)
	requireUTC(t, events[0].CreatedAt, events[1].CreatedAt)
}

// testInsertClaimsManyBatches: one call (a group commit) mixing the claims
// of several batches; sequence numbers and keys are per batch, codes are
// global.
func testInsertClaimsManyBatches(t *testing.T, f *fixture) {
	b1 := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 1 })
	b2 := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 1 })
	c1 := f.addCodes(b1, 3)
	c2 := f.addCodes(b2, 3)
	rows := []struct {
		w    store.ClaimWrite
		want error
	}{
		{f.claim(b1, c1[0], "alice", 1, "k"), nil},
		{f.claim(b2, c2[0], "alice", 1, "k"), nil}, // same user, seq and key in another batch
		{f.claim(b2, c2[1], "alice", 1, ""), store.ErrSeqTaken},
		{f.claim(b1, c2[2], "bob", 1, ""), store.ErrUnknownCode}, // b2's code claimed for b1
		{f.claim(b2, c2[2], "bob", 1, ""), nil},
		{f.claim(b1, c1[1], "bob", 1, "k"), nil},
	}
	writes := make([]store.ClaimWrite, len(rows))
	for i, r := range rows {
		writes[i] = r.w
	}
	errs := f.s.InsertClaims(f.ctx, writes)
	for i, r := range rows {
		requireOutcome(t, errs[i], r.want, "row %d", i)
	}
	for _, tc := range []struct {
		b    *coupon.Batch
		want int64
	}{{b1, 2}, {b2, 2}} {
		n, err := f.s.ClaimedCount(f.ctx, tc.b.ID)
		require.NoError(t, err)
		require.Equal(t, tc.want, n)
	}
	require.Len(t, f.events(), 4)
	got, err := f.s.GetClaimByKey(f.ctx, b2.ID, "alice", "k")
	require.NoError(t, err)
	require.Equal(t, rows[1].w.Claim.ID, got.ID)
}

// testSetBatchStatusEventTime: an event with a zero CreatedAt gets the
// change's time.
func testSetBatchStatusEventTime(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusDraft })
	at := base.Add(90*time.Minute + 3*time.Microsecond)
	_, err := f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: at,
		Event: &store.Event{Type: "batch.published", AggregateID: b.ID, Payload: json.RawMessage(`{}`)},
	})
	require.NoError(t, err)
	events := f.eventsFor(b.ID)
	require.Len(t, events, 1)
	require.Equal(t, at, events[0].CreatedAt)
}

// testAddCodesAllExist: a call whose codes all exist already succeeds and
// inserts none, even into a full batch.
func testAddCodesAllExist(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 3 })
	cs := f.addCodes(b, 3)
	out, err := f.s.AddCodes(f.ctx, b.ID, []coupon.Code{{Code: cs[2].Code, Amount: 9}, {Code: cs[0].Code, Amount: 9}})
	require.NoError(t, err)
	require.Empty(t, out)
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GeneratedCount)
	require.EqualValues(t, 100+101+102, got.GeneratedAmount)

	// One new code among them is one too many.
	_, err = f.s.AddCodes(f.ctx, b.ID, []coupon.Code{{Code: cs[1].Code, Amount: 9}, {Code: "ONE-TOO-MANY", Amount: 9}})
	require.ErrorIs(t, err, store.ErrTotalExceeded)
	_, err = f.s.GetCode(f.ctx, "ONE-TOO-MANY")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testAddCodesBadAmount: an amount below 1 is an error; nothing of the call
// is inserted.
func testAddCodesBadAmount(t *testing.T, f *fixture) {
	b := f.createBatch()
	for _, amount := range []int64{0, -5} {
		in := codes(3, 10)
		in[1].Amount = amount
		_, err := f.s.AddCodes(f.ctx, b.ID, in)
		require.Error(t, err, "amount %d", amount)
		require.False(t, errors.Is(err, store.ErrTotalExceeded) || errors.Is(err, store.ErrNotFound), "%v", err)
		for _, c := range in {
			_, err := f.s.GetCode(f.ctx, c.Code)
			require.ErrorIs(t, err, store.ErrNotFound)
		}
	}
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Zero(t, got.GeneratedCount)
	require.Zero(t, got.GeneratedAmount)
}

// testDefaultLimits: a limit of zero or less means 100, and more than 1000
// means 1000, for every list.
func testDefaultLimits(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) {
		b.TotalQuantity = 1001
		b.PerUserLimit = 1001
	})
	cs := f.addCodes(b, 1001)
	writes := make([]store.ClaimWrite, len(cs))
	for i, c := range cs {
		writes[i] = f.claim(b, c, "someone", i+1, "")
	}
	f.insert(writes...)

	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		events, err := f.s.PendingEvents(f.ctx, tc.limit)
		require.NoError(t, err)
		require.Len(t, events, tc.want, "PendingEvents(%d)", tc.limit)
		claims, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "someone", Now: base, Limit: tc.limit})
		require.NoError(t, err)
		require.Len(t, claims, tc.want, "ListUserClaims, limit %d", tc.limit)
	}

	for range 101 {
		f.createBatch()
	}
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-3, 100}, {101, 101}, {5000, 102}} {
		batches, err := f.s.ListBatches(f.ctx, store.BatchFilter{Limit: tc.limit})
		require.NoError(t, err)
		require.Len(t, batches, tc.want, "ListBatches, limit %d", tc.limit)
	}
}
