package service

import (
	"context"
	"fmt"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// loadCall is one load of a batch into the engine that concurrent callers share.
type loadCall struct {
	done chan struct{}
	err  error
}

// loadBatch rebuilds a batch's engine state from the store: its unclaimed
// codes, each user's sequence numbers and the idempotency keys. Concurrent
// calls for one batch share one load.
func (s *Service) loadBatch(ctx context.Context, batchID string) error {
	s.loadMu.Lock()
	if c, ok := s.loading[batchID]; ok {
		s.loadMu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &loadCall{done: make(chan struct{})}
	s.loading[batchID] = c
	s.loadMu.Unlock()

	c.err = s.rebuild(context.WithoutCancel(ctx), batchID)
	close(c.done)
	s.loadMu.Lock()
	delete(s.loading, batchID)
	s.loadMu.Unlock()
	return c.err
}

func (s *Service) rebuild(ctx context.Context, batchID string) error {
	snap, err := s.store.Snapshot(ctx, batchID)
	if err != nil {
		return unavailable("read batch snapshot", err)
	}
	b := snap.Batch
	es := engine.Snapshot{
		Batch: engine.BatchState{BatchID: b.ID, Active: b.Status == coupon.StatusActive, PerUserLimit: b.PerUserLimit},
		Pool:  make([]engine.PoolCode, len(snap.Pool)),
		Users: make([]engine.UserSeqs, 0, len(snap.Users)),
		Keys:  make([]engine.KeyEntry, len(snap.Keys)),
	}
	for i, c := range snap.Pool {
		es.Pool[i] = engine.PoolCode{Code: c.Code, Amount: c.Amount}
	}
	for user, seqs := range snap.Users {
		es.Users = append(es.Users, engine.UserSeqs{UserID: user, Seqs: seqs})
	}
	for i, k := range snap.Keys {
		es.Keys[i] = engine.KeyEntry(k)
	}
	if err := s.engine.Rebuild(ctx, es); err != nil {
		return unavailable("rebuild engine", err)
	}
	s.batches.put(b)
	s.log.InfoContext(ctx, "batch loaded into engine", "batch", b.ID, "status", b.Status,
		"pool", len(es.Pool), "users", len(es.Users), "keys", len(es.Keys))
	return nil
}

// LoadEngine loads every active or paused batch into the engine. The app
// calls it at start-up, before it serves claims.
func (s *Service) LoadEngine(ctx context.Context) error {
	for _, st := range []coupon.Status{coupon.StatusActive, coupon.StatusPaused} {
		cursor := ""
		for {
			bs, err := s.store.ListBatches(ctx, store.BatchFilter{Status: st, Cursor: cursor, Limit: 100})
			if err != nil {
				return fmt.Errorf("list %s batches: %w", st, err)
			}
			for _, b := range bs {
				if err := s.loadBatch(ctx, b.ID); err != nil {
					return fmt.Errorf("load batch %s: %w", b.ID, err)
				}
			}
			if len(bs) < 100 {
				break
			}
			cursor = bs[len(bs)-1].ID
		}
	}
	return nil
}
