package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// Generation has two halves that may be done by different processes, and a
// process may die between them: the store writes a chunk of codes
// (ContinueCodes, which numbers them after the batch's generated count and
// refuses to write if that count moved), then the engine loads them
// (AddCodes, which pushes the codes of a range of sequence numbers only if
// its LoadedSeq is where the range starts). Whoever finds the engine's
// LoadedSeq behind the store's generated count loads the missing range, so
// a chunk stranded by a crash is loaded by the next replenish, and never
// twice.

// ReplenishResult says what one Replenish did.
type ReplenishResult struct {
	Generated int64 // codes written to the store
	Loaded    int64 // codes pushed into the engine's pool
	// Busy says another instance holds the batch's replenish lease and
	// this call left the work to it.
	Busy bool
}

// Replenish tops up the pool of an active or paused batch. Under the engine
// lease replenish:<batch> it loads into the engine any codes the store
// generated that the engine does not hold yet (left by a process that died
// between writing and loading them, or by another instance), then, for an
// incremental batch whose pool is below its low-water mark, generates
// chunks and loads them until the pool is above the mark or every code is
// generated. If another instance holds the lease it returns at once with
// Busy set. Concurrent calls for one batch in this process share one run.
func (s *Service) Replenish(ctx context.Context, batchID string) (ReplenishResult, error) {
	if !coupon.ValidID(batchID) {
		return ReplenishResult{}, fmt.Errorf("batch %q: %w", batchID, coupon.ErrNotFound)
	}
	res, shared, err := s.replenishes.do(ctx, batchID, func() (ReplenishResult, error) {
		return s.replenish(ctx, batchID, false)
	})
	if shared {
		// The work was another caller's; report it as such.
		return ReplenishResult{Busy: true}, err
	}
	return res, err
}

