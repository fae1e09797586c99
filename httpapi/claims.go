package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// ClaimBody asks for a coupon for a user.
type ClaimBody struct {
	UserID   string `json:"user_id" minLength:"1" maxLength:"128" doc:"the user the coupon is for"`
	Phone    string `json:"phone,omitempty" maxLength:"21" doc:"the user's phone number, digits with an optional leading +"`
	OpenID   string `json:"open_id,omitempty" maxLength:"128" doc:"the user's OpenID"`
	Platform string `json:"platform,omitempty" maxLength:"32" doc:"platform the claim comes from, e.g. ios, android, web"`

	// For the anti-fraud checks (see docs/access.md).
	DeviceID         string    `json:"device_id,omitempty" maxLength:"128" doc:"the user's device id, for lists, rate limits, risk rules and the per-user limit across devices"`
	IP               string    `json:"ip,omitempty" maxLength:"45" doc:"the user's IP address (not the calling server's), for lists, rate limits and risk rules"`
	AccountCreatedAt time.Time `json:"account_created_at,omitzero" doc:"when the user's account was made (RFC 3339), for the account_age risk rule"`
	SMSChallengeID   string    `json:"sms_challenge_id,omitempty" maxLength:"64" doc:"id of an SMS challenge (POST /v1/sms/challenges) when the batch or its risk rules ask for one"`
	SMSCode          string    `json:"sms_code,omitempty" maxLength:"6" doc:"the code of that challenge the user received"`
}

type claimOutput struct {
	Replayed string `header:"Idempotent-Replayed" doc:"\"true\" when this is the stored answer to an earlier request with the same Idempotency-Key; absent otherwise"`
	Body     *coupon.Claim
}

// ClaimList is one page of a user's claims.
type ClaimList struct {
	Items      []*coupon.Claim `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

func (h *handlers) registerClaims(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "claim", Method: http.MethodPost, Path: "/v1/batches/{id}/claims", Tags: []string{"claims"},
		Summary: "Claim a coupon",
		Description: "Hands one code of the batch to the user. The answer comes after the claim is durably stored. " +
			"Refusals: `sold_out`, `limit_reached`, `not_claimable` (window, status or platform), `not_found`; " +
			"and the anti-fraud checks: `blocked`, `not_whitelisted`, `rate_limited` (with Retry-After), `sms_required`, " +
			"`sms_invalid`, `risk_denied`, and for signed requests `bad_signature`, `replayed`. " +
			"With an `Idempotency-Key`, a retry returns the same claim and never makes a second one.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct {
		ID             string `path:"id" maxLength:"64" doc:"batch id"`
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"128" doc:"makes retries safe: 1 to 128 printable ASCII characters"`
		Body           ClaimBody
	}) (*claimOutput, error) {
		c, replayed, err := h.svc.Claim(ctx, service.ClaimRequest{
			BatchID:        in.ID,
			Claimant:       coupon.Claimant{UserID: in.Body.UserID, Phone: in.Body.Phone, OpenID: in.Body.OpenID, Platform: in.Body.Platform},
			IdempotencyKey: in.IdempotencyKey,
			DeviceID:       in.Body.DeviceID, IP: in.Body.IP, AccountCreatedAt: in.Body.AccountCreatedAt,
			SMSChallengeID: in.Body.SMSChallengeID, SMSCode: in.Body.SMSCode,
			Nonce: claimNonce(ctx), // signature.go: the claim step checks a signed claim's nonce
		})
		if err != nil {
			return nil, problem(err, "body")
		}
		out := &claimOutput{Body: c}
		if replayed {
			out.Replayed = "true"
		}
		return out, nil
	})

	// "My coupons" is the hottest read: its answer is written by hand
	// (jsonwrite.go), the same bytes as encoding/json's at a fraction of
	// the CPU. The schema stays ClaimList's.
	claimList := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[ClaimList](), true, "ClaimList")
	huma.Register(api, huma.Operation{
		OperationID: "list-user-claims", Method: http.MethodGet, Path: "/v1/users/{user_id}/claims", Tags: []string{"claims"},
		Summary: "List a user's coupons", Description: "Ordered by expiry, soonest first; keyset-paginated.",
		Responses: map[string]*huma.Response{"200": {Description: "OK", Content: map[string]*huma.MediaType{
			"application/json": {Schema: claimList},
		}}},
	}, func(ctx context.Context, in *struct {
		UserID  string `path:"user_id" maxLength:"128"`
		Status  string `query:"status" enum:"available,locked,used,expired,refunded" doc:"only coupons in this status (as of now)"`
		Limit   int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor  string `query:"cursor" maxLength:"256" doc:"next_cursor of the previous page"`
		History bool   `query:"history" doc:"list archived coupons too (used, expired and refunded long ago), in the same order; a cursor of either list continues either"`
	}) (*struct{ Body func(huma.Context) }, error) {
		cs, next, err := h.svc.UserClaims(ctx, service.UserClaimQuery{UserID: in.UserID, Status: in.Status, Cursor: in.Cursor, Limit: in.Limit, History: in.History})
		if err != nil {
			return nil, problem(err, "query")
		}
		b := appendClaimList(make([]byte, 0, 64+400*len(cs)), ClaimList{Items: cs, NextCursor: next})
		return &struct{ Body func(huma.Context) }{func(ctx huma.Context) {
			ctx.SetHeader("Content-Type", "application/json")
			_, _ = ctx.BodyWriter().Write(b)
		}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-claim", Method: http.MethodGet, Path: "/v1/claims/{id}", Tags: []string{"claims"},
		Summary: "Get a claim",
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"64"`
	}) (*struct{ Body *coupon.Claim }, error) {
		c, err := h.svc.GetClaim(ctx, in.ID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *coupon.Claim }{c}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-code", Method: http.MethodGet, Path: "/v1/codes/{code}", Tags: []string{"codes"},
		Summary:     "Look a code up",
		Description: "Accepts a code as a person may type it (any case, hyphens, I/L for 1, O for 0). A code whose check character does not match is refused as invalid without a lookup.",
	}, func(ctx context.Context, in *struct {
		Code string `path:"code" maxLength:"80"`
	}) (*struct{ Body *coupon.Code }, error) {
		c, err := h.svc.GetCode(ctx, in.Code)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *coupon.Code }{c}, nil
	})
}
