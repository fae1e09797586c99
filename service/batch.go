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
		Version:   1,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if err := s.store.CreateBatch(ctx, b); err != nil {
		return nil, unavailable("create batch", err)
	}
	return &BatchView{Batch: b, RemainingCount: b.TotalQuantity}, nil
}

// BatchUpdate is an edit of a draft batch's configuration.
type BatchUpdate struct {
	ID   string
	Spec coupon.BatchSpec // the whole configuration, rules included, as CreateBatch takes it
	// IfVersion, if not 0, is the version the edit was made to (If-Match):
	// a batch at another version is refused with coupon.ErrStale.
	IfVersion int64
}

// UpdateBatch replaces the configuration of a draft batch — every attribute
// and rule — validated as CreateBatch validates a new one, raises its
// version and records batch.updated. A merchant edits only its own batches,
// and they stay its own whatever merchant the spec names. A batch that is
// no longer a draft is refused with not_draft, a draft that holds codes (a
// publication under way, or imported codes) with conflict; a refusal
// changes nothing.
func (s *Service) UpdateBatch(ctx context.Context, u BatchUpdate) (*BatchView, error) {
	cur, err := s.GetBatch(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	b := cur.Batch
	if u.IfVersion != 0 && u.IfVersion != b.Version {
		return nil, fmt.Errorf("batch %s is at version %d, not %d: %w", b.ID, b.Version, u.IfVersion, coupon.ErrStale)
	}
	if b.Status != coupon.StatusDraft {
		return nil, fmt.Errorf("batch %s is %s: %w", b.ID, b.Status, coupon.ErrNotDraft)
	}
	spec := u.Spec
	scopeSpec(ctx, &spec)
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkProtection(ctx, &spec); err != nil {
		return nil, err
	}
	if b.GeneratedCount > 0 {
		return nil, hasCodes(b)
	}
	now := s.clock()
	data, _ := json.Marshal(bus.BatchUpdated{BatchID: b.ID, MerchantID: spec.MerchantID, Version: b.Version + 1, At: now})
	// Conditioned on the version read: the edit applies to the batch that
	// was checked above (its merchant, its status), or not at all.
	updated, err := s.store.UpdateBatch(ctx, store.UpdateBatch{
		ID: b.ID, Spec: spec, Version: b.Version, At: now,
		Event: &store.Event{Type: bus.TypeBatchUpdated, AggregateID: b.ID, Payload: data, CreatedAt: now},
	})
	switch {
	case errors.Is(err, store.ErrStatus):
		return nil, fmt.Errorf("batch %s is no longer a draft: %w", b.ID, coupon.ErrNotDraft)
	case errors.Is(err, store.ErrVersion) && u.IfVersion != 0:
		return nil, fmt.Errorf("batch %s was edited since version %d: %w", b.ID, u.IfVersion, coupon.ErrStale)
	case errors.Is(err, store.ErrVersion):
		return nil, fmt.Errorf("batch %s was edited by someone else at the same moment; read it again: %w", b.ID, coupon.ErrConflict)
	case errors.Is(err, store.ErrHasCodes):
		return nil, hasCodes(b)
	case err != nil:
		return nil, unavailable("update batch", notFound("batch", b.ID, err))
	}
	s.onCommit()
	s.batches.put(updated)
	return s.view(ctx, updated)
}

// hasCodes refuses the edit of a draft whose codes were drawn from its
// configuration as it is.
func hasCodes(b *coupon.Batch) error {
	return fmt.Errorf("batch %s holds codes already (its publication has started, or codes were imported), "+
		"so its configuration is fixed: end it and make a new draft from it: %w", b.ID, coupon.ErrConflict)
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
	cur, version := b.Batch, int64(0)
	if t == coupon.Publish && b.Status == coupon.StatusDraft {
		// Publish the configuration the codes were drawn from: an edit
		// that came after generation read it makes the publication fail
		// rather than publish codes of one version under another.
		if cur, err = s.generate(ctx, b.Batch); err != nil {
			return nil, err
		}
		version = cur.Version
	}
	now := s.clock()
	data, _ := json.Marshal(bus.BatchStatusChanged{
		BatchID: cur.ID, MerchantID: cur.MerchantID, Status: string(to), From: string(b.Status),
		TotalQuantity: cur.TotalQuantity, GeneratedCount: cur.GeneratedCount, At: now,
	})
	updated, err := s.store.SetBatchStatus(ctx, store.SetBatchStatus{
		ID: id, From: from, To: to, Version: version, At: now,
		Event: &store.Event{Type: "batch." + transitionEvent[t], AggregateID: id, Payload: data, CreatedAt: now},
	})
	switch {
	case errors.Is(err, store.ErrStatus):
		return nil, fmt.Errorf("cannot %s a batch that is %s: %w", t, b.Status, coupon.ErrConflict)
	case errors.Is(err, store.ErrVersion):
		return nil, fmt.Errorf("batch %s was edited while it was being published; publish it again: %w", id, coupon.ErrConflict)
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
