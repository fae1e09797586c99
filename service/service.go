// Package service holds coupond's use cases: creating and publishing batches,
// generating codes, claiming, and querying. It is the only place that
// orchestrates the store (the truth), the engine (the hot path) and the bus
// (through the store's outbox). Handlers and workers call it, never the
// backends directly.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/groupcommit"
	"github.com/coupond/coupond/store"
)

// Config wires a Service.
type Config struct {
	Store  store.Store
	Engine engine.Engine
	Logger *slog.Logger
	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
	// GroupCommit tunes how claims share transactions.
	GroupCommit groupcommit.Config
	// OnCommit is called after every committed group of state changes, to
	// wake the outbox relay. It must not block.
	OnCommit func()
	// GenerateChunk is the most codes written per transaction while
	// generating, in full and incremental mode alike (an incremental chunk
	// larger than this is written in several). Default 10,000.
	GenerateChunk int
	// ReplenishLease is the time to live of the engine lease
	// replenish:<batch> that one replenisher holds while it tops a pool up;
	// it is renewed after every write and every load, so it must exceed the
	// time one write of GenerateChunk codes takes. Default 30s.
	ReplenishLease time.Duration
	// RefillWait bounds how long a claim that found the pool empty waits
	// for another instance's replenisher to load codes. Default 5s.
	RefillWait time.Duration
	// ReplayWait bounds how long a replayed claim waits for the first
	// request's row to commit. Default 3s.
	ReplayWait time.Duration
	// Redemption configures reservations, the reconciler and expiry.
	Redemption RedemptionConfig
	// Query configures the "my coupons" cache, search, stats and tagging.
	Query QueryConfig
	// Access configures API keys, lists, rate limits, SMS challenges and
	// risk rules (access.go).
	Access AccessConfig
}

// Service implements the use cases.
type Service struct {
	store    store.Store
	engine   engine.Engine
	log      *slog.Logger
	now      func() time.Time
	onCommit func()
	chunk    int
	replay   time.Duration

	claims  *groupcommit.Committer[store.ClaimWrite]
	batches batchCache

	redemption RedemptionConfig
	query      *queryState  // cache.go
	acc        *accessState // access.go

	loads       flight[struct{}]        // batches being loaded into the engine
	generations flight[*coupon.Batch]   // batches being generated at publication
	replenishes flight[ReplenishResult] // batches being replenished

	lease      time.Duration // of replenish:<batch>
	refillWait time.Duration
	// beforeWrite, if set, is called between drawing codes and writing
	// them (a test hook).
	beforeWrite func(batchID string, from int64, codes []coupon.Code)

	triggers    triggerIndex // grant.go: trigger subject → batches
	importChunk int          // import.go: lines written per transaction
	// beforeAdvance, if set, is called before a grant job's step is
	// recorded (a test hook, jobs.go).
	beforeAdvance func(jobID string, step store.AdvanceGrantJob)
}

// New returns a Service; Close it to flush pending claims.
func New(cfg Config) *Service {
	s := &Service{
		store:      cfg.Store,
		engine:     cfg.Engine,
		log:        cfg.Logger,
		now:        cfg.Now,
		onCommit:   cfg.OnCommit,
		chunk:      cfg.GenerateChunk,
		replay:     cfg.ReplayWait,
		lease:      cfg.ReplenishLease,
		refillWait: cfg.RefillWait,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.onCommit == nil {
		s.onCommit = func() {}
	}
	if s.chunk <= 0 {
		s.chunk = 10_000
	}
	if s.replay <= 0 {
		s.replay = 3 * time.Second
	}
	if s.lease <= 0 {
		s.lease = 30 * time.Second
	}
	if s.refillWait <= 0 {
		s.refillWait = 5 * time.Second
	}
	s.batches = batchCache{store: cfg.Store, now: s.clock, m: map[string]cachedBatch{}}
	s.redemption = cfg.Redemption.withDefaults()
	s.query = newQueryState(cfg.Query)
	s.acc = newAccessState(cfg.Access, cfg.Store, s.log)
	s.claims = groupcommit.New(cfg.GroupCommit, s.writeClaims)
	return s
}

// Close writes the claims still queued and stops the group committer.
func (s *Service) Close() {
	s.claims.Close()
	s.acc.close()
}

// clock returns the current time in UTC at the stores' precision.
func (s *Service) clock() time.Time { return coupon.UTC(s.now()) }

// writeClaims is the group commit's flush: one transaction for the group,
// then one engine round trip that settles the claims of each batch and
// drops the cached claims of their users (SettleAndTouch), before any
// caller is answered: so a user's next list shows the claim. A failed
// Settle loses nothing: the reconciler settles what the store holds.
func (s *Service) writeClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	errs := s.store.InsertClaims(ctx, writes)
	s.onCommit()
	var settled []engine.Settlement
	users := make([]string, 0, len(writes))
	for i, w := range writes {
		if errs[i] != nil {
			continue
		}
		if n := len(settled); n == 0 || settled[n-1].BatchID != w.Claim.BatchID {
			settled = append(settled, engine.Settlement{BatchID: w.Claim.BatchID})
		}
		st := &settled[len(settled)-1]
		st.Codes = append(st.Codes, w.Claim.Code)
		users = append(users, w.Claim.UserID)
	}
	s.settleAndTouch(ctx, settled, users)
	return errs
}

// batchCache keeps batches for the claim path, which must not read the store
// on every request. After publication a batch's configuration does not
// change, only its status, which the engine enforces atomically; so cached
// active batches are refreshed rarely and others often, for a batch that
// another instance publishes or resumes.
type batchCache struct {
	store store.Store
	now   func() time.Time
	mu    sync.RWMutex
	m     map[string]cachedBatch

	hits, misses atomic.Uint64 // for the cache's hit ratio metric
}

// BatchCacheStats returns how often the claim path found its batch in the
// cache, and how often it read the store.
func (s *Service) BatchCacheStats() (hits, misses uint64) {
	return s.batches.hits.Load(), s.batches.misses.Load()
}

type cachedBatch struct {
	b      *coupon.Batch
	loaded time.Time
}

const (
	activeBatchTTL = 30 * time.Second
	otherBatchTTL  = time.Second
)

func (c *batchCache) get(ctx context.Context, id string) (*coupon.Batch, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok {
		ttl := otherBatchTTL
		if e.b.Status == coupon.StatusActive {
			ttl = activeBatchTTL
		}
		if now.Sub(e.loaded) < ttl {
			c.hits.Add(1)
			return e.b, nil
		}
	}
	c.misses.Add(1)
	b, err := c.store.GetBatch(ctx, id)
	if err != nil {
		return nil, notFound("batch", id, err)
	}
	c.put(b)
	return b, nil
}

func (c *batchCache) put(b *coupon.Batch) {
	c.mu.Lock()
	c.m[b.ID] = cachedBatch{b: b, loaded: c.now()}
	c.mu.Unlock()
}

// notFound words a store's ErrNotFound for the API, which must not see
// which store said it.
func notFound(what, id string, err error) error {
	if errors.Is(err, coupon.ErrNotFound) {
		return fmt.Errorf("%s %s: %w", what, id, coupon.ErrNotFound)
	}
	return err
}

// unavailable marks a backend failure as retryable for the API, keeping the
// cause in the chain for logs.
func unavailable(what string, err error) error {
	if err == nil || coupon.ErrorCode(err) != coupon.CodeInternal {
		return err
	}
	return fmt.Errorf("%s: %w (%w)", what, coupon.ErrUnavailable, err)
}

var errNoRow = errors.New("no such row")
