package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/store"
)

// OutboxStore is the part of store.Store the relay reads and writes.
type OutboxStore interface {
	// PendingEvents returns up to limit unpublished outbox rows, oldest first.
	PendingEvents(ctx context.Context, limit int) ([]store.Event, error)
	// MarkPublished records that the events were published.
	MarkPublished(ctx context.Context, ids []int64, at time.Time) error
}

// Publisher publishes envelopes and returns once every one is stored, as
// bus.Bus does.
type Publisher interface {
	Publish(ctx context.Context, envs []bus.Envelope) error
}

var (
	_ OutboxStore = (store.Store)(nil)
	_ Publisher   = (*bus.Bus)(nil)
	_ Worker      = (*OutboxRelay)(nil)
)

// Defaults of OutboxRelayConfig.
const (
	DefaultRelayBatchSize  = 500
	DefaultRelayInterval   = time.Second
	DefaultRelayGather     = 20 * time.Millisecond
	DefaultRelayMinBackoff = 100 * time.Millisecond
	DefaultRelayMaxBackoff = 30 * time.Second
)

// OutboxRelayConfig configures an OutboxRelay. Store and Publisher are
// required; the rest have defaults.
type OutboxRelayConfig struct {
	Store     OutboxStore
	Publisher Publisher
	Logger    *slog.Logger
	// BatchSize is how many events one pass reads and publishes; default 500.
	BatchSize int
	// Interval is how often the relay looks for events when nobody calls
	// Notify: the fallback for events written by another instance or before
	// a crash; default 1s.
	Interval time.Duration
	// Gather is the least time between two passes that found events: under
	// load, every commit notifies, and waiting a little lets one pass carry
	// many commits' events instead of a few; default 20ms. It adds at most
	// that much to an event's delay.
	Gather time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed pass, which
	// doubles with each failure in a row; defaults 100ms and 30s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Now is the clock that stamps published events; default time.Now.
	Now func() time.Time
	// Lease, if set, is held by the instance that relays: with several
	// instances sharing a store, one relays at a time and another takes over
	// when it dies. Its TTL should be a few Intervals.
	Lease *Lease
	// OnBatch, if set, is called after every pass over one batch with the
	// number of events published and marked (0 when none were pending or
	// the pass failed) and the pass's error. It is a test hook: it runs on
	// the relay's goroutine and must not block for long.
	OnBatch func(relayed int, err error)
}

// OutboxRelay moves events from the store's outbox to the bus. It publishes
// pending events oldest first in batches and marks a batch published only
// after the bus has acknowledged all of it, so no event is lost: an event is
// published at least once, and a re-publication (after a crash, a failed
// mark, or two relays at once) carries the same id, which the bus and
// consumers de-duplicate.
type OutboxRelay struct {
	cfg  OutboxRelayConfig
	log  *slog.Logger
	wake chan struct{} // capacity 1: Notify's coalesced wake-up
	mu   sync.Mutex    // one pass at a time: the loop's or Flush's
	ss   startstop
}

// NewOutboxRelay returns a relay; Start runs it.
func NewOutboxRelay(cfg OutboxRelayConfig) *OutboxRelay {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultRelayBatchSize
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultRelayInterval
	}
	if cfg.Gather <= 0 {
		cfg.Gather = DefaultRelayGather
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultRelayMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultRelayMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &OutboxRelay{
		cfg:  cfg,
		log:  cfg.Logger.With("worker", "outbox_relay"),
		wake: make(chan struct{}, 1),
	}
}

// Start runs the relay's loop until Stop or the end of ctx. The loop starts
// with a pass, so events left from before a restart go out at once.
func (r *OutboxRelay) Start(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	return r.ss.start(ctx, r.run)
}

// Stop lets the batch in flight finish (published and marked) and returns
// when the loop has. It is safe to call more than once.
func (r *OutboxRelay) Stop() { r.ss.stopAndWait() }

