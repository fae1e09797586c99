package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testClaimRoundTrip stores a claim with every field set and reads it back.
func testClaimRoundTrip(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) {
		b.Name = "Weekend 20% off"
		b.MerchantID = "merchant-7"
		b.Type = coupon.TypePercent
		b.PercentOff = 20
		b.MinSpend = 5000
		b.Channel = "push"
		b.PerUserLimit = 5
		b.UsagePlatforms = []string{"ios", "web"}
	})
	cs := f.addCodes(b, 2)
	shanghai := time.FixedZone("UTC+8", 8*3600)
	at := time.Date(2031, 5, 1, 8, 0, 0, 987654000, shanghai)
	c := coupon.NewClaim(b, f.id(), coupon.Claimant{UserID: "user-1", Phone: "+8613800000000", OpenID: "oAbC", Platform: "ios"},
		cs[1].Code, cs[1].Amount, 4, "key-1", at)
	f.insert(store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: json.RawMessage(`{}`)}})

	got, err := f.s.GetClaim(f.ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, normClaim(c), got)
	requireUTC(t, got.ValidFrom, got.ValidTo, got.ClaimedAt, got.UpdatedAt)
	require.Equal(t, 4, got.UserSeq)
	require.Equal(t, 5, got.UserLimit)
	require.Equal(t, "key-1", got.IdempotencyKey)

	// A claim without the optional fields.
	bare := coupon.NewClaim(b, f.id(), coupon.Claimant{UserID: "user-2"}, cs[0].Code, cs[0].Amount, 1, "", at)
	bare.UsagePlatforms, bare.Channel, bare.MerchantID = nil, "", ""
	f.insert(store.ClaimWrite{Claim: bare, Event: store.Event{Type: "claim.created", AggregateID: bare.ID, Payload: json.RawMessage(`{}`)}})
	got, err = f.s.GetClaim(f.ctx, bare.ID)
	require.NoError(t, err)
	require.Equal(t, normClaim(bare), got)

	_, err = f.s.GetClaim(f.ctx, f.id())
	require.ErrorIs(t, err, store.ErrNotFound)

	// By idempotency key: scoped to the batch and the user.
	got, err = f.s.GetClaimByKey(f.ctx, b.ID, "user-1", "key-1")
	require.NoError(t, err)
	require.Equal(t, c.ID, got.ID)
	for _, miss := range [][3]string{{b.ID, "user-2", "key-1"}, {b.ID, "user-1", "key-2"}, {f.id(), "user-1", "key-1"}, {b.ID, "user-2", ""}} {
		_, err = f.s.GetClaimByKey(f.ctx, miss[0], miss[1], miss[2])
		require.ErrorIs(t, err, store.ErrNotFound, "key %v", miss)
	}
}

// testInsertClaimsOutcomes sends one InsertClaims call mixing good rows with
// every kind of bad one: all good rows are written with one event each, and
// each bad row gets its own reason and writes nothing.
func testInsertClaimsOutcomes(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 2 })
	other := f.createBatch()
	cs := f.addCodes(b, 12)
	oc := f.addCodes(other, 1)

	earlier := f.claim(b, cs[0], "u0", 1, "k0")
	f.insert(earlier)

	unknown := coupon.Code{Code: "NOT-A-CODE", Amount: 100}
	rows := []struct {
		name string
		w    store.ClaimWrite
		want error
	}{
		{"good", f.claim(b, cs[1], "u1", 1, ""), nil},
		{"code claimed earlier", f.claim(b, cs[0], "u2", 1, ""), store.ErrCodeClaimed},
		{"seq taken earlier", f.claim(b, cs[2], "u0", 1, ""), store.ErrSeqTaken},
		{"key used earlier", f.claim(b, cs[3], "u0", 2, "k0"), store.ErrKeyUsed},
		{"unknown code", f.claim(b, unknown, "u3", 1, ""), store.ErrUnknownCode},
		{"code of another batch", f.claim(b, oc[0], "u4", 1, ""), store.ErrUnknownCode},
		{"seq over the limit", f.claim(b, cs[4], "u5", 3, ""), store.ErrOverLimit},
		{"seq zero", f.claim(b, cs[5], "u6", 0, ""), store.ErrOverLimit},
		{"good with key", f.claim(b, cs[6], "u7", 1, "k7"), nil},
		{"code claimed in this call", f.claim(b, cs[1], "u8", 1, ""), store.ErrCodeClaimed},
		{"seq taken in this call", f.claim(b, cs[7], "u7", 1, ""), store.ErrSeqTaken},
		{"key used in this call", f.claim(b, cs[8], "u7", 2, "k7"), store.ErrKeyUsed},
		{"good: second claim of u0", f.claim(b, cs[9], "u0", 2, "k0-bis"), nil},
		{"good: same key, other user", f.claim(b, cs[10], "u9", 1, "k0"), nil},
	}
	writes := make([]store.ClaimWrite, len(rows))
	for i, r := range rows {
		writes[i] = r.w
	}
	outcomes := f.s.InsertClaims(f.ctx, writes)
	require.Len(t, outcomes, len(rows))

	written := map[string]bool{earlier.Claim.ID: true}
	for i, r := range rows {
		requireOutcome(t, outcomes[i], r.want, "row %d (%s)", i, r.name)
		got, err := f.s.GetClaim(f.ctx, r.w.Claim.ID)
		if r.want == nil {
			require.NoError(t, err, r.name)
			require.Equal(t, normClaim(r.w.Claim), got, r.name)
			written[r.w.Claim.ID] = true
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, "%s: a refused claim is not stored", r.name)
		}
	}

	// Exactly one outbox row per written claim, none for a refused one.
	perClaim := map[string]int{}
	for _, e := range f.events() {
		if e.Type == "claim.created" {
			perClaim[e.AggregateID]++
		}
	}
	require.Len(t, perClaim, len(written))
	for id := range written {
		require.Equal(t, 1, perClaim[id], "events of claim %s", id)
	}

	n, err := f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, len(written), n)

	code, err := f.s.GetCode(f.ctx, cs[1].Code)
	require.NoError(t, err)
	require.Equal(t, rows[0].w.Claim.ID, code.ClaimID, "the first claim of a code in a call wins")
}

