package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coupond/coupond/engine"
)

// ReconcilerStore is what the reconciler reads from the store.
type ReconcilerStore interface {
	ClaimedCodes(ctx context.Context, codes []string) ([]string, error)
}

// Defaults of ReconcilerConfig.
const (
	DefaultReconcileInterval = 10 * time.Second
	DefaultReconcileGrace    = time.Minute
)

// ReconcilerConfig configures a Reconciler. Engine, Store and Batches are required.
type ReconcilerConfig struct {
	Engine engine.Engine
	Store  ReconcilerStore
	// Batches lists the batches to look at (those the engine holds: active
	// and paused ones).
	Batches func(ctx context.Context) ([]string, error)
	// Sync, if set, re-tells the engine each batch's status from the store
	// on every pass (a status change made while the engine was down).
	Sync   func(ctx context.Context, batchID string) error
	Logger *slog.Logger
	// Interval between passes; default 10s.
	Interval time.Duration
	// Grace is how old a pending claim must be before the reconciler asks
	// the store about it; it must exceed the longest a commit can take (the
	// group commit's timeout). Default 1m.
	Grace time.Duration
	// Lease, if set, makes one instance reconcile at a time.
	Lease *Lease
	Now   func() time.Time
	// OnPass, if set, is called after every pass with its outcome (a test hook).
	OnPass func(ReconcileResult, error)
}

// ReconcileResult counts what one pass did.
type ReconcileResult struct {
	Settled   int // pending claims the store holds: the engine just had not heard
	Reclaimed int // pending claims whose row never committed: code back to the pool
}

// Reconciler finds claims the engine handed out whose rows never reached the
// store — the process died between the engine step and the commit — and
// returns their codes to the pool, the users' sequence numbers and the
// idempotency keys with them. Claims the store does hold are settled.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger
	ss  startstop
}

// NewReconciler returns a Reconciler; Start runs it.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReconcileInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultReconcileGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.With("worker", "reconciler")}
}

// Start runs the reconciler's loop until Stop or the end of ctx.
func (r *Reconciler) Start(ctx context.Context) error {
	if r.cfg.Engine == nil || r.cfg.Store == nil || r.cfg.Batches == nil {
		return errors.New("worker: the reconciler needs an engine, a store and a batch lister")
	}
	return r.ss.start(ctx, r.run)
}

// Stop finishes the current pass and returns; safe twice.
func (r *Reconciler) Stop() { r.ss.stopAndWait() }

func (r *Reconciler) run(ctx context.Context, stop <-chan struct{}) {
	defer r.cfg.Lease.Release(context.WithoutCancel(ctx))
	for {
		if r.cfg.Lease.Hold(ctx) {
			res, err := r.Pass(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				r.log.Error("reconcile pass failed; will retry", "err", err)
			case res.Reclaimed > 0:
				r.log.Warn("claims that never committed were reclaimed", "reclaimed", res.Reclaimed, "settled", res.Settled)
			}
			if r.cfg.OnPass != nil {
				r.cfg.OnPass(res, err)
			}
		}
		if !sleep(ctx, stop, nil, r.cfg.Interval) {
			return
		}
	}
}

// Pass reconciles every batch once.
func (r *Reconciler) Pass(ctx context.Context) (ReconcileResult, error) {
	var res ReconcileResult
	batches, err := r.cfg.Batches(ctx)
	if err != nil {
		return res, err
	}
	before := r.cfg.Now().Add(-r.cfg.Grace)
	var errs []error
	for _, id := range batches {
		if r.cfg.Sync != nil {
			if err := r.cfg.Sync(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
		if err := r.batch(ctx, id, before, &res); err != nil && !errors.Is(err, engine.ErrUnknownBatch) {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

func (r *Reconciler) batch(ctx context.Context, batchID string, before time.Time, res *ReconcileResult) error {
	for {
		pending, err := r.cfg.Engine.Pending(ctx, batchID, before, 500)
		if err != nil || len(pending) == 0 {
			return err
		}
		codes := make([]string, len(pending))
		for i, p := range pending {
			codes[i] = p.Code
		}
		claimed, err := r.cfg.Store.ClaimedCodes(ctx, codes)
		if err != nil {
			return err
		}
		held := make(map[string]bool, len(claimed))
		for _, c := range claimed {
			held[c] = true
		}
		var settle []string
		for _, p := range pending {
			if held[p.Code] {
				settle = append(settle, p.Code)
				continue
			}
			ok, err := r.cfg.Engine.Reclaim(ctx, p)
			if err != nil {
				return err
			}
			if ok {
				res.Reclaimed++
				r.log.Info("reclaimed a claim that never committed", "batch", batchID, "claim", p.ClaimID, "user", p.UserID, "claimed_at", p.At)
			}
		}
		if len(settle) > 0 {
			if err := r.cfg.Engine.Settle(ctx, batchID, settle); err != nil {
				return err
			}
			res.Settled += len(settle)
		}
		if len(pending) < 500 {
			return nil
		}
	}
}
