package httpapi

import (
	"github.com/coupond/coupond/coupon"
)

// The documentation of the redemption operations: schema descriptions and
// each operation's examples and problems, added to the tables document uses.
func init() {
	for name, doc := range map[string]string{
		"QualifyBody":            "a question: which of a user's coupons can this cart use",
		"QualificationBody":      "the user's coupons on a cart, and the best combination",
		"ClaimQualificationBody": "one coupon alone on a cart",
		"CombinationBody":        "a combination of coupons with its discount",
		"AppliedBody":            "one coupon of a combination",
		"ReserveBody":            "a reservation of coupons for an order",
		"DirectBody":             "a code to redeem at once, at a point of sale",
		"RefundBody":             "one refund of an order, whole or of some items",
		"ResolveBody":            "how an operator settles a review",
		"RedemptionList":         "one page of redemptions",
		"Redemption":             "one order's use of coupons: reserved, then confirmed or cancelled, and perhaps refunded",
		"RedemptionClaim":        "one coupon an order uses, with its discount split over the cart",
		"Cart":                   "what an order buys: its items and shipping fees",
		"CartItem":               "one line of an order",
		"ShippingFee":            "the shipping of one merchant's shipment, or of the order",
		"Line":                   "the part of a coupon's discount that falls on one cart item or shipping fee",
		"Cost":                   "the share of a line's discount one party bears",
		"Refund":                 "one refund applied to a redemption",
		"RefundItem":             "a refunded quantity of one cart item",
		"Review":                 "why a redemption waits for an operator",
		"Reason":                 "why a coupon cannot be used",
	} {
		schemaDocs[name] = doc
	}

	notFound := exProblem(404, "not_found", "redemption "+exRedemptionID+": not found")
	confirmed, cancelled := exRedemption("confirmed"), exRedemption("cancelled")
	notUsable := map[string]any{"title": "Conflict", "status": 409, "code": coupon.CodeNotUsable, "detail": coupon.ErrNotUsable.Message,
		"errors": []any{map[string]any{"location": "body.claim_ids[0]", "message": "status: the coupon is locked"}}}
	invalidCart := map[string]any{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
		"errors": []any{map[string]any{"location": "body.cart.items", "message": "must hold at least one item"}}}
	refund := map[string]any{"refund_id": "rf-1", "items": []any{map[string]any{"id": "line-1", "quantity": 1}}}
	for id, d := range map[string]struct {
		request  any
		response any
		problems []map[string]any
	}{
		"qualify": {
			request:  map[string]any{"user_id": "alice", "platform": "ios", "node": "order", "cart": exCart()},
			response: exQualification(),
			problems: []map[string]any{invalidCart, exProblem(413, "too_large", "request body is too large")},
		},
		"reserve": {
			request: map[string]any{"order_id": "o-1001", "user_id": "alice", "platform": "ios", "cart": exCart(),
				"claim_ids": []any{exClaimID}},
			response: exRedemption("reserved"),
			problems: []map[string]any{notUsable, invalidCart,
				exProblem(409, "conflict", "order o-1001 has a redemption already ("+exRedemptionID+"), made with a different request")},
		},
		"redeem-code": {
			request:  map[string]any{"order_id": "pos-77", "code": "d11-7k3m-9q2x-4wz", "platform": "pos", "cart": exCart()},
			response: confirmed,
			problems: []map[string]any{
				{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
					"errors": []any{map[string]any{"location": "body.code", "message": "does not match its check character (mistyped?)"}}},
				{"title": "Conflict", "status": 409, "code": coupon.CodeNotUsable, "detail": coupon.ErrNotUsable.Message,
					"errors": []any{map[string]any{"location": "body.codes[0]", "message": "not_issued: the code has not been claimed by anyone"}}},
			},
		},
		"get-redemption":       {response: confirmed, problems: []map[string]any{notFound}},
		"get-order-redemption": {response: confirmed, problems: []map[string]any{exProblem(404, "not_found", "redemption o-1001: not found")}},
		"confirm-redemption": {response: confirmed, problems: []map[string]any{notFound,
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is cancelled and cannot be confirmed")}},
		"confirm-order-redemption": {response: confirmed, problems: []map[string]any{
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is cancelled and cannot be confirmed")}},
		"cancel-redemption": {response: cancelled, problems: []map[string]any{notFound,
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is confirmed and cannot be cancelled; refund it instead")}},
		"cancel-order-redemption": {response: cancelled, problems: []map[string]any{
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is confirmed and cannot be cancelled; refund it instead")}},
		"refund-redemption": {request: refund, response: exRedemption("partially_refunded"), problems: []map[string]any{notFound,
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "body.items[0].quantity", "message": `only 1 of item "line-1" are left to refund`}}}}},
		"refund-order-redemption": {request: refund, response: exRedemption("partially_refunded"), problems: []map[string]any{
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is cancelled: its coupons were released, nothing to refund")}},
		"list-reviews": {response: map[string]any{"items": []any{exRedemption("review")}}},
		"resolve-review": {request: map[string]any{"outcome": "cancel"}, response: cancelled, problems: []map[string]any{notFound,
			exProblem(409, "conflict", "redemption "+exRedemptionID+" is not on the review list")}},
	} {
		opDocs[id] = d
	}
}

const exRedemptionID = "01JD5QC4R8S2T6V0W4X8Y2Z6A0"

func exCart() map[string]any {
	return map[string]any{
		"items": []any{
			map[string]any{"id": "line-1", "product_id": "sku-88", "category_ids": []any{"phones", "electronics"},
				"merchant_id": "m-1024", "unit_price": 159900, "quantity": 1},
			map[string]any{"id": "line-2", "product_id": "sku-12", "merchant_id": "m-2048", "unit_price": 2500, "quantity": 2},
		},
		"shipping": []any{map[string]any{"merchant_id": "m-1024", "amount": 1000}},
	}
}

func exLines() []any {
	return []any{map[string]any{"kind": "item", "item": "line-1", "amount": 500,
		"costs": []any{map[string]any{"bearer": "merchant", "merchant_id": "m-1024", "amount": 500}}}}
}

func exQualification() map[string]any {
	return map[string]any{
		"claims": []any{
			map[string]any{"claim": exClaim(), "usable": true, "discount": 500},
			map[string]any{"claim": exClaim(), "usable": false, "discount": 0,
				"reason": map[string]any{"code": "min_spend", "message": "the eligible items come to 5000, below the minimum spend of 10000"}},
		},
		"best": map[string]any{"discount": 500, "coupons": []any{
			map[string]any{"claim_id": exClaimID, "batch_id": exBatchID, "code": exCode, "discount": 500, "lines": exLines()},
		}},
	}
}

// exRedemption is a redemption in status (review: reserved, waiting for an operator).
func exRedemption(status string) map[string]any {
	line := "reserved"
	r := map[string]any{
		"id": exRedemptionID, "order_id": "o-1001", "user_id": "alice", "platform": "ios", "node": "order",
		"discount": 500, "cart": exCart(), "reason": "api",
		"reserved_at": exTime, "expires_at": "2026-11-11T00:15:03Z", "updated_at": exTime,
	}
	switch status {
	case "review":
		status = "reserved"
		r["review"] = map[string]any{"reason": "the order system gave no answer in 5 attempts: HTTP 503", "since": "2026-11-11T00:35:00Z", "attempts": 5}
	case "confirmed":
		line, r["confirmed_at"], r["updated_at"] = "confirmed", "2026-11-11T00:02:10Z", "2026-11-11T00:02:10Z"
	case "cancelled":
		line, r["cancelled_at"], r["updated_at"] = "released", "2026-11-11T00:02:10Z", "2026-11-11T00:02:10Z"
	case "partially_refunded":
		line, r["confirmed_at"] = "confirmed", "2026-11-11T00:02:10Z"
		r["refunds"] = []any{map[string]any{"id": "rf-1", "items": []any{map[string]any{"id": "line-2", "quantity": 1}}, "at": "2026-11-13T09:00:00Z"}}
		r["refunded_at"], r["updated_at"] = "2026-11-13T09:00:00Z", "2026-11-13T09:00:00Z"
	}
	r["status"] = status
	r["claims"] = []any{map[string]any{"claim_id": exClaimID, "batch_id": exBatchID, "code": exCode, "discount": 500,
		"status": line, "lines": exLines()}}
	return r
}