// BatchesToReplenish lists the active incremental batches (and the external
// ones, which only ever load) that Replenish would work on now: those whose
// pool is below the low-water mark while codes remain to be generated, those
// whose engine state lags the store (codes generated or imported and not
// loaded), and those the engine does not hold.
func (s *Service) BatchesToReplenish(ctx context.Context) ([]string, error) {
	var ids []string
	var errs []error
	cursor := ""
	for {
		bs, err := s.store.ListBatches(ctx, store.BatchFilter{Status: coupon.StatusActive, Cursor: cursor, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("list active batches: %w", err)
		}
		for _, b := range bs {
			// An external batch has nothing to generate, but a range
			// imported and not loaded (a crash between the two) is loaded.
			if !incremental(b) && b.Source != coupon.SourceExternal {
				continue
			}
			st, err := s.engine.Stats(ctx, b.ID)
			switch {
			case errors.Is(err, engine.ErrUnknownBatch):
				ids = append(ids, b.ID)
			case err != nil:
				errs = append(errs, fmt.Errorf("engine stats of batch %s: %w", b.ID, err))
			case st.LoadedSeq < b.GeneratedCount,
				st.PoolDepth < int64(b.Generation.LowWater) && b.GeneratedCount < b.TotalQuantity:
				ids = append(ids, b.ID)
			}
		}
		if len(bs) < 1000 {
			return ids, errors.Join(errs...)
		}
		cursor = bs[len(bs)-1].ID
	}
}

func incremental(b *coupon.Batch) bool {
	return b.Source != coupon.SourceExternal && b.Generation.Mode == coupon.GenerationIncremental
}

// refill answers a claim that found the pool empty: it reports whether the
// claim should be tried again, because codes were loaded meanwhile, or by
// it, or are still to come. A batch whose every code is loaded is sold out
// at once, without a store read; so is one with nothing left to generate
// or load. Otherwise one caller per batch in this process replenishes (the
// others wait for it), and if another instance holds the lease, it waits up
// to RefillWait for that instance's codes. The claim bounds how long it
// keeps trying (see Claim): it is never told sold out while codes remain.
func (s *Service) refill(ctx context.Context, b *coupon.Batch) (bool, error) {
	st, err := s.engine.Stats(ctx, b.ID)
	switch {
	case errors.Is(err, engine.ErrUnknownBatch):
		// Lost since the claim step, or loaded by an engine that kept no
		// LoadedSeq: load it from the store.
		if err := s.loadBatch(ctx, b.ID); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, unavailable("engine stats", err)
	case st.PoolDepth > 0:
		return true, nil
	case st.LoadedSeq >= b.TotalQuantity:
		return false, nil
	}
	_, _, err = s.replenishes.do(ctx, b.ID, func() (ReplenishResult, error) {
		return s.replenish(ctx, b.ID, true)
	})
	if err != nil {
		if ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return true, nil // the caller that ran it went away; try again
		}
		return false, unavailable("replenish", err)
	}
	after, err := s.engine.Stats(ctx, b.ID)
	switch {
	case errors.Is(err, engine.ErrUnknownBatch):
		return true, nil
	case err != nil:
		return false, unavailable("engine stats", err)
	case after.PoolDepth > 0 || after.LoadedSeq > st.LoadedSeq:
		return true, nil
	}
	// No code came: perhaps the replenish joined had done its work before
	// this claim looked, or another instance is slow. Is any still to come?
	cur, err := s.store.GetBatch(ctx, b.ID)
	if err != nil {
		return false, unavailable("get batch", err)
	}
	more := cur.Status == coupon.StatusActive && (cur.GeneratedCount > after.LoadedSeq ||
		incremental(cur) && cur.GeneratedCount < cur.TotalQuantity)
	if more {
		// Not a busy loop: give the codes a moment to come.
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return more, nil
}

// replenish takes the batch's replenish lease and replenishes. If another
// instance holds it: without wait, it returns Busy; with wait, it waits up
// to RefillWait for the pool to grow, taking the lease itself if it frees.
func (s *Service) replenish(ctx context.Context, batchID string, wait bool) (ReplenishResult, error) {
	name := "replenish:" + batchID
	deadline := time.Now().Add(s.refillWait)
	var first *engine.BatchStats
	for {
		token, ok, err := s.engine.Lock(ctx, name, s.lease)
		if err != nil {
			return ReplenishResult{}, unavailable("engine lease", err)
		}
		if ok {
			l := &heldLease{engine: s.engine, name: name, token: token, ttl: s.lease}
			defer l.release(ctx)
			return s.replenishHeld(ctx, batchID, l)
		}
		if !wait {
			return ReplenishResult{Busy: true}, nil
		}
		st, err := s.engine.Stats(ctx, batchID)
		if err == nil {
			if first == nil {
				first = &st
			} else if st.PoolDepth > 0 || st.LoadedSeq > first.LoadedSeq {
				return ReplenishResult{Busy: true}, nil
			}
		}
		if time.Now().After(deadline) {
			return ReplenishResult{Busy: true}, nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ReplenishResult{}, ctx.Err()
		}
	}
}

// replenishHeld does the work of Replenish under the lease l. Every round
// reads the batch and the engine's figures afresh: a range the store holds
// and the engine does not is loaded first; then, below the low-water mark,
// a chunk is owed and written GenerateChunk codes at a time, each write
// loaded before the next.
func (s *Service) replenishHeld(ctx context.Context, batchID string, l *heldLease) (ReplenishResult, error) {
	var (
		res      ReplenishResult
		owed     int64 // codes of the current chunk still to write
		rebuilds int
	)
	for {
		b, err := s.store.GetBatch(ctx, batchID)
		if err != nil {
			return res, unavailable("get batch", notFound("batch", batchID, err))
		}
		if b.Status != coupon.StatusActive && b.Status != coupon.StatusPaused {
			return res, nil
		}
		st, err := s.engine.Stats(ctx, batchID)
		if errors.Is(err, engine.ErrUnknownBatch) && rebuilds == 0 {
			// The rebuild reads the store's whole state, LoadedSeq included.
			rebuilds++
			if err := s.loadBatch(ctx, batchID); err != nil {
				return res, err
			}
			continue
		}
		if err != nil {
			return res, unavailable("engine stats", err)
		}

		switch {
		case b.GeneratedCount > st.LoadedSeq:
			n, err := s.loadRange(ctx, batchID, st.LoadedSeq, b.GeneratedCount)
			res.Loaded += n
			if err != nil {
				return res, err
			}
		case !incremental(b) || b.GeneratedCount >= b.TotalQuantity:
			return res, nil
		case owed == 0 && st.PoolDepth >= int64(b.Generation.LowWater):
			return res, nil
		default:
			if owed == 0 {
				owed = int64(b.Generation.Chunk)
			}
			n := min(owed, int64(s.chunk), b.TotalQuantity-b.GeneratedCount)
			written, moved, err := s.writeCodes(ctx, b, n)
			res.Generated += written
			owed = max(owed-written, 0)
			if err != nil {
				return res, err
			}
			if moved {
				s.log.InfoContext(ctx, "another generator wrote codes meanwhile; reading the batch again",
					"batch", batchID, "from", b.GeneratedCount)
			}
		}
		// Each step is short next to the lease's time to live; a lease lost
		// anyway (a pause of the process) leaves the work to its new holder.
		switch ok, err := l.extend(ctx); {
		case err != nil:
			return res, unavailable("extend replenish lease", err)
		case !ok:
			s.log.InfoContext(ctx, "replenish lease lost; another instance carries on", "batch", batchID)
			return res, nil
		}
	}
}

// loadRange loads the store's unclaimed codes with sequence numbers in
// (from, through] into the engine, unless someone loaded them first.
func (s *Service) loadRange(ctx context.Context, batchID string, from, through int64) (int64, error) {
	codes, err := s.store.UnclaimedCodes(ctx, batchID, from, through)
	if err != nil {
		return 0, unavailable("read unclaimed codes", err)
	}
	pool := make([]engine.PoolCode, len(codes))
	for i, c := range codes {
		pool[i] = engine.PoolCode{Code: c.Code, Amount: c.Amount}
	}
	switch err := s.engine.AddCodes(ctx, batchID, from, through, pool); {
	case errors.Is(err, engine.ErrStaleLoad):
		return 0, nil
	case err != nil:
		return 0, unavailable("load codes into the engine", err)
	}
	return int64(len(pool)), nil
}

// generate writes the codes a draft batch needs before publication: every
// code in full mode; in incremental mode a first chunk, and more until the
// pool will be above the low-water mark. It resumes after a crash — the
// batch's generated count and amount say where to continue, and a split
// budget still sums exactly — and returns the batch as it read it last:
// its generated count, and the version every code was drawn from. Concurrent
// publications of one batch in this process share one generation.
func (s *Service) generate(ctx context.Context, b *coupon.Batch) (*coupon.Batch, error) {
	generated, _, err := s.generations.do(ctx, b.ID, func() (*coupon.Batch, error) {
		for {
			cur, err := s.store.GetBatch(ctx, b.ID) // the count, afresh
			if err != nil {
				return nil, unavailable("get batch", err)
			}
			if cur.Source == coupon.SourceExternal {
				// A partner's codes come by import (import.go), never generated.
				return cur, nil
			}
			target := cur.TotalQuantity
			if incremental(cur) {
				target = min(cur.TotalQuantity, max(int64(cur.Generation.Chunk), int64(cur.Generation.LowWater)+1))
			}
			if cur.GeneratedCount >= target {
				return cur, nil
			}
			// Codes are drawn from cur and written only if the batch is
			// still at cur's count and version; otherwise read it again.
			if _, _, err := s.writeCodes(ctx, cur, min(int64(s.chunk), target-cur.GeneratedCount)); err != nil {
				return nil, err
			}
		}
	})
	return generated, err
}

// writeCodes draws n codes to follow the batch's generated count, with
// amounts resumed from its generated count and amount, and writes them with
// ContinueCodes. Codes that collide with existing ones get new strings and
// the same amounts, and go in after those written. If the count moved (a
// generator elsewhere wrote first) it stops, reporting moved and what it
// wrote: the caller reads the batch again and draws afresh. Every write is
// on the count it read, so the total and a split budget stay exact.
func (s *Service) writeCodes(ctx context.Context, b *coupon.Batch, n int64) (written int64, moved bool, err error) {
	amounts := coupon.NewAmounts(b.Amount, b.TotalQuantity, b.GeneratedCount, b.GeneratedAmount)
	now := s.clock()
	codes := make([]coupon.Code, n)
	for i := range codes {
		codes[i] = coupon.Code{Code: coupon.NewCode(b.CodeFormat), Amount: amounts.Next(), CreatedAt: now}
	}
	from := b.GeneratedCount
	if s.beforeWrite != nil {
		s.beforeWrite(b.ID, from, codes)
	}
	for attempt := 0; len(codes) > 0; attempt++ {
		if attempt == 20 {
			return written, false, fmt.Errorf("batch %s: codes keep colliding; use a longer code_format.length: %w", b.ID, coupon.ErrConflict)
		}
		inserted, err := s.store.ContinueCodes(ctx, store.ContinueCodes{BatchID: b.ID, From: from, Version: b.Version, Codes: codes})
		if errors.Is(err, store.ErrGeneratedMoved) {
			return written, true, nil
		}
		if err != nil {
			return written, false, unavailable("add codes", err)
		}
		written += int64(len(inserted))
		from += int64(len(inserted))
		if len(inserted) == len(codes) {
			break
		}
		in := make(map[string]struct{}, len(inserted))
		for _, c := range inserted {
			in[c.Code] = struct{}{}
		}
		retry := codes[:0:0]
		for _, c := range codes {
			if _, ok := in[c.Code]; !ok {
				c.Code = coupon.NewCode(b.CodeFormat)
				retry = append(retry, c)
			}
		}
		codes = retry
	}
	return written, false, nil
}

// heldLease is an engine lease this process holds.
type heldLease struct {
	engine engine.Locker
	name   string
	token  string
	ttl    time.Duration
}

func (l *heldLease) extend(ctx context.Context) (bool, error) {
	return l.engine.Extend(ctx, l.name, l.token, l.ttl)
}

func (l *heldLease) release(ctx context.Context) {
	_ = l.engine.Unlock(context.WithoutCancel(ctx), l.name, l.token)
}