// Notify wakes the relay to look for events now, for the write path to call
// after each commit. It never blocks nor allocates, and wake-ups that come
// while the relay is busy coalesce into one more pass.
func (r *OutboxRelay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Flush publishes every event pending now, batch after batch, and returns
// the first error. It is for a graceful shutdown, after the writers have
// stopped; it works whether or not the relay is running.
func (r *OutboxRelay) Flush(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	_, err := r.drain(ctx, nil)
	return err
}

func (r *OutboxRelay) check() error {
	if r.cfg.Store == nil || r.cfg.Publisher == nil {
		return errors.New("worker: the outbox relay needs a store and a publisher")
	}
	return nil
}

func (r *OutboxRelay) run(ctx context.Context, stop <-chan struct{}) {
	r.log.Debug("outbox relay started")
	defer r.log.Debug("outbox relay stopped")
	failures := 0
	defer r.cfg.Lease.Release(context.WithoutCancel(ctx))
	for {
		if !r.cfg.Lease.Hold(ctx) {
			// Another instance relays; look again after an interval.
			if !sleep(ctx, stop, nil, r.cfg.Interval) {
				return
			}
			continue
		}
		relayed, err := r.drain(ctx, stop)
		wait, wake := r.cfg.Interval, (<-chan struct{})(r.wake)
		if relayed > 0 && err == nil {
			// Let more events gather before the next pass.
			if !sleep(ctx, stop, nil, r.cfg.Gather) {
				return
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			failures++
			wait = backoff(failures, r.cfg.MinBackoff, r.cfg.MaxBackoff)
			// Every commit notifies: a broken bus must not be retried at
			// the pace of the claims.
			wake = nil
			r.log.Error("outbox relay: relaying events failed; will retry",
				"err", err, "failures", failures, "retry_in", wait)
		case failures > 0:
			r.log.Info("outbox relay: relaying events again", "after_failures", failures)
			failures = 0
		}
		if isClosed(stop) || !sleep(ctx, stop, wake, wait) {
			return
		}
	}
}

// drain relays batches until one comes back short of BatchSize, a pass
// fails, or stop is closed (a nil stop never is).
func (r *OutboxRelay) drain(ctx context.Context, stop <-chan struct{}) (int, error) {
	total := 0
	for {
		fetched, err := r.relayBatch(ctx)
		if err != nil {
			return total, err
		}
		total += fetched
		if fetched < r.cfg.BatchSize || isClosed(stop) {
			return total, nil
		}
	}
}

// relayBatch publishes and marks one batch of pending events and returns
// how many there were.
func (r *OutboxRelay) relayBatch(ctx context.Context) (int, error) {
	n, err := r.relayBatchLocked(ctx)
	if r.cfg.OnBatch != nil {
		r.cfg.OnBatch(n, err)
	}
	return n, err
}

func (r *OutboxRelay) relayBatchLocked(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	events, err := r.cfg.Store.PendingEvents(ctx, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("read pending events: %w", err)
	}
	if len(events) == 0 {
		return 0, nil
	}
	envs := make([]bus.Envelope, len(events))
	ids := make([]int64, len(events))
	for i, e := range events {
		envs[i] = bus.Envelope{
			ID:          e.ID,
			Type:        e.Type,
			AggregateID: e.AggregateID,
			OccurredAt:  e.CreatedAt.UTC(),
			Data:        e.Payload,
		}
		ids[i] = e.ID
	}
	first, last := ids[0], ids[len(ids)-1]
	if err := r.cfg.Publisher.Publish(ctx, envs); err != nil {
		return 0, fmt.Errorf("publish events %d to %d: %w", first, last, err)
	}
	// Only now, with every event acknowledged, may they count as published.
	// If marking fails they go out again on the next pass, under the same
	// ids.
	if err := r.cfg.Store.MarkPublished(ctx, ids, r.cfg.Now().UTC()); err != nil {
		return 0, fmt.Errorf("mark events %d to %d published: %w", first, last, err)
	}
	r.log.Debug("outbox relay: published events", "count", len(ids), "first_id", first, "last_id", last)
	return len(events), nil
}
