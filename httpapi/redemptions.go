package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/rules"
	"github.com/coupond/coupond/service"
)

// maxRedemptionBody bounds a body with a cart of 200 items.
const maxRedemptionBody = 256 << 10

// QualifyBody asks which of a user's coupons an order can use.
type QualifyBody struct {
	UserID   string      `json:"user_id" minLength:"1" maxLength:"128" doc:"the user whose coupons to consider"`
	Platform string      `json:"platform,omitempty" maxLength:"32" doc:"where the order is placed, e.g. ios; checked against the coupons' usage platforms"`
	Node     string      `json:"node,omitempty" maxLength:"128" doc:"the checkout step, e.g. order or payment; default order"`
	Cart     coupon.Cart `json:"cart" doc:"the order's items and shipping fees"`
}

// QualificationBody is every available or locked coupon of the user on the
// order, and the best combination.
type QualificationBody struct {
	Claims []ClaimQualificationBody `json:"claims" doc:"the user's available and locked coupons, each alone on the cart"`
	Best   *CombinationBody         `json:"best" doc:"the combination that takes off the most while respecting every stacking rule and limit; null when no coupon applies"`
}

// ClaimQualificationBody is one coupon alone on the order.
type ClaimQualificationBody struct {
	Claim    *coupon.Claim `json:"claim" doc:"the coupon"`
	Usable   bool          `json:"usable" doc:"whether the cart can use it"`
	Discount int64         `json:"discount" doc:"what it takes off alone, minor units"`
	Reason   *rules.Reason `json:"reason,omitempty" doc:"why it cannot be used, when it cannot"`
}

// CombinationBody is a combination of coupons, in the order they apply.
type CombinationBody struct {
	Discount int64         `json:"discount" doc:"what the combination takes off, minor units"`
	Coupons  []AppliedBody `json:"coupons" doc:"its coupons, in the order they apply"`
}

// AppliedBody is one coupon of a combination.
type AppliedBody struct {
	ClaimID  string        `json:"claim_id" doc:"the claim"`
	BatchID  string        `json:"batch_id" doc:"its batch"`
	Code     string        `json:"code" doc:"its code"`
	Discount int64         `json:"discount" doc:"what it takes off in the combination, minor units"`
	Lines    []coupon.Line `json:"lines" doc:"its discount split over the cart's lines, with their cost bearers"`
}

// ReserveBody reserves coupons for an order.
type ReserveBody struct {
	OrderID  string      `json:"order_id" minLength:"1" maxLength:"128" doc:"the order; a reservation is idempotent by it"`
	UserID   string      `json:"user_id" minLength:"1" maxLength:"128" doc:"the user whose coupons they are"`
	Platform string      `json:"platform,omitempty" maxLength:"32" doc:"where the order is placed, e.g. ios"`
	Node     string      `json:"node,omitempty" maxLength:"128" doc:"the checkout step; default order"`
	Cart     coupon.Cart `json:"cart" doc:"the order's items and shipping fees"`
	ClaimIDs []string    `json:"claim_ids,omitempty" maxItems:"20" doc:"the coupons by claim id"`
	Codes    []string    `json:"codes,omitempty" maxItems:"20" doc:"the coupons by code"`
}

// DirectBody redeems a code typed at a point of sale.
type DirectBody struct {
	OrderID  string      `json:"order_id" minLength:"1" maxLength:"128" doc:"the order (or the point of sale's ticket); idempotent by it"`
	Code     string      `json:"code" minLength:"1" maxLength:"64" doc:"as typed: an internal code's check character is verified; a partner's code is taken as given"`
	UserID   string      `json:"user_id,omitempty" maxLength:"128" doc:"when given, the code must be this user's"`
	Platform string      `json:"platform,omitempty" maxLength:"32" doc:"where the code is redeemed"`
	Node     string      `json:"node,omitempty" maxLength:"128" doc:"the checkout step; default order"`
	Cart     coupon.Cart `json:"cart" doc:"what is bought"`
}

