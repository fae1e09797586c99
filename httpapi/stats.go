package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/service"
)

func (h *handlers) registerStats(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "batch-stats", Method: http.MethodGet, Path: "/v1/batches/{id}/stats", Tags: []string{"stats"},
		Summary: "Statistics of a batch",
		Description: "Claimed, redeemed, expired and refunded coupons, the discount given by cost bearer, claim and " +
			"redemption rates: in total and per day, hour, platform and channel. Counted from the event stream, " +
			"live within about a second.",
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"64" doc:"batch id"`
	}) (*struct{ Body *service.BatchStatsView }, error) {
		v, err := h.svc.BatchStats(ctx, in.ID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *service.BatchStatsView }{v}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "merchant-stats", Method: http.MethodGet, Path: "/v1/merchants/{merchant_id}/stats", Tags: []string{"stats"},
		Summary:     "Statistics of a merchant",
		Description: "The totals of every batch of the merchant, and their sum. A merchant credential sees its own merchant only.",
	}, func(ctx context.Context, in *struct {
		MerchantID string `path:"merchant_id" maxLength:"128" doc:"the merchant"`
	}) (*struct{ Body *service.MerchantStatsView }, error) {
		v, err := h.svc.MerchantStats(ctx, in.MerchantID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *service.MerchantStatsView }{v}, nil
	})
}
