package rules_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/rules"
)

// TestPlanRefund: the partial-refund rule. A coupon is released only when
// everything it discounted is refunded; a shipping discount counts as
// refunded with every item of its shipment.
func TestPlanRefund(t *testing.T) {
	t.Parallel()
	cart := coupon.Cart{
		Items: []coupon.CartItem{
			{ID: "a", ProductID: "p", MerchantID: "m1", UnitPrice: 100, Quantity: 2},
			{ID: "b", ProductID: "q", MerchantID: "m1", UnitPrice: 300, Quantity: 1},
			{ID: "c", ProductID: "r", MerchantID: "m2", UnitPrice: 500, Quantity: 1},
		},
		Shipping: []coupon.ShippingFee{{MerchantID: "m1", Amount: 80}},
	}
	itemLine := func(id string) coupon.Line { return coupon.Line{Kind: coupon.LineItem, Item: id, Amount: 10} }
	r := &coupon.Redemption{Status: coupon.RedemptionConfirmed, Cart: cart, Claims: []coupon.RedemptionClaim{
		{ClaimID: "shop", Status: coupon.LineConfirmed, Lines: []coupon.Line{itemLine("a"), itemLine("b")}},
		{ClaimID: "ship", Status: coupon.LineConfirmed, Lines: []coupon.Line{{Kind: coupon.LineShipping, MerchantID: "m1", Amount: 80}}},
		{ClaimID: "other", Status: coupon.LineConfirmed, Lines: []coupon.Line{itemLine("c")}},
	}}
	refund := func(items ...coupon.RefundItem) *rules.RefundPlan {
		t.Helper()
		p, err := rules.PlanRefund(r, items)
		require.NoError(t, err)
		return p
	}

	p := refund(coupon.RefundItem{ID: "a", Quantity: 1})
	require.Equal(t, coupon.RedemptionPartiallyRefunded, p.Status)
	require.Empty(t, p.Released, "half of item a: nothing released")

	p = refund(coupon.RefundItem{ID: "a", Quantity: 2}, coupon.RefundItem{ID: "c", Quantity: 1})
	require.Equal(t, []string{"other"}, p.Released, "item c in full releases its coupon; b is left")

	p = refund(coupon.RefundItem{ID: "a", Quantity: 2}, coupon.RefundItem{ID: "b", Quantity: 1})
	require.Equal(t, []string{"shop", "ship"}, p.Released, "all of m1's items: its coupon and its shipment's")
	require.Equal(t, coupon.RedemptionPartiallyRefunded, p.Status)

	p = refund()
	require.Equal(t, coupon.RedemptionRefunded, p.Status)
	require.Equal(t, []string{"shop", "ship", "other"}, p.Released)

	// Earlier refunds count: after a and b went back, c finishes the order.
	r.Refunds = []coupon.Refund{{ID: "r1", Items: []coupon.RefundItem{{ID: "a", Quantity: 2}, {ID: "b", Quantity: 1}}}}
	r.Claims[0].Status, r.Claims[1].Status = coupon.LineReturned, coupon.LineReturned
	p = refund(coupon.RefundItem{ID: "c", Quantity: 1})
	require.Equal(t, coupon.RedemptionRefunded, p.Status)
	require.Equal(t, []string{"other"}, p.Released, "released coupons are not released again")

	for _, bad := range [][]coupon.RefundItem{
		{{ID: "a", Quantity: 1}},  // only 0 left after r1
		{{ID: "zz", Quantity: 1}}, // no such item
		{{ID: "c", Quantity: 2}},  // more than bought
		{{ID: "c", Quantity: 0}},
	} {
		_, err := rules.PlanRefund(r, bad)
		require.Error(t, err, "%v", bad)
		require.Equal(t, coupon.CodeInvalid, coupon.ErrorCode(err))
	}
}
