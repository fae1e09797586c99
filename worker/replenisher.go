package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coupond/coupond/service"
)

// Replenishable is what the replenisher asks of the service.
type Replenishable interface {
	// BatchesToReplenish lists the batches whose pool needs topping up.
	BatchesToReplenish(ctx context.Context) ([]string, error)
	// Replenish tops one batch's pool up under the batch's lease.
	Replenish(ctx context.Context, batchID string) (service.ReplenishResult, error)
}

var (
	_ Replenishable = (*service.Service)(nil)
	_ Worker        = (*Replenisher)(nil)
)

// DefaultReplenishInterval is ReplenisherConfig's default Interval.
const DefaultReplenishInterval = 200 * time.Millisecond

// ReplenisherConfig configures a Replenisher. Service is required.
type ReplenisherConfig struct {
	Service Replenishable
	Logger  *slog.Logger
	// Interval between passes; default 200ms. A pass that finds nothing
	// to do costs one listing of the active batches and one engine call per
	// incremental batch.
	Interval time.Duration
	// OnPass, if set, is called after every pass with what it did (a test
	// hook; it runs on the replenisher's goroutine).
	OnPass func(ReplenishPass, error)
}

// ReplenishPass sums up one pass.
type ReplenishPass struct {
	Batches   int   // batches replenished (or found busy)
	Busy      int   // of those, batches another instance was replenishing
	Generated int64 // codes written to the store
	Loaded    int64 // codes loaded into the engine
}

// Replenisher keeps the pools of incremental batches topped up: every
// Interval it replenishes each active incremental batch whose pool is below
// its low-water mark, or whose engine state lags the store. It runs on
// every instance: the service's per-batch lease lets one instance work on a
// batch at a time, and the store's and the engine's conditions keep the
// counts exact even when a lease expires under a paused process.
type Replenisher struct {
	cfg ReplenisherConfig
	log *slog.Logger
	ss  startstop
}

// NewReplenisher returns a Replenisher; Start runs it.
func NewReplenisher(cfg ReplenisherConfig) *Replenisher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReplenishInterval
	}
	return &Replenisher{cfg: cfg, log: cfg.Logger.With("worker", "replenisher")}
}

// Start runs the replenisher's loop until Stop or the end of ctx.
func (r *Replenisher) Start(ctx context.Context) error {
	if r.cfg.Service == nil {
		return errors.New("worker: the replenisher needs a service")
	}
	return r.ss.start(ctx, r.run)
}

// Stop cancels the pass under way (a write it interrupts is rolled back; a
// chunk written and not loaded yet is loaded by the next replenish) and
// returns when the loop has; safe twice.
func (r *Replenisher) Stop() { r.ss.stopAndWait() }

func (r *Replenisher) run(ctx context.Context, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		pass, err := r.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error("replenish pass failed; will retry", "err", err)
		case pass.Generated > 0 || pass.Loaded > 0:
			r.log.Debug("pools replenished", "batches", pass.Batches, "generated", pass.Generated, "loaded", pass.Loaded)
		}
		if r.cfg.OnPass != nil {
			r.cfg.OnPass(pass, err)
		}
		if !sleep(ctx, stop, nil, r.cfg.Interval) {
			return
		}
	}
}

// Pass replenishes every batch that needs it once, one after the other.
func (r *Replenisher) Pass(ctx context.Context) (ReplenishPass, error) {
	var pass ReplenishPass
	ids, err := r.cfg.Service.BatchesToReplenish(ctx)
	errs := []error{err}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		res, err := r.cfg.Service.Replenish(ctx, id)
		pass.Batches++
		pass.Generated += res.Generated
		pass.Loaded += res.Loaded
		if res.Busy {
			pass.Busy++
		}
		if err != nil {
			r.log.Warn("replenish failed", "batch", id, "err", err)
			errs = append(errs, err)
		}
	}
	return pass, errors.Join(errs...)
}
