package httpapi

import "github.com/coupond/coupond/coupon"

// The documentation of the query side ("my coupons" badges, search,
// statistics, product tags): each operation's examples and problems, added
// to the tables document uses.
func init() {
	counts := func(claimed, redeemed int) map[string]any {
		return map[string]any{
			"claimed": claimed, "claimed_amount": claimed * 500, "redeemed": redeemed, "discount": redeemed * 500,
			"discount_platform": redeemed * 300, "discount_merchant": redeemed * 200, "expired": 0,
			"refunded": 0, "refunded_discount": 0, "reserved": redeemed + 2, "released": 2,
		}
	}
	bucket := func(key string, claimed, redeemed int) map[string]any {
		b := counts(claimed, redeemed)
		b["key"] = key
		b["claim_rate"], b["redemption_rate"] = float64(claimed)/100000, float64(redeemed)/float64(claimed)
		return b
	}
	batchNotFound := exProblem(404, "not_found", "batch "+exBatchID+": not found")
	badQuery := func(field, msg string) map[string]any {
		return map[string]any{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
			"errors": []any{map[string]any{"location": "query." + field, "message": msg}}}
	}
	for id, d := range map[string]struct {
		request  any
		response any
		problems []map[string]any
	}{
		"user-badges": {response: map[string]any{"available": 3, "expiring_soon": 1, "expiring_soon_seconds": 259200}},
		"search-claims": {
			response: map[string]any{"items": []any{exClaim()}, "next_cursor": exClaimID},
			problems: []map[string]any{badQuery("claimed_to", "must be after claimed_from")},
		},
		"search-codes": {
			response: map[string]any{"items": []any{map[string]any{
				"code": exCode, "batch_id": exBatchID, "status": "claimed", "amount": 500, "seq": 1,
				"claim_id": exClaimID, "created_at": "2026-11-10T23:00:00Z",
			}}, "next_cursor": exCode},
		},
		"search-redemptions": {
			response: map[string]any{"items": []any{exRedemption("confirmed")}, "next_cursor": exRedemptionID},
			problems: []map[string]any{badQuery("reserved_from", "must be an RFC 3339 time, e.g. 2026-11-26T12:00:00Z")},
		},
		"batch-stats": {
			response: map[string]any{
				"batch_id": exBatchID, "merchant_id": "m-1024", "total_quantity": 100000, "generated": 100000,
				"totals": counts(1200, 300), "claim_rate": 0.012, "redemption_rate": 0.25,
				"by_day":      []any{bucket("2026-11-11", 1200, 300)},
				"by_hour":     []any{bucket("2026-11-11T00:00:00Z", 1000, 250), bucket("2026-11-11T01:00:00Z", 200, 50)},
				"by_platform": []any{bucket("android", 500, 100), bucket("ios", 700, 200)},
				"by_channel":  []any{bucket("homepage-banner", 1200, 300)},
			},
			problems: []map[string]any{batchNotFound},
		},
		"merchant-stats": {
			response: map[string]any{"merchant_id": "m-1024", "totals": counts(1200, 300), "redemption_rate": 0.25,
				"batches": []any{func() map[string]any { b := counts(1200, 300); b["batch_id"] = exBatchID; return b }()}},
			problems: []map[string]any{exProblem(404, "not_found", "merchant m-2048: "+coupon.ErrNotFound.Message)},
		},
		"product-tags": {
			response: map[string]any{"items": []any{
				map[string]any{"id": "sku-88", "tags": []any{map[string]any{
					"batch_id": exBatchID, "name": "Double 11: 5.00 off", "merchant_id": "m-1024", "type": "cash",
					"amount": 500, "ad_copy": "5.00 off any order over 50.00", "claim_end": "2026-11-12T00:00:00Z",
				}}},
				map[string]any{"id": "sku-12", "tags": []any{}},
			}},
			problems: []map[string]any{badQuery("ids", "name at most 100 products")},
		},
	} {
		opDocs[id] = d
	}
}
