package rules

import (
	"fmt"

	"github.com/coupond/coupond/coupon"
)

// RefundPlan is what one refund does to a confirmed redemption.
type RefundPlan struct {
	// Status is refunded once every item is refunded in full, else
	// partially_refunded.
	Status coupon.RedemptionStatus
	// Released are the claims this refund frees: confirmed claims every line
	// of whose discount is now refunded.
	Released []string
	// Refunded is the refunded quantity of each item after the refund.
	Refunded map[string]int64
}

// PlanRefund applies a refund of items (none: everything not refunded yet)
// to a confirmed or partially refunded redemption, by the partial-refund
// rule: a coupon is released only when everything it discounted is
// refunded — each item it took money off refunded in full, and a shipping
// fee it took money off counting as refunded when every item of that
// shipment (the merchant's items; all items for the order's own shipping)
// is. Until then a partial refund leaves the coupon used: what the order
// system pays back for an item is the item's price less the discount the
// lines put on it. A refunded quantity above what is left of an item, or an
// item the cart does not hold, is refused as invalid.
func PlanRefund(r *coupon.Redemption, items []coupon.RefundItem) (*RefundPlan, error) {
	refunded := refundedSoFar(r)
	var v coupon.Validation
	if len(items) == 0 {
		for _, it := range r.Cart.Items {
			refunded[it.ID] = it.Quantity
		}
	}
	for i, ri := range items {
		it, ok := r.Cart.Item(ri.ID)
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case !ok:
			v.Addf(field+".id", "the order has no item %q", ri.ID)
		case ri.Quantity < 1:
			v.Add(field+".quantity", "must be at least 1")
		case refunded[ri.ID]+ri.Quantity > it.Quantity:
			v.Addf(field+".quantity", "only %d of item %q are left to refund", it.Quantity-refunded[ri.ID], ri.ID)
		default:
			refunded[ri.ID] += ri.Quantity
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	full := func(itemID string) bool {
		it, _ := r.Cart.Item(itemID)
		return refunded[itemID] >= it.Quantity
	}
	shipped := func(merchant string) bool {
		for _, it := range r.Cart.Items {
			if (merchant == "" || it.MerchantID == merchant) && !full(it.ID) {
				return false
			}
		}
		return true
	}
	plan := &RefundPlan{Status: coupon.RedemptionRefunded, Refunded: refunded}
	for _, it := range r.Cart.Items {
		if !full(it.ID) {
			plan.Status = coupon.RedemptionPartiallyRefunded
		}
	}
	for _, c := range r.Claims {
		if c.Status != coupon.LineConfirmed {
			continue
		}
		done := true
		for _, l := range c.Lines {
			if l.Kind == coupon.LineShipping && !shipped(l.MerchantID) || l.Kind == coupon.LineItem && !full(l.Item) {
				done = false
				break
			}
		}
		if done {
			plan.Released = append(plan.Released, c.ClaimID)
		}
	}
	return plan, nil
}

// refundedSoFar sums the refunds of a redemption by item; a refund without
// items refunded everything.
func refundedSoFar(r *coupon.Redemption) map[string]int64 {
	out := map[string]int64{}
	for _, rf := range r.Refunds {
		if len(rf.Items) == 0 {
			for _, it := range r.Cart.Items {
				out[it.ID] = it.Quantity
			}
			return out
		}
		for _, ri := range rf.Items {
			out[ri.ID] += ri.Quantity
		}
	}
	return out
}