// RefundBody is one refund of an order.
type RefundBody struct {
	RefundID string              `json:"refund_id,omitempty" maxLength:"128" doc:"the order system's refund id: a refund seen before is not applied again; required with items"`
	Items    []coupon.RefundItem `json:"items,omitempty" maxItems:"200" doc:"refunded quantities; absent: the whole order"`
}

// ResolveBody settles a review.
type ResolveBody struct {
	Outcome string `json:"outcome" enum:"confirm,cancel,dismiss" doc:"confirm: the order was paid; cancel: release the coupons; dismiss: take it off the list"`
}

// RedemptionList is one page of redemptions.
type RedemptionList struct {
	Items      []*coupon.Redemption `json:"items" doc:"the page's redemptions, by id"`
	NextCursor string               `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

type redemptionOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"\"true\" when this is the redemption an earlier request for the same order made"`
	Body     *coupon.Redemption
}

type redemptionIDInput struct {
	ID string `path:"id" maxLength:"64" doc:"redemption id"`
}

type orderIDInput struct {
	OrderID string `path:"order_id" maxLength:"128" doc:"the order's id"`
}

func (h *handlers) registerRedemptions(api huma.API) {
	tags := []string{"redemptions"}
	huma.Register(api, huma.Operation{
		OperationID: "qualify", Method: http.MethodPost, Path: "/v1/qualifications", Tags: tags,
		Summary: "Which coupons an order can use",
		Description: "Lists the user's available and locked coupons, each with whether the cart can use it, what it would take off " +
			"and, when not, why (`reason.code`: status, not_yet_valid, expired, platform, node, scope, min_spend, nothing_to_discount); " +
			"and the best combination, with its discount split over the cart's lines and their cost bearers.",
		MaxBodyBytes: maxRedemptionBody,
	}, func(ctx context.Context, in *struct{ Body QualifyBody }) (*struct{ Body QualificationBody }, error) {
		q, err := h.svc.Qualify(ctx, service.QualifyRequest{UserID: in.Body.UserID, Platform: in.Body.Platform,
			Node: in.Body.Node, Cart: in.Body.Cart})
		if err != nil {
			return nil, problem(err, "body")
		}
		out := QualificationBody{Claims: make([]ClaimQualificationBody, len(q.Claims)), Best: combination(q.Best)}
		for i, c := range q.Claims {
			out.Claims[i] = ClaimQualificationBody{Claim: c.Claim, Usable: c.Usable, Discount: c.Discount, Reason: c.Reason}
		}
		return &struct{ Body QualificationBody }{out}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "reserve", Method: http.MethodPost, Path: "/v1/redemptions", Tags: tags,
		Summary: "Reserve coupons for an order",
		Description: "Locks the coupons to the order in one transaction and returns the discount, split over the cart exactly. " +
			"Idempotent by `order_id`: the same request again returns the same redemption (200, `Idempotent-Replayed: true`); " +
			"another request for the order is a `conflict`, as is a reservation of an order cancelled before it arrived. " +
			"A coupon that cannot be used (locked by another order, used, expired, out of scope, forbidden by the stacking rules) " +
			"is refused with `not_usable`, naming it in `errors`. Confirm or cancel it by API or by the order system's messages; " +
			"unconfirmed after its timeout, coupond asks the order system.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxRedemptionBody,
	}, func(ctx context.Context, in *struct{ Body ReserveBody }) (*redemptionOutput, error) {
		b := in.Body
		r, replayed, err := h.svc.Reserve(ctx, service.ReserveRequest{OrderID: b.OrderID, UserID: b.UserID, Platform: b.Platform,
			Node: b.Node, Cart: b.Cart, ClaimIDs: b.ClaimIDs, Codes: b.Codes})
		return redemptionReply(r, replayed, err)
	})

	huma.Register(api, huma.Operation{
		OperationID: "redeem-code", Method: http.MethodPost, Path: "/v1/redemptions/direct", Tags: tags,
		Summary: "Redeem a code at a point of sale",
		Description: "Reserves and confirms one code in one call. An internal code may be typed in any case, with hyphens; a typo " +
			"is refused by its check character without a lookup. A partner's code (external batch) is taken as given. " +
			"Idempotent by `order_id`.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxRedemptionBody,
	}, func(ctx context.Context, in *struct{ Body DirectBody }) (*redemptionOutput, error) {
		b := in.Body
		r, replayed, err := h.svc.RedeemCode(ctx, service.DirectRequest{OrderID: b.OrderID, Code: b.Code, UserID: b.UserID,
			Platform: b.Platform, Node: b.Node, Cart: b.Cart})
		return redemptionReply(r, replayed, err)
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-redemption", Method: http.MethodGet, Path: "/v1/redemptions/{id}", Tags: tags,
		Summary: "Get a redemption", Description: "The redemption with its coupons, their discount lines and refunds.",
	}, func(ctx context.Context, in *redemptionIDInput) (*struct{ Body *coupon.Redemption }, error) {
		r, err := h.svc.GetRedemption(ctx, service.RedemptionRef{ID: in.ID})
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *coupon.Redemption }{r}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-order-redemption", Method: http.MethodGet, Path: "/v1/orders/{order_id}/redemption", Tags: tags,
		Summary: "Get an order's redemption", Description: "The redemption of an order, found by the order's id.",
	}, func(ctx context.Context, in *orderIDInput) (*struct{ Body *coupon.Redemption }, error) {
		r, err := h.svc.GetRedemption(ctx, service.RedemptionRef{OrderID: in.OrderID})
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *coupon.Redemption }{r}, nil
	})

	transitions := []struct {
		verb, desc string
		do         func(ctx context.Context, ref service.RedemptionRef) (*coupon.Redemption, error)
	}{
		{"confirm", "Marks the coupons used (reserved → confirmed). Confirming again changes nothing; a cancelled redemption stays cancelled (`conflict`).",
			func(ctx context.Context, ref service.RedemptionRef) (*coupon.Redemption, error) {
				return h.svc.Confirm(ctx, ref, service.ByAPI)
			}},
		{"cancel", "Releases the coupons (reserved → cancelled). Cancelling again changes nothing; a confirmed redemption is refunded, not cancelled (`conflict`).",
			func(ctx context.Context, ref service.RedemptionRef) (*coupon.Redemption, error) {
				return h.svc.Cancel(ctx, ref, service.ByAPI)
			}},
	}
	for _, tr := range transitions {
		huma.Register(api, huma.Operation{
			OperationID: tr.verb + "-redemption", Method: http.MethodPost, Path: "/v1/redemptions/{id}/" + tr.verb, Tags: tags,
			Summary: tr.verb + " a redemption", Description: tr.desc,
		}, func(ctx context.Context, in *redemptionIDInput) (*struct{ Body *coupon.Redemption }, error) {
			r, err := tr.do(ctx, service.RedemptionRef{ID: in.ID})
			if err != nil {
				return nil, problem(err, "path")
			}
			return &struct{ Body *coupon.Redemption }{r}, nil
		})
		desc := tr.desc
		if tr.verb == "cancel" {
			desc += " An order that has no redemption yet is recorded as cancelled, so that a reservation arriving later locks nothing."
		}
		huma.Register(api, huma.Operation{
			OperationID: tr.verb + "-order-redemption", Method: http.MethodPost, Path: "/v1/orders/{order_id}/redemption/" + tr.verb, Tags: tags,
			Summary: tr.verb + " an order's redemption", Description: desc + " By the order's id, for an order system that has no reply to its reservation.",
		}, func(ctx context.Context, in *orderIDInput) (*struct{ Body *coupon.Redemption }, error) {
			r, err := tr.do(ctx, service.RedemptionRef{OrderID: in.OrderID})
			if err != nil {
				return nil, problem(err, "path")
			}
			return &struct{ Body *coupon.Redemption }{r}, nil
		})
	}

	refundDesc := "Applies a refund, whole or of some items. A coupon is released only when everything it discounted is refunded; " +
		"then it is given back (available to the same user again) when its batch's refund policy is return and it is still valid, " +
		"and marked refunded otherwise. A refund id seen before changes nothing."
	huma.Register(api, huma.Operation{
		OperationID: "refund-redemption", Method: http.MethodPost, Path: "/v1/redemptions/{id}/refund", Tags: tags,
		Summary: "Refund a redemption", Description: refundDesc, MaxBodyBytes: maxRedemptionBody,
	}, func(ctx context.Context, in *struct {
		ID   string `path:"id" maxLength:"64" doc:"redemption id"`
		Body RefundBody
	}) (*struct{ Body *coupon.Redemption }, error) {
		r, err := h.svc.Refund(ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: in.ID}, RefundID: in.Body.RefundID,
			Items: in.Body.Items, By: service.ByAPI})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *coupon.Redemption }{r}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "refund-order-redemption", Method: http.MethodPost, Path: "/v1/orders/{order_id}/redemption/refund", Tags: tags,
		Summary: "Refund an order's redemption", Description: refundDesc, MaxBodyBytes: maxRedemptionBody,
	}, func(ctx context.Context, in *struct {
		OrderID string `path:"order_id" maxLength:"128" doc:"the order's id"`
		Body    RefundBody
	}) (*struct{ Body *coupon.Redemption }, error) {
		r, err := h.svc.Refund(ctx, service.RefundRequest{Ref: service.RedemptionRef{OrderID: in.OrderID}, RefundID: in.Body.RefundID,
			Items: in.Body.Items, By: service.ByAPI})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *coupon.Redemption }{r}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "list-reviews", Method: http.MethodGet, Path: "/v1/reviews", Tags: tags,
		Summary:     "Redemptions waiting for an operator",
		Description: "Reservations the order system could not be asked about (or said something contradictory about), by id.",
	}, func(ctx context.Context, in *struct {
		Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	}) (*struct{ Body RedemptionList }, error) {
		rs, next, err := h.svc.Reviews(ctx, in.Cursor, in.Limit)
		if err != nil {
			return nil, problem(err, "query")
		}
		if rs == nil {
			rs = []*coupon.Redemption{}
		}
		return &struct{ Body RedemptionList }{RedemptionList{Items: rs, NextCursor: next}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "resolve-review", Method: http.MethodPost, Path: "/v1/reviews/{id}/resolve", Tags: tags,
		Summary: "Resolve a review", Description: "Confirms or cancels the redemption, or dismisses the review; it leaves the list.",
	}, func(ctx context.Context, in *struct {
		ID   string `path:"id" maxLength:"64" doc:"redemption id"`
		Body ResolveBody
	}) (*struct{ Body *coupon.Redemption }, error) {
		r, err := h.svc.ResolveReview(ctx, in.ID, in.Body.Outcome)
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *coupon.Redemption }{r}, nil
	})
}

func redemptionReply(r *coupon.Redemption, replayed bool, err error) (*redemptionOutput, error) {
	if err != nil {
		return nil, problem(err, "body")
	}
	out := &redemptionOutput{Status: http.StatusCreated, Body: r}
	if replayed {
		out.Status, out.Replayed = http.StatusOK, "true"
	}
	return out, nil
}

func combination(r *rules.Result) *CombinationBody {
	if r == nil {
		return nil
	}
	out := &CombinationBody{Discount: r.Discount, Coupons: make([]AppliedBody, len(r.Coupons))}
	for i, a := range r.Coupons {
		out.Coupons[i] = AppliedBody{ClaimID: a.ClaimID, BatchID: a.BatchID, Code: a.Code, Discount: a.Discount, Lines: a.Lines}
	}
	return out
}
