package service_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
)

// outboxOf returns the pending events of one type about a batch.
func (e *env) outboxOf(t *testing.T, typ, batchID string) []store.Event {
	t.Helper()
	all, err := e.store.PendingEvents(context.Background(), 1000)
	require.NoError(t, err)
	var out []store.Event
	for _, ev := range all {
		if ev.Type == typ && ev.AggregateID == batchID {
			out = append(out, ev)
		}
	}
	return out
}

// An edit replaces every attribute and rule of a draft, raises its version
// and records batch.updated; each refusal names its reason and changes
// nothing.
func TestUpdateDraftBatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	s := spec(10, 1)
	s.Rules = []coupon.Rule{{RefType: "category", RefID: "food", UseType: "include"}}
	draft, err := e.svc.CreateBatch(ctx, s)
	require.NoError(t, err)
	require.EqualValues(t, 1, draft.Version)

	edit := spec(20, 2)
	edit.Name = "edited sale"
	edit.Type, edit.MinSpend = coupon.TypeThreshold, 3000
	edit.Amount = coupon.AmountSpec{Type: coupon.AmountFixed, Value: 800}
	edit.Rules = []coupon.Rule{
		{RefType: "merchant", RefID: "m1", UseType: "bear", Value: 4000},
		{RefType: "node", RefID: "payment", UseType: "node"},
	}
	v, err := e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: draft.ID, Spec: edit, IfVersion: 1})
	require.NoError(t, err)
	require.EqualValues(t, 2, v.Version)
	require.Equal(t, coupon.StatusDraft, v.Status)
	require.Equal(t, "edited sale", v.Name)
	require.EqualValues(t, 20, v.TotalQuantity)
	require.EqualValues(t, 20, v.RemainingCount)
	require.Equal(t, edit.Rules, v.Rules)
	require.Equal(t, draft.CreatedAt, v.CreatedAt)
	events := e.outboxOf(t, bus.TypeBatchUpdated, draft.ID)
	require.Len(t, events, 1)
	var data bus.BatchUpdated
	require.NoError(t, json.Unmarshal(events[0].Payload, &data))
	require.Equal(t, bus.BatchUpdated{BatchID: draft.ID, Version: 2, At: data.At}, data)

	unchanged := func(t *testing.T) {
		t.Helper()
		got, err := e.svc.GetBatch(ctx, draft.ID)
		require.NoError(t, err)
		require.Equal(t, v.Batch, got.Batch)
		require.Len(t, e.outboxOf(t, bus.TypeBatchUpdated, draft.ID), 1)
	}
	bad := edit
	bad.Type, bad.MinSpend = coupon.TypeThreshold, 0
	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: draft.ID, Spec: bad})
	require.Equal(t, coupon.CodeInvalid, coupon.ErrorCode(err), "validated as a new batch is: %v", err)
	require.ErrorContains(t, err, "min_spend")
	unchanged(t)

	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: draft.ID, Spec: edit, IfVersion: 1})
	require.Equal(t, coupon.CodeStale, coupon.ErrorCode(err), "%v", err)
	unchanged(t)

	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: coupon.NewID(e.clock.Now()), Spec: edit})
	require.Equal(t, coupon.CodeNotFound, coupon.ErrorCode(err))
	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: "not an id", Spec: edit})
	require.Equal(t, coupon.CodeNotFound, coupon.ErrorCode(err))

	published, err := e.svc.Transition(ctx, draft.ID, coupon.Publish)
	require.NoError(t, err)
	require.EqualValues(t, 20, published.GeneratedCount)
	v = published
	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: draft.ID, Spec: edit})
	require.Equal(t, coupon.CodeNotDraft, coupon.ErrorCode(err), "%v", err)
	got, err := e.svc.GetBatch(ctx, draft.ID)
	require.NoError(t, err)
	require.Equal(t, published.Batch, got.Batch)
}

