package service

import (
	"context"
	"errors"

	"github.com/coupond/coupond/coupon"
)

// SyncEngine tells the engine a batch's status and per-user limit again, as
// the store has them. A status change whose engine update failed (the engine
// was down) is otherwise seen by the engine only at its next rebuild; the
// reconciler calls this for every batch on each pass, so a pause made while
// Redis was away stops claims within one pass once Redis is back.
func (s *Service) SyncEngine(ctx context.Context, batchID string) error {
	b, err := s.store.GetBatch(ctx, batchID)
	if errors.Is(err, coupon.ErrNotFound) {
		return nil
	}
	if err != nil {
		return unavailable("get batch", err)
	}
	s.batches.put(b)
	return s.syncEngine(ctx, b)
}
