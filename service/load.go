package service

import (
	"context"
	"fmt"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// loadBatch rebuilds a batch's engine state from the store: its unclaimed
// codes, each user's sequence numbers and the idempotency keys. Concurrent
// calls for one batch share one load, which runs to its end even if the
// caller that started it goes away.
func (s *Service) loadBatch(ctx context.Context, batchID string) error {
	_, _, err := s.loads.do(ctx, batchID, func() (struct{}, error) {
		return struct{}{}, s.rebuildOnce(context.WithoutCancel(ctx), batchID)
	})
	return err
}

// rebuildOnce rebuilds a batch under a lease of the engine, so that of
// several instances that find the batch missing (a Redis restart) one reads
// the store and the others wait for the result.
func (s *Service) rebuildOnce(ctx context.Context, batchID string) error {
	const ttl = 2 * time.Minute
	name := "rebuild:" + batchID
	deadline := time.Now().Add(ttl)
	for {
		token, ok, err := s.engine.Lock(ctx, name, ttl)
		if err != nil {
			return unavailable("engine lease", err)
		}
		if ok {
			defer func() { _ = s.engine.Unlock(context.WithoutCancel(ctx), name, token) }()
			// Another instance may have finished a rebuild while we waited.
			if _, err := s.engine.Stats(ctx, batchID); err == nil {
				return nil
			}
			return s.rebuild(ctx, batchID)
		}
		if _, err := s.engine.Stats(ctx, batchID); err == nil {
			return nil // rebuilt by the holder
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("batch %s: engine rebuild by another instance did not finish: %w", batchID, coupon.ErrUnavailable)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
		// The pool holds the unclaimed codes up to the generated count read
		// with it; AddCodes continues from there.
		LoadedSeq: b.GeneratedCount,
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
		"pool", len(es.Pool), "users", len(es.Users), "keys", len(es.Keys), "loaded_seq", es.LoadedSeq)
	return nil
}

// EngineBatches lists the batches the engine holds: the active and paused ones.
func (s *Service) EngineBatches(ctx context.Context) ([]string, error) {
	var ids []string
	for _, st := range []coupon.Status{coupon.StatusActive, coupon.StatusPaused} {
		cursor := ""
		for {
			bs, err := s.store.ListBatches(ctx, store.BatchFilter{Status: st, Cursor: cursor, Limit: 1000})
			if err != nil {
				return nil, fmt.Errorf("list %s batches: %w", st, err)
			}
			for _, b := range bs {
				ids = append(ids, b.ID)
			}
			if len(bs) < 1000 {
				break
			}
			cursor = bs[len(bs)-1].ID
		}
	}
	return ids, nil
}

// LoadEngine loads every active or paused batch into the engine. The app
// calls it at start-up, before it serves claims.
func (s *Service) LoadEngine(ctx context.Context) error {
	ids, err := s.EngineBatches(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.loadBatch(ctx, id); err != nil {
			return fmt.Errorf("load batch %s: %w", id, err)
		}
	}
	return nil
}