// testInsertClaimsCodeReuse: a code claimed in one call cannot be claimed in
// a later one, by anyone, and the first claim stays as it was.
func testInsertClaimsCodeReuse(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.addCodes(b, 1)
	first := f.claim(b, cs[0], "u1", 1, "")
	f.insert(first)

	for _, w := range []store.ClaimWrite{
		f.claim(b, cs[0], "u2", 1, ""),
		f.claim(b, cs[0], "u1", 2, ""),
	} {
		errs := f.s.InsertClaims(f.ctx, []store.ClaimWrite{w})
		require.Len(t, errs, 1)
		requireOutcome(t, errs[0], store.ErrCodeClaimed)
		_, err := f.s.GetClaim(f.ctx, w.Claim.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	got, err := f.s.GetClaim(f.ctx, first.Claim.ID)
	require.NoError(t, err)
	require.Equal(t, normClaim(first.Claim), got)
	require.Len(t, f.eventsFor(first.Claim.ID), 1)
}

// testInsertClaimsConcurrent: many callers at once; distinct claims are all
// written, and of several racing for one code exactly one wins.
func testInsertClaimsConcurrent(t *testing.T, f *fixture) {
	const callers = 16
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 1 })
	cs := f.addCodes(b, callers+1)
	contested := cs[callers]

	var wg sync.WaitGroup
	distinct := make([][]error, callers)
	racing := make([][]error, callers)
	for i := range callers {
		wg.Go(func() {
			user := "user-" + string(rune('a'+i))
			distinct[i] = f.s.InsertClaims(f.ctx, []store.ClaimWrite{f.claim(b, cs[i], user, 1, "")})
		})
		wg.Go(func() {
			user := "racer-" + string(rune('a'+i))
			racing[i] = f.s.InsertClaims(f.ctx, []store.ClaimWrite{f.claim(b, contested, user, 1, "")})
		})
	}
	wg.Wait()

	winners := 0
	for i := range callers {
		require.Len(t, distinct[i], 1)
		require.NoError(t, distinct[i][0])
		require.Len(t, racing[i], 1)
		if racing[i][0] == nil {
			winners++
		} else {
			requireOutcome(t, racing[i][0], store.ErrCodeClaimed)
		}
	}
	require.Equal(t, 1, winners)
	n, err := f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, callers+1, n)
	require.Len(t, f.events(), callers+1)
}

