package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// BatchBody is a batch with its live counts.
type BatchBody struct {
	*coupon.Batch
	ClaimedCount   int64 `json:"claimed_count" doc:"claims made"`
	RemainingCount int64 `json:"remaining_count" doc:"total_quantity − claimed_count"`
	PoolDepth      int64 `json:"pool_depth" doc:"codes ready to be claimed"`
	LoadedSeq      int64 `json:"loaded_seq" doc:"highest sequence number of the codes loaded into the pool; below generated_count while a chunk is on its way to the pool"`
}

func batchBody(v *service.BatchView) *BatchBody {
	return &BatchBody{Batch: v.Batch, ClaimedCount: v.ClaimedCount, RemainingCount: v.RemainingCount, PoolDepth: v.PoolDepth, LoadedSeq: v.LoadedSeq}
}

type batchOutput struct {
	Body *BatchBody
}

type batchIDInput struct {
	ID string `path:"id" maxLength:"64" doc:"batch id"`
}

// BatchList is one page of batches.
type BatchList struct {
	Items      []*coupon.Batch `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

func (h *handlers) registerBatches(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "create-batch", Method: http.MethodPost, Path: "/v1/batches", Tags: []string{"batches"},
		Summary:       "Create a batch",
		Description:   "Creates a draft batch. Publish it to generate its codes and open it for claims.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxBatchBody,
	}, func(ctx context.Context, in *struct{ Body coupon.BatchSpec }) (*batchOutput, error) {
		v, err := h.svc.CreateBatch(ctx, in.Body)
		if err != nil {
			return nil, problem(err, "body")
		}
		return &batchOutput{Body: batchBody(v)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "list-batches", Method: http.MethodGet, Path: "/v1/batches", Tags: []string{"batches"},
		Summary: "List batches", Description: "Newest first, keyset-paginated.",
	}, func(ctx context.Context, in *struct {
		Status     string `query:"status" enum:"draft,active,paused,ended" doc:"only batches in this status"`
		MerchantID string `query:"merchant_id" maxLength:"128" doc:"only this merchant's batches"`
		Limit      int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor     string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	}) (*struct{ Body BatchList }, error) {
		bs, next, err := h.svc.ListBatches(ctx, service.BatchQuery{Status: in.Status, MerchantID: in.MerchantID, Cursor: in.Cursor, Limit: in.Limit})
		if err != nil {
			return nil, problem(err, "query")
		}
		if bs == nil {
			bs = []*coupon.Batch{}
		}
		return &struct{ Body BatchList }{BatchList{Items: bs, NextCursor: next}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-batch", Method: http.MethodGet, Path: "/v1/batches/{id}", Tags: []string{"batches"},
		Summary: "Get a batch with its live counts",
	}, func(ctx context.Context, in *batchIDInput) (*batchOutput, error) {
		v, err := h.svc.GetBatch(ctx, in.ID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &batchOutput{Body: batchBody(v)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "update-batch", Method: http.MethodPatch, Path: "/v1/batches/{id}", Tags: []string{"batches"},
		Summary: "Edit a draft batch",
		Description: "Replaces the whole configuration of a draft batch — every attribute and rule — with the body, " +
			"which is what create-batch takes (a field left out takes its default, as at creation) and is validated the " +
			"same way. The batch's version rises by one and batch.updated is published. Only a draft that holds no " +
			"codes can be edited: a published batch keeps its configuration (not_draft; make a new draft from it), and " +
			"so does a draft whose publication has started or that holds imported codes (conflict). Send If-Match " +
			"with the version you edited, e.g. `If-Match: \"3\"`, to be refused (precondition_failed) rather than " +
			"overwrite an edit made since. A merchant key edits its own merchant's batches, which stay its own.",
		MaxBodyBytes: maxBatchBody,
	}, func(ctx context.Context, in *struct {
		ID      string `path:"id" maxLength:"64" doc:"batch id"`
		IfMatch string `header:"If-Match" maxLength:"64" doc:"the batch's version the edit was made to, as an entity tag: \"3\"; a batch at another version is refused with 412 precondition_failed"`
		Body    coupon.BatchSpec
	}) (*batchOutput, error) {
		version, err := ifMatchVersion(in.IfMatch)
		if err != nil {
			return nil, problem(err, "header")
		}
		v, err := h.svc.UpdateBatch(ctx, service.BatchUpdate{ID: in.ID, Spec: in.Body, IfVersion: version})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &batchOutput{Body: batchBody(v)}, nil
	})

	for _, t := range []struct {
		tr   coupon.Transition
		desc string
	}{
		{coupon.Publish, "Generates the codes of a draft batch (all of them, or for incremental generation a first chunk), loads its pool and opens it for claims (draft → active)."},
		{coupon.Pause, "Stops claims (active → paused)."},
		{coupon.Resume, "Reopens claims (paused → active)."},
		{coupon.End, "Ends the batch for good (draft, active or paused → ended)."},
	} {
		huma.Register(api, huma.Operation{
			OperationID: string(t.tr) + "-batch", Method: http.MethodPost, Path: "/v1/batches/{id}/" + string(t.tr),
			Tags: []string{"batches"}, Summary: string(t.tr) + " a batch", Description: t.desc,
		}, func(ctx context.Context, in *batchIDInput) (*batchOutput, error) {
			v, err := h.svc.Transition(ctx, in.ID, t.tr)
			if err != nil {
				return nil, problem(err, "path")
			}
			return &batchOutput{Body: batchBody(v)}, nil
		})
	}
}

// ifMatchVersion reads the batch version of an If-Match header: "" and "*"
// ask for none (0); an entity tag that cannot be a version ("x", a weak
// W/"3", which If-Match never matches) fails as a version moved would.
func ifMatchVersion(h string) (int64, error) {
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return 0, nil
	}
	v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(h, `"`), `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("If-Match %s names no version of the batch; send its version as an entity tag, e.g. \"3\": %w", h, coupon.ErrStale)
	}
	return v, nil
}
