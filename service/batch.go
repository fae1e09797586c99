package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// BatchView is a batch with its live counts.
type BatchView struct {
	*coupon.Batch
	ClaimedCount   int64
	RemainingCount int64 // total quantity − claimed
	PoolDepth      int64 // codes ready in the engine; 0 when not loaded
	// LoadedSeq is the highest code sequence number the engine has loaded:
	// below GeneratedCount while a chunk is on its way to the pool (0 when
	// the batch is not loaded).
	LoadedSeq int64
}

// CreateBatch validates spec and stores a new draft batch.
func (s *Service) CreateBatch(ctx context.Context, spec coupon.BatchSpec) (*BatchView, error) {
	scopeSpec(ctx, &spec) // scope.go: a merchant's batch is its own
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkProtection(ctx, &spec); err != nil {
		return nil, err
	}
	now := s.clock()
	b := &coupon.Batch{
		ID:        coupon.NewID(now),
		BatchSpec: spec,
		Status:    coupon.StatusDraft,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if err := s.store.CreateBatch(ctx, b); err != nil {
		return nil, unavailable("create batch", err)
	}
	return &BatchView{Batch: b, RemainingCount: b.TotalQuantity}, nil
}

// GetBatch returns a batch with its live counts.
func (s *Service) GetBatch(ctx context.Context, id string) (*BatchView, error) {
	if !coupon.ValidID(id) {
		return nil, fmt.Errorf("batch %q: %w", id, coupon.ErrNotFound)
	}
	b, err := s.store.GetBatch(ctx, id)
	if err != nil {
		return nil, unavailable("get batch", notFound("batch", id, err))
	}
	if !auth.Sees(ctx, b.MerchantID) {
		return nil, hidden("batch", id)
	}
	return s.view(ctx, b)
}

func (s *Service) view(ctx context.Context, b *coupon.Batch) (*BatchView, error) {
	claimed, err := s.store.ClaimedCount(ctx, b.ID)
	if err != nil {
		return nil, unavailable("count claims", err)
	}
	v := &BatchView{Batch: b, ClaimedCount: claimed, RemainingCount: b.TotalQuantity - claimed}
	if st, err := s.engine.Stats(ctx, b.ID); err == nil {
		v.PoolDepth, v.LoadedSeq = st.PoolDepth, st.LoadedSeq
	}
	return v, nil
}

// BatchQuery selects batches for ListBatches.
type BatchQuery struct {
	Status     string
	MerchantID string
	Cursor     string
	Limit      int
}

// ListBatches lists batches newest first, with a cursor for the next page
// ("" on the last page).
func (s *Service) ListBatches(ctx context.Context, q BatchQuery) ([]*coupon.Batch, string, error) {
	var v coupon.Validation
	switch coupon.Status(q.Status) {
	case "", coupon.StatusDraft, coupon.StatusActive, coupon.StatusPaused, coupon.StatusEnded:
	default:
		v.Add("status", "must be one of draft, active, paused, ended")
	}
	if q.Cursor != "" && !coupon.ValidID(q.Cursor) {
		v.Add("cursor", "is not a cursor this API returned")
	}
	limit := clampLimit(&v, q.Limit)
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if !scopeMerchantFilter(ctx, &q.MerchantID) {
		return nil, "", nil
	}
	bs, err := s.store.ListBatches(ctx, store.BatchFilter{
		Status: coupon.Status(q.Status), MerchantID: q.MerchantID, Cursor: q.Cursor, Limit: limit + 1,
	})
	if err != nil {
		return nil, "", unavailable("list batches", err)
	}
	next := ""
	if len(bs) > limit {
		bs = bs[:limit]
		next = bs[limit-1].ID
	}
	return bs, next, nil
}

// Limits of list pages.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

func clampLimit(v *coupon.Validation, limit int) int {
	switch {
	case limit == 0:
		return DefaultPageSize
	case limit < 0 || limit > MaxPageSize:
		v.Addf("limit", "must be between 1 and %d", MaxPageSize)
	}
	return limit
}

// Transition changes a batch's status. Publishing generates the batch's codes
// first — all of them in full mode; in incremental mode a first chunk, and
// more until the pool is above its low-water mark — and loads its pool into
// the engine.
func (s *Service) Transition(ctx context.Context, id string, t coupon.Transition) (*BatchView, error) {
	from, to := t.From()
	if to == "" {
		return nil, fmt.Errorf("transition %q: %w", t, coupon.ErrNotFound)
	}
	b, err := s.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	generated := b.GeneratedCount
	if t == coupon.Publish && b.Status == coupon.StatusDraft {
		if generated, err = s.generate(ctx, b.Batch); err != nil {
			return nil, err
		}
	}
	now := s.clock()
	data, _ := json.Marshal(bus.BatchStatusChanged{
		BatchID: b.ID, MerchantID: b.MerchantID, Status: string(to), From: string(b.Status),
		TotalQuantity: b.TotalQuantity, GeneratedCount: generated, At: now,
	})
	updated, err := s.store.SetBatchStatus(ctx, store.SetBatchStatus{
		ID: id, From: from, To: to, At: now,
		Event: &store.Event{Type: "batch." + transitionEvent[t], AggregateID: id, Payload: data, CreatedAt: now},
	})
	switch {
	case errors.Is(err, store.ErrStatus):
		return nil, fmt.Errorf("cannot %s a batch that is %s: %w", t, b.Status, coupon.ErrConflict)
	case err != nil:
		return nil, unavailable("set batch status", err)
	}
	s.onCommit()
	s.batches.put(updated)
	if err := s.syncEngine(ctx, updated); err != nil {
		// The store holds the new status; the engine catches up on the next
		// claim (ErrUnknownBatch or a stale status) or the next start.
		s.log.ErrorContext(ctx, "engine update after status change failed", "batch", id, "err", err)
	}
	return s.view(ctx, updated)
}

var transitionEvent = map[coupon.Transition]string{
	coupon.Publish: "published", coupon.Pause: "paused", coupon.Resume: "resumed", coupon.End: "ended",
}

// syncEngine tells the engine a batch's new status; a batch the engine does
// not hold yet is loaded whole from the store.
func (s *Service) syncEngine(ctx context.Context, b *coupon.Batch) error {
	err := s.engine.SetBatch(ctx, engine.BatchState{
		BatchID: b.ID, Active: b.Status == coupon.StatusActive, PerUserLimit: b.PerUserLimit,
	})
	if errors.Is(err, engine.ErrUnknownBatch) {
		if b.Status == coupon.StatusDraft {
			return nil
		}
		return s.loadBatch(ctx, b.ID)
	}
	return err
}
