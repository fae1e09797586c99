package service_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
)

// envelopes returns the outbox's events as the bus carries them.
func (q *qEnv) envelopes(t *testing.T) []bus.Envelope {
	t.Helper()
	evs, err := q.store.PendingEvents(q.ctx, 1000)
	require.NoError(t, err)
	out := make([]bus.Envelope, len(evs))
	for i, e := range evs {
		out[i] = bus.Envelope{ID: e.ID, Type: e.Type, AggregateID: e.AggregateID, OccurredAt: e.CreatedAt, Data: e.Payload}
	}
	return out
}

// TestStatsCountEachEventOnce: the events of claims, a redemption, its
// refund and an expiry, fed to the statistics three times over and in
// overlapping batches, count once each.
func TestStatsCountEachEventOnce(t *testing.T) {
	q := querySetup(t, memory.New())
	b := q.batch(t, 4, func(s *coupon.BatchSpec) {
		s.MerchantID, s.Channel = "shop-1", "feed"
		s.Rules = []coupon.Rule{{RefType: "merchant", RefID: "shop-1", UseType: "bear", Value: 2500},
			{RefType: "platform", UseType: "bear", Value: 7500}}
	})
	c1 := q.claim(t, b, "st1")
	q.claim(t, b, "st2")
	_, _, err := q.svc.Claim(q.ctx, service.ClaimRequest{BatchID: b.ID, Claimant: coupon.Claimant{UserID: "st3", Platform: "android"}})
	require.NoError(t, err)
	r := q.reserve(t, "o-st", "st1", c1)
	_, err = q.svc.Confirm(q.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
	require.NoError(t, err)
	_, err = q.svc.Refund(q.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r.ID}, By: service.ByAPI})
	require.NoError(t, err)

	envs := q.envelopes(t)
	require.NoError(t, q.svc.ApplyStatsEvents(q.ctx, envs[:3]))
	require.NoError(t, q.svc.ApplyStatsEvents(q.ctx, envs))     // redelivered, with new ones
	require.NoError(t, q.svc.ApplyStatsEvents(q.ctx, envs[2:])) // and again
	v, err := q.svc.BatchStats(q.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, int64(3), v.Totals.Claimed)
	require.Equal(t, int64(1500), v.Totals.ClaimedAmount)
	require.Equal(t, int64(1), v.Totals.Reserved)
	require.Equal(t, int64(1), v.Totals.Redeemed)
	require.Equal(t, int64(500), v.Totals.Discount)
	require.Equal(t, int64(125), v.Totals.DiscountMerchant, "the merchant bears 25%")
	require.Equal(t, int64(375), v.Totals.DiscountPlatform)
	require.Equal(t, int64(1), v.Totals.Refunded)
	require.Equal(t, int64(4), v.TotalQuantity)
	require.InDelta(t, 0.75, v.ClaimRate, 1e-9)
	require.InDelta(t, 1.0/3, v.RedemptionRate, 1e-9)
	require.Len(t, v.ByDay, 1)
	require.Equal(t, q.clock.Now().Format("2006-01-02"), v.ByDay[0].Key)
	plats := map[string]int64{}
	for _, p := range v.ByPlatform {
		plats[p.Key] = p.Claimed
	}
	require.Equal(t, map[string]int64{"": 2, "android": 1}, plats)
	require.Equal(t, "feed", v.ByChannel[0].Key)

	m, err := q.svc.MerchantStats(q.ctx, "shop-1")
	require.NoError(t, err)
	require.Equal(t, v.Totals, m.Totals)
	require.Len(t, m.Batches, 1)

	// The fourth claim counted sells the batch out: batch.stock_out.
	q.claim(t, b, "st4")
	require.NoError(t, q.svc.ApplyStatsEvents(q.ctx, q.envelopes(t)))
	require.Len(t, q.events(t, bus.TypeBatchStockOut, b.ID), 1)
	v, err = q.svc.BatchStats(q.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, int64(4), v.Totals.Claimed)
}
