package service_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
)

// expireAll moves the clock past every claim's validity and sweeps until
// want claims are expired.
func (e *rdEnv) expireAll(t *testing.T, want int) {
	t.Helper()
	e.clock.Advance(8 * 24 * time.Hour)
	expired := 0
	for range 20 {
		res, err := e.svc.SweepExpiry(e.ctx)
		require.NoError(t, err)
		expired += res.Expired
		if expired >= want {
			break
		}
		e.clock.Advance(11 * time.Minute)
	}
	require.Equal(t, want, expired)
}

func (e *rdEnv) archiveAll(t *testing.T, before time.Time, limit int) int {
	t.Helper()
	moved := 0
	for {
		res, err := e.svc.ArchiveClaims(e.ctx, before, limit)
		require.NoError(t, err)
		moved += res.Moved
		if res.Moved < limit {
			return moved
		}
	}
}

// After archival, "my coupons" lists the hot claims only (the cache was
// dropped), the history lists all of them, and an engine rebuilt from the
// store — the archive included — hands out no archived code, lets no user
// past the per-user limit and replays an archived claim's idempotency key.
func TestArchiveThenRebuild(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 30, func(s *coupon.BatchSpec) { s.PerUserLimit = 5 })
	var first []*coupon.Claim
	for i := range 10 {
		req := claimReq(b.ID, []string{"alice", "bob"}[i%2])
		req.IdempotencyKey = fmt.Sprint("key-", i)
		c, _, err := e.svc.Claim(e.ctx, req)
		require.NoError(t, err)
		first = append(first, c)
	}
	// Warm alice's cache, so the test sees archival drop it.
	hot, _, err := e.svc.UserClaims(e.ctx, service.UserClaimQuery{UserID: "alice", Limit: 100})
	require.NoError(t, err)
	require.Len(t, hot, 5)

	e.expireAll(t, 10)
	e.clock.Advance(40 * 24 * time.Hour)
	require.Equal(t, 10, e.archiveAll(t, e.clock.Now().Add(-30*24*time.Hour), 3))

	hot, _, err = e.svc.UserClaims(e.ctx, service.UserClaimQuery{UserID: "alice", Limit: 100})
	require.NoError(t, err)
	require.Empty(t, hot, "archived claims leave the hot list and its cache")
	all, _, err := e.svc.UserClaims(e.ctx, service.UserClaimQuery{UserID: "alice", Limit: 100, History: true})
	require.NoError(t, err)
	require.Len(t, all, 5)
	for _, c := range all {
		require.Equal(t, coupon.ClaimExpired, c.Status)
	}
	got, err := e.svc.GetClaim(e.ctx, first[0].ID)
	require.NoError(t, err)
	require.Equal(t, first[0].Code, got.Code)

	// The engine loses everything: a new service over the same store.
	svc := service.New(service.Config{Store: e.store, Engine: memory.New(), Now: e.clock.Now})
	t.Cleanup(svc.Close)
	require.NoError(t, svc.LoadEngine(e.ctx))

	_, _, err = svc.Claim(e.ctx, claimReq(b.ID, "alice"))
	require.ErrorIs(t, err, coupon.ErrLimitReached, "archived claims count toward the limit")
	req := claimReq(b.ID, "bob")
	req.IdempotencyKey = "key-1"
	replay, _, err := svc.Claim(e.ctx, req)
	require.NoError(t, err, "an idempotent replay of an archived claim")
	require.Equal(t, first[1].ID, replay.ID)

	seen := map[string]bool{}
	for _, c := range first {
		seen[c.Code] = true
	}
	for i := range 20 {
		c, _, err := svc.Claim(e.ctx, claimReq(b.ID, fmt.Sprint("user-", i)))
		require.NoError(t, err)
		require.False(t, seen[c.Code], "code %s handed out twice", c.Code)
		seen[c.Code] = true
	}
	_, _, err = svc.Claim(e.ctx, claimReq(b.ID, "late"))
	require.ErrorIs(t, err, coupon.ErrSoldOut)
}

// Paging a user's history while archival moves their claims between pages
// lists every claim once, in order, whatever the cursor's list.
func TestHistoryPagesWhileArchiving(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 40, func(s *coupon.BatchSpec) { s.PerUserLimit = 40 })
	var want []string
	for range 12 {
		want = append(want, e.claim(t, b, "carol").ID)
	}
	e.expireAll(t, 12)
	// Claims made now stay hot: the history runs across the boundary.
	for range 5 {
		want = append(want, e.claim(t, b, "carol").ID)
	}
	// The clock stands still between claims: each group shares its valid_to
	// and is listed by id.
	slices.Sort(want[:12])
	slices.Sort(want[12:])
	e.clock.Advance(40 * 24 * time.Hour)
	before := e.clock.Now().Add(-30 * 24 * time.Hour)

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		cs, next, err := e.svc.UserClaims(e.ctx, service.UserClaimQuery{UserID: "carol", Limit: 3, Cursor: cursor, History: true})
		require.NoError(t, err)
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
		_, err = e.svc.ArchiveClaims(e.ctx, before, 2)
		require.NoError(t, err)
	}
	require.Equal(t, want, got)
	e.archiveAll(t, before, 2)
	hot, _, err := e.svc.UserClaims(e.ctx, service.UserClaimQuery{UserID: "carol", Limit: 100})
	require.NoError(t, err)
	require.Len(t, hot, 5, "the 12 expired claims archived, the 5 recent ones hot")
}

// A refund that names an archived coupon is refused as a conflict, and
// changes nothing: archival is for claims past any refund window.
func TestRefundOfAnArchivedClaimIsRefused(t *testing.T) {
	t.Parallel()
	e := redemptionSetup(t)
	b := e.batch(t, 10)
	c := e.claim(t, b, "amy")
	r := e.reserve(t, "o-archived", "amy", cart(line("a", "", 2000, 1)), c)
	_, err := e.svc.Confirm(e.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
	require.NoError(t, err)
	e.clock.Advance(40 * 24 * time.Hour)
	require.Equal(t, 1, e.archiveAll(t, e.clock.Now().Add(-30*24*time.Hour), 10))

	_, err = e.svc.Refund(e.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r.ID}, By: service.ByAPI})
	requireCode(t, err, coupon.CodeConflict, "refunding an archived coupon")
	got, err := e.svc.GetRedemption(e.ctx, service.RedemptionRef{ID: r.ID})
	require.NoError(t, err)
	require.Equal(t, coupon.RedemptionConfirmed, got.Status, "the refused refund changed nothing")
	claim, err := e.svc.GetClaim(e.ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, coupon.ClaimUsed, claim.Status)
}
