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
	// GenerateChunk is the number of codes written per transaction while
	// generating. Default 10,000.
	GenerateChunk int
	// ReplayWait bounds how long a replayed claim waits for the first
	// request's row to commit. Default 3s.
	ReplayWait time.Duration
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

	loadMu  sync.Mutex
	loading map[string]*loadCall // batches being loaded into the engine
	genMu   sync.Mutex
	gen     map[string]*sync.Mutex // one generator per batch in this process
}

// New returns a Service; Close it to flush pending claims.
func New(cfg Config) *Service {
	s := &Service{
		store:    cfg.Store,
		engine:   cfg.Engine,
		log:      cfg.Logger,
		now:      cfg.Now,
		onCommit: cfg.OnCommit,
		chunk:    cfg.GenerateChunk,
		replay:   cfg.ReplayWait,
		loading:  map[string]*loadCall{},
		gen:      map[string]*sync.Mutex{},
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
	s.batches = batchCache{store: cfg.Store, now: s.clock, m: map[string]cachedBatch{}}
	s.claims = groupcommit.New(cfg.GroupCommit, s.writeClaims)
	return s
}

// Close writes the claims still queued and stops the group committer.
func (s *Service) Close() {
	s.claims.Close()
}

// clock returns the current time in UTC at the stores' precision.
func (s *Service) clock() time.Time { return coupon.UTC(s.now()) }

// writeClaims is the group commit's flush: one transaction for the group,
// then one call per batch telling the engine those claims are settled. A
// failed Settle loses nothing: the reconciler settles what the store holds.
func (s *Service) writeClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	errs := s.store.InsertClaims(ctx, writes)
	s.onCommit()
	var batchID string
	var codes []string
	settle := func() {
		if len(codes) == 0 {
			return
		}
		if err := s.engine.Settle(ctx, batchID, codes); err != nil {
			s.log.WarnContext(ctx, "engine settle failed; the reconciler will settle", "batch", batchID, "claims", len(codes), "err", err)
		}
		codes = codes[:0]
	}
	for i, w := range writes {
		if errs[i] != nil {
			continue
		}
		if w.Claim.BatchID != batchID {
			settle()
			batchID = w.Claim.BatchID
		}
		codes = append(codes, w.Claim.Code)
	}
	settle()
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
			return e.b, nil
		}
	}
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
