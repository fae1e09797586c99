package postgres

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// TestHeldIndexBacksReservations: if a claim's status were wrong (a bug, a
// hand edit), the unique index on held redemption lines still refuses a
// second redemption of it.
func TestHeldIndexBacksReservations(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, b))
	codes := addCodes(t, s, b, 1)
	w := claimWrite(b, codes[0].Code, codes[0].Amount, "u", now)
	require.NoError(t, s.InsertClaims(ctx, []store.ClaimWrite{w})[0])
	c := w.Claim

	reserve := func(order string) error {
		r := &coupon.Redemption{ID: coupon.NewID(now), OrderID: order, UserID: "u", Status: coupon.RedemptionReserved,
			Cart: coupon.Cart{Items: []coupon.CartItem{{ID: "1", ProductID: "p", UnitPrice: 1000, Quantity: 1}}},
			Claims: []coupon.RedemptionClaim{{ClaimID: c.ID, BatchID: b.ID, Code: c.Code, Discount: 100, Status: coupon.LineReserved,
				Lines: []coupon.Line{{Kind: coupon.LineItem, Item: "1", Amount: 100}}}},
			ReservedAt: now, ExpiresAt: now, UpdatedAt: now, NextCheckAt: now}
		_, err := s.Reserve(ctx, store.ReserveRedemption{Redemption: r, At: now.Add(time.Hour),
			Event: store.Event{Type: "redemption.reserved", AggregateID: r.ID, Payload: json.RawMessage(`{}`)}})
		return err
	}
	require.NoError(t, reserve("o1"))
	_, err := s.primary.Exec(ctx, `UPDATE claims SET status = 'available' WHERE id = $1`, c.ID)
	require.NoError(t, err)

	err = reserve("o2")
	var ue *store.ClaimUnavailableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, store.UnavailableHeld, ue.Reason)
	_, err = s.GetRedemptionByOrder(ctx, "o2")
	require.ErrorIs(t, err, store.ErrNotFound, "nothing of o2 was written")
}
