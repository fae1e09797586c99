package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// CodeList is one page of codes.
type CodeList struct {
	Items      []*coupon.Code `json:"items" doc:"the page's codes, by code"`
	NextCursor string         `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

// ClaimSearchQuery is the query of a claims search or export. It is
// exported because huma finds the parameters of embedded structs only when
// their type is exported.
type ClaimSearchQuery struct {
	BatchID     string `query:"batch_id" maxLength:"64" doc:"claims of this batch"`
	MerchantID  string `query:"merchant_id" maxLength:"128" doc:"claims of this merchant's batches (a merchant credential sees its own only)"`
	UserID      string `query:"user_id" maxLength:"128" doc:"claims of this user"`
	Phone       string `query:"phone" maxLength:"21" doc:"claims made with this phone number"`
	Code        string `query:"code" maxLength:"80" doc:"the claim of this code"`
	Channel     string `query:"channel" maxLength:"128" doc:"claims of this channel"`
	Status      string `query:"status" enum:"available,locked,used,expired,refunded" doc:"claims in this status (as of now)"`
	ClaimedFrom string `query:"claimed_from" maxLength:"40" doc:"claimed at or after (RFC 3339)"`
	ClaimedTo   string `query:"claimed_to" maxLength:"40" doc:"claimed before (RFC 3339)"`
	ValidToFrom string `query:"valid_to_from" maxLength:"40" doc:"validity ending at or after (RFC 3339)"`
	ValidToTo   string `query:"valid_to_to" maxLength:"40" doc:"validity ending before (RFC 3339)"`
}

func (in ClaimSearchQuery) query() (service.ClaimSearch, error) {
	var t times
	q := service.ClaimSearch{BatchID: in.BatchID, MerchantID: in.MerchantID, UserID: in.UserID, Phone: in.Phone,
		Code: in.Code, Channel: in.Channel, Status: in.Status,
		ClaimedFrom: t.parse("claimed_from", in.ClaimedFrom), ClaimedTo: t.parse("claimed_to", in.ClaimedTo),
		ValidToFrom: t.parse("valid_to_from", in.ValidToFrom), ValidToTo: t.parse("valid_to_to", in.ValidToTo)}
	return q, t.Err()
}

// times parses the RFC 3339 times of a query, collecting the bad ones.
type times struct{ coupon.Validation }

func (t *times) parse(field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Add(field, "must be an RFC 3339 time, e.g. 2026-11-26T12:00:00Z")
	}
	return at
}

func (h *handlers) registerQueries(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "user-badges", Method: http.MethodGet, Path: "/v1/users/{user_id}/badges", Tags: []string{"claims"},
		Summary:     "Count a user's coupons",
		Description: "The badges of a \"my coupons\" entry point: coupons available now, and those of them expiring soon. Served from the same cache as the list; exact after the user's own claim or redemption.",
	}, func(ctx context.Context, in *struct {
		UserID string `path:"user_id" maxLength:"128"`
	}) (*struct{ Body *service.Badges }, error) {
		b, err := h.svc.UserBadges(ctx, in.UserID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *service.Badges }{b}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "search-claims", Method: http.MethodGet, Path: "/v1/search/claims", Tags: []string{"search"},
		Summary: "Search claims",
		Description: "Claims matching every filter given, hot and archived alike (a claim archived between two pages is listed once), " +
			"newest first, keyset-paginated. Each filter is served by an index, " +
			"at any table size; reads the replica where one is configured (a change of the last moments may be missing).",
	}, func(ctx context.Context, in *struct {
		ClaimSearchQuery
		Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	}) (*struct{ Body ClaimList }, error) {
		q, err := in.query()
		if err != nil {
			return nil, problem(err, "query")
		}
		q.Limit, q.Cursor = in.Limit, in.Cursor
		cs, next, err := h.svc.SearchClaims(ctx, q)
		if err != nil {
			return nil, problem(err, "query")
		}
		if cs == nil {
			cs = []*coupon.Claim{}
		}
		return &struct{ Body ClaimList }{ClaimList{Items: cs, NextCursor: next}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "export-claims", Method: http.MethodGet, Path: "/v1/search/claims.csv", Tags: []string{"search"},
		Summary: "Export claims as CSV",
		Description: "Every claim matching the filters, archived ones included, newest first, streamed as CSV (RFC 4180, a header line first) while it is " +
			"read: millions of rows in flat memory. An error after the first row ends the stream early.",
		Responses: map[string]*huma.Response{"200": {Description: "CSV", Content: map[string]*huma.MediaType{"text/csv": {}}}},
	}, func(ctx context.Context, in *struct {
		ClaimSearchQuery
	}) (*huma.StreamResponse, error) {
		q, err := in.query()
		if err != nil {
			return nil, problem(err, "query")
		}
		// Check the filters before the status line goes out.
		if err := h.svc.CheckClaimSearch(ctx, q); err != nil {
			return nil, problem(err, "query")
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			hctx.SetHeader("Content-Type", "text/csv; charset=utf-8")
			hctx.SetHeader("Content-Disposition", `attachment; filename="`+service.ExportName(time.Now())+`"`)
			hctx.SetStatus(http.StatusOK)
			n, err := h.svc.ExportClaims(ctx, q, hctx.BodyWriter())
			if err != nil {
				h.log.WarnContext(ctx, "claims export ended early", "rows", n, "err", err)
			}
		}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "search-codes", Method: http.MethodGet, Path: "/v1/search/codes", Tags: []string{"search"},
		Summary: "Search codes", Description: "Codes matching every filter given, by code, keyset-paginated.",
	}, func(ctx context.Context, in *struct {
		BatchID     string `query:"batch_id" maxLength:"64" doc:"codes of this batch"`
		MerchantID  string `query:"merchant_id" maxLength:"128" doc:"codes of this merchant's batches (a merchant credential sees its own only)"`
		Code        string `query:"code" maxLength:"80"`
		Status      string `query:"status" enum:"claimed,unclaimed" doc:"claimed: in a claim; unclaimed: not yet"`
		CreatedFrom string `query:"created_from" maxLength:"40" doc:"generated at or after (RFC 3339)"`
		CreatedTo   string `query:"created_to" maxLength:"40" doc:"generated before (RFC 3339)"`
		Limit       int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor      string `query:"cursor" maxLength:"80" doc:"next_cursor of the previous page"`
	}) (*struct{ Body CodeList }, error) {
		var t times
		from, to := t.parse("created_from", in.CreatedFrom), t.parse("created_to", in.CreatedTo)
		if err := t.Err(); err != nil {
			return nil, problem(err, "query")
		}
		cs, next, err := h.svc.SearchCodes(ctx, service.CodeSearch{BatchID: in.BatchID, MerchantID: in.MerchantID, Code: in.Code,
			Status: in.Status, CreatedFrom: from, CreatedTo: to, Cursor: in.Cursor, Limit: in.Limit})
		if err != nil {
			return nil, problem(err, "query")
		}
		if cs == nil {
			cs = []*coupon.Code{}
		}
		return &struct{ Body CodeList }{CodeList{Items: cs, NextCursor: next}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "search-redemptions", Method: http.MethodGet, Path: "/v1/search/redemptions", Tags: []string{"search"},
		Summary: "Search redemptions", Description: "Redemptions matching every filter given, newest first, keyset-paginated.",
	}, func(ctx context.Context, in *struct {
		UserID       string `query:"user_id" maxLength:"128"`
		OrderID      string `query:"order_id" maxLength:"128" doc:"the redemption of this order"`
		BatchID      string `query:"batch_id" maxLength:"64" doc:"redemptions using a coupon of this batch"`
		MerchantID   string `query:"merchant_id" maxLength:"128" doc:"redemptions using a coupon of this merchant's batches"`
		Status       string `query:"status" enum:"reserved,confirmed,cancelled,partially_refunded,refunded" doc:"redemptions in this status"`
		ReservedFrom string `query:"reserved_from" maxLength:"40" doc:"reserved at or after (RFC 3339)"`
		ReservedTo   string `query:"reserved_to" maxLength:"40" doc:"reserved before (RFC 3339)"`
		Limit        int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor       string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	}) (*struct{ Body RedemptionList }, error) {
		var t times
		from, to := t.parse("reserved_from", in.ReservedFrom), t.parse("reserved_to", in.ReservedTo)
		if err := t.Err(); err != nil {
			return nil, problem(err, "query")
		}
		rs, next, err := h.svc.SearchRedemptions(ctx, service.RedemptionSearch{UserID: in.UserID, OrderID: in.OrderID,
			BatchID: in.BatchID, MerchantID: in.MerchantID, Status: in.Status, ReservedFrom: from,
			ReservedTo: to, Cursor: in.Cursor, Limit: in.Limit})
		if err != nil {
			return nil, problem(err, "query")
		}
		if rs == nil {
			rs = []*coupon.Redemption{}
		}
		return &struct{ Body RedemptionList }{RedemptionList{Items: rs, NextCursor: next}}, nil
	})
}