// A merchant edits its own drafts only (another's is not found, as if it
// did not exist) and cannot give a batch to another merchant.
func TestMerchantUpdatesItsOwnDraftsOnly(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	m1 := auth.With(ctx, auth.Principal{KeyID: "k1", Role: auth.Merchant, MerchantID: "m1"})
	m2 := auth.With(ctx, auth.Principal{KeyID: "k2", Role: auth.Merchant, MerchantID: "m2"})
	own, err := e.svc.CreateBatch(m1, spec(5, 1))
	require.NoError(t, err)
	require.Equal(t, "m1", own.MerchantID)

	moved := spec(5, 1)
	moved.MerchantID = "m2"
	v, err := e.svc.UpdateBatch(m1, service.BatchUpdate{ID: own.ID, Spec: moved})
	require.NoError(t, err)
	require.Equal(t, "m1", v.MerchantID, "a merchant's batch stays its own")

	_, err = e.svc.UpdateBatch(m2, service.BatchUpdate{ID: own.ID, Spec: moved})
	require.Equal(t, coupon.CodeNotFound, coupon.ErrorCode(err))
	got, err := e.svc.GetBatch(ctx, own.ID)
	require.NoError(t, err)
	require.Equal(t, v.Batch, got.Batch)

	// Without a merchant scope the batch may change hands.
	v, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: own.ID, Spec: moved})
	require.NoError(t, err)
	require.Equal(t, "m2", v.MerchantID)
}

// An edit that lands while a publication is drawing the draft's codes:
// the codes drawn from the old configuration are not written, the
// publication draws again, and the published batch has the edited
// configuration and only codes of it.
func TestEditDuringPublicationIsAllOrNothing(t *testing.T) {
	t.Parallel()
	var id atomic.Value
	var edits atomic.Int32
	var editErr error
	e := setup(t)
	service.SetBeforeWrite(e.svc, func(batchID string, from int64, codes []coupon.Code) {
		if from != 0 || edits.Add(1) != 1 {
			return
		}
		edit := spec(50, 1)
		edit.Amount.Value = 800
		edit.CodeFormat = coupon.CodeFormat{Prefix: "NEW", Length: 10}
		_, editErr = e.svc.UpdateBatch(context.Background(), service.BatchUpdate{ID: id.Load().(string), Spec: edit})
	})
	ctx := context.Background()
	s := spec(50, 1)
	s.CodeFormat = coupon.CodeFormat{Prefix: "AB", Length: 10}
	draft, err := e.svc.CreateBatch(ctx, s)
	require.NoError(t, err)
	id.Store(draft.ID)

	v, err := e.svc.Transition(ctx, draft.ID, coupon.Publish)
	require.NoError(t, err)
	require.NoError(t, editErr, "the edit came before any code was written")
	require.EqualValues(t, 2, v.Version)
	require.EqualValues(t, 800, v.Amount.Value)
	require.EqualValues(t, 50, v.GeneratedCount)
	require.EqualValues(t, 50*800, v.GeneratedAmount)
	pool, err := e.store.UnclaimedCodes(ctx, draft.ID, 0, 50)
	require.NoError(t, err)
	require.Len(t, pool, 50)
	for _, c := range pool {
		require.EqualValues(t, 800, c.Amount)
		require.True(t, strings.HasPrefix(c.Code, "NEW"), c.Code)
	}
	published := e.outboxOf(t, bus.TypeBatchPublished, draft.ID)
	require.Len(t, published, 1)
	var data bus.BatchStatusChanged
	require.NoError(t, json.Unmarshal(published[0].Payload, &data))
	require.EqualValues(t, 50, data.GeneratedCount)

	// After the first code is written, an edit is refused and changes nothing.
	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: draft.ID, Spec: s})
	require.Equal(t, coupon.CodeNotDraft, coupon.ErrorCode(err))
}

// A draft holding imported codes keeps its configuration: the codes were
// imported under it.
func TestDraftWithImportedCodesIsNotEdited(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := setup(t)
	b, err := e.svc.CreateBatch(ctx, externalSpec(3))
	require.NoError(t, err)
	_, err = e.svc.ImportCodes(ctx, service.ImportRequest{BatchID: b.ID, Body: strings.NewReader("X-1\nX-2")})
	require.NoError(t, err)
	before, err := e.svc.GetBatch(ctx, b.ID)
	require.NoError(t, err)
	edit := externalSpec(3)
	edit.Name = "renamed"
	_, err = e.svc.UpdateBatch(ctx, service.BatchUpdate{ID: b.ID, Spec: edit})
	require.Equal(t, coupon.CodeConflict, coupon.ErrorCode(err), "%v", err)
	require.ErrorContains(t, err, "holds codes")
	after, err := e.svc.GetBatch(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, before.Batch, after.Batch)
	require.Empty(t, e.outboxOf(t, bus.TypeBatchUpdated, b.ID))
}
