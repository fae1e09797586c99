package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// ProductTags lists the coupon badges of products.
type ProductTags struct {
	Items []ProductTagItem `json:"items" doc:"one per id asked, in the order asked"`
}

// ProductTagItem is the badges of one product, category or merchant.
type ProductTagItem struct {
	ID   string            `json:"id" doc:"the id as asked"`
	Tags []json.RawMessage `json:"tags" doc:"one per claimable batch naming it: batch_id, name, merchant_id, type, amount, min_spend, percent_off, ad_copy, claim_end; empty when none"`
}

func (h *handlers) registerTags(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "product-tags", Method: http.MethodGet, Path: "/v1/products/tags", Tags: []string{"products"},
		Summary: "Coupon badges of products",
		Description: "For up to 100 products in one call, the batches whose coupons can be claimed now and whose rules " +
			"include the product (or, with ids `category:<id>` and `merchant:<id>`, the category or merchant). Answered " +
			"from the engine. Changes are published as `product.tags_changed`.",
	}, func(ctx context.Context, in *struct {
		IDs string `query:"ids" required:"true" maxLength:"13000" doc:"comma-separated product ids (or category:<id>, merchant:<id>), at most 100"`
	}) (*struct{ Body ProductTags }, error) {
		ids := strings.Split(in.IDs, ",")
		tags, err := h.svc.ProductTags(ctx, ids)
		if err != nil {
			return nil, problem(err, "query")
		}
		out := ProductTags{Items: make([]ProductTagItem, len(ids))}
		for i, id := range ids {
			item := ProductTagItem{ID: id, Tags: make([]json.RawMessage, len(tags[i]))}
			for j, t := range tags[i] {
				item.Tags[j] = t.Data
			}
			out.Items[i] = item
		}
		return &struct{ Body ProductTags }{out}, nil
	})
}