// testInsertClaimsFailedTransaction: when the transaction itself fails every
// outcome is an error and nothing is written.
func testInsertClaimsFailedTransaction(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs := f.addCodes(b, 2)
	writes := []store.ClaimWrite{f.claim(b, cs[0], "u1", 1, ""), f.claim(b, cs[1], "u2", 1, "")}

	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	errs := f.s.InsertClaims(ctx, writes)
	require.Len(t, errs, len(writes))
	for i, err := range errs {
		require.Error(t, err, "outcome %d", i)
		for _, rowErr := range rowErrors {
			require.NotErrorIs(t, err, rowErr, "a failed transaction is no constraint of a row")
		}
	}
	for _, w := range writes {
		_, err := f.s.GetClaim(f.ctx, w.Claim.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	require.Empty(t, f.events())
}

func testInsertClaimsEmpty(t *testing.T, f *fixture) {
	require.Empty(t, f.s.InsertClaims(f.ctx, nil))
}

// userClaims stores a user's claims in every status around now, plus claims
// of another user, and returns them with now.
func userClaims(t *testing.T, f *fixture) (mine []*coupon.Claim, now time.Time) {
	now = base.Add(30 * 24 * time.Hour)
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 50 })
	cs := f.addCodes(b, 40)
	specs := []struct {
		status  coupon.ClaimStatus
		validTo time.Duration // from now
	}{
		{coupon.ClaimAvailable, -2 * time.Hour}, // effectively expired
		{coupon.ClaimAvailable, 0},              // expires exactly now: expired
		{coupon.ClaimAvailable, time.Microsecond},
		{coupon.ClaimAvailable, time.Hour},
		{coupon.ClaimAvailable, time.Hour}, // same expiry: ordered by id
		{coupon.ClaimAvailable, time.Hour},
		{coupon.ClaimExpired, 2 * time.Hour}, // the sweeper wrote it
		{coupon.ClaimExpired, -time.Hour},
		{coupon.ClaimUsed, 3 * time.Hour},
		{coupon.ClaimUsed, 3 * time.Hour},
		{coupon.ClaimLocked, -time.Hour}, // locked stays locked past its expiry
		{coupon.ClaimRefunded, 5 * time.Hour},
		{coupon.ClaimAvailable, 240 * time.Hour},
	}
	var writes []store.ClaimWrite
	for i, sp := range specs {
		w := f.claim(b, cs[i], "me", i+1, "")
		w.Claim.Status = sp.status
		w.Claim.ValidTo = now.Add(sp.validTo)
		w.Claim.ValidFrom = now.Add(-48 * time.Hour)
		writes = append(writes, w)
		mine = append(mine, w.Claim)
	}
	for i := range 5 {
		w := f.claim(b, cs[len(specs)+i], "someone-else", i+1, "")
		w.Claim.ValidTo = now.Add(time.Duration(i) * time.Hour)
		writes = append(writes, w)
	}
	// Stored in an order that is neither the expiry nor the id order.
	slices.Reverse(writes)
	writes[0], writes[len(writes)/2] = writes[len(writes)/2], writes[0]
	f.insert(writes...)

	slices.SortFunc(mine, func(a, b *coupon.Claim) int {
		if c := a.ValidTo.Compare(b.ValidTo); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i, c := range mine {
		mine[i] = normClaim(c)
	}
	return mine, now
}

// testListUserClaims filters by effective status as of Now; the claims keep
// their stored status.
func testListUserClaims(t *testing.T, f *fixture) {
	mine, now := userClaims(t, f)
	for _, status := range []coupon.ClaimStatus{"", coupon.ClaimAvailable, coupon.ClaimExpired,
		coupon.ClaimLocked, coupon.ClaimUsed, coupon.ClaimRefunded} {
		t.Run("status="+string(status), func(t *testing.T) {
			var want []*coupon.Claim
			for _, c := range mine {
				if status == "" || c.EffectiveStatus(now) == status {
					want = append(want, c)
				}
			}
			require.NotEmpty(t, want, "the fixture has claims of every status")
			got, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "me", Status: status, Now: now, Limit: 100})
			require.NoError(t, err)
			require.Equal(t, ids(want, claimID), ids(got, claimID))
			require.Equal(t, want, got, "claims keep their stored status")
		})
	}

	// The expired list holds claims stored as available.
	got, err := f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "me", Status: coupon.ClaimExpired, Now: now, Limit: 100})
	require.NoError(t, err)
	require.Contains(t, statuses(got), coupon.ClaimAvailable)

	// Another moment, another split.
	later := now.Add(2 * time.Hour)
	got, err = f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "me", Status: coupon.ClaimAvailable, Now: later, Limit: 100})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, later.Add(238*time.Hour), got[0].ValidTo)

	got, err = f.s.ListUserClaims(f.ctx, store.UserClaimFilter{UserID: "nobody", Now: now, Limit: 100})
	require.NoError(t, err)
	require.Empty(t, got)
}

// testListUserClaimsPages walks a user's claims page by page, with and
// without a filter: each claim once, in (valid_to, id) order.
func testListUserClaimsPages(t *testing.T, f *fixture) {
	mine, now := userClaims(t, f)
	for _, tc := range []struct {
		status coupon.ClaimStatus
		limit  int
	}{
		{"", 1}, {"", 3}, {"", 4}, {"", len(mine)}, {coupon.ClaimAvailable, 2}, {coupon.ClaimExpired, 2}, {coupon.ClaimUsed, 1},
	} {
		var want []string
		for _, c := range mine {
			if tc.status == "" || c.EffectiveStatus(now) == tc.status {
				want = append(want, c.ID)
			}
		}
		flt := store.UserClaimFilter{UserID: "me", Status: tc.status, Now: now, Limit: tc.limit}
		var seen []string
		for pages := 0; ; pages++ {
			require.Less(t, pages, 100, "pagination does not end")
			page, err := f.s.ListUserClaims(f.ctx, flt)
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), tc.limit)
			if len(page) == 0 {
				break
			}
			seen = append(seen, ids(page, claimID)...)
			last := page[len(page)-1]
			flt.AfterValidTo, flt.AfterID = last.ValidTo, last.ID
		}
		require.Equal(t, want, seen, "status %q, limit %d", tc.status, tc.limit)
	}
}

func statuses(cs []*coupon.Claim) []coupon.ClaimStatus {
	out := make([]coupon.ClaimStatus, len(cs))
	for i, c := range cs {
		out[i] = c.Status
	}
	return out
}
