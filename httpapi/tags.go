package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
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
	// The answer is written by hand: each tag is JSON the service encoded
	// when it tagged the products, which encoding/json would parse again to
	// check and compact it (a third of the call's CPU). The schema stays
	// ProductTags's.
	schema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[ProductTags](), true, "ProductTags")
	huma.Register(api, huma.Operation{
		OperationID: "product-tags", Method: http.MethodGet, Path: "/v1/products/tags", Tags: []string{"products"},
		Summary: "Coupon badges of products",
		Description: "For up to 100 products in one call, the batches whose coupons can be claimed now and whose rules " +
			"include the product (or, with ids `category:<id>` and `merchant:<id>`, the category or merchant). Answered " +
			"from the engine. Changes are published as `product.tags_changed`.",
		Responses: map[string]*huma.Response{"200": {Description: "OK", Content: map[string]*huma.MediaType{
			"application/json": {Schema: schema},
		}}},
	}, func(ctx context.Context, in *struct {
		IDs string `query:"ids" required:"true" maxLength:"13000" doc:"comma-separated product ids (or category:<id>, merchant:<id>), at most 100"`
	}) (*struct{ Body func(huma.Context) }, error) {
		ids := strings.Split(in.IDs, ",")
		tags, err := h.svc.ProductTags(ctx, ids)
		if err != nil {
			return nil, problem(err, "query")
		}
		size := 16
		for i, id := range ids {
			size += len(id) + 20
			for _, t := range tags[i] {
				size += len(t.Data) + 1
			}
		}
		b := make([]byte, 0, size)
		b = append(b, `{"items":[`...)
		for i, id := range ids {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, id)
			b = append(b, `,"tags":[`...)
			for j, t := range tags[i] {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, t.Data...)
			}
			b = append(b, "]}"...)
		}
		b = append(b, "]}\n"...)
		return &struct{ Body func(huma.Context) }{func(ctx huma.Context) {
			ctx.SetHeader("Content-Type", "application/json")
			_, _ = ctx.BodyWriter().Write(b)
		}}, nil
	})
}
