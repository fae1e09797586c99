package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coupond/coupond/service"
)

// RedemptionService is what the redemption reconciler and the expiry
// sweeper ask of the service.
type RedemptionService interface {
	CheckRedemptions(ctx context.Context) (service.CheckResult, error)
	SweepExpiry(ctx context.Context) (service.ExpiryResult, error)
}

var (
	_ RedemptionService = (*service.Service)(nil)
	_ Worker            = (*RedemptionReconciler)(nil)
	_ Worker            = (*ExpirySweeper)(nil)
)

// Defaults of the intervals.
const (
	DefaultRedemptionCheckInterval = 10 * time.Second
	DefaultExpirySweepInterval     = time.Minute
)

// RedemptionReconcilerConfig configures a RedemptionReconciler. Service is
// required.
type RedemptionReconcilerConfig struct {
	Service RedemptionService
	Logger  *slog.Logger
	// Interval between passes; default 10s.
	Interval time.Duration
	// Lease, if set, makes one instance reconcile at a time.
	Lease *Lease
	// OnPass, if set, is called after every pass (a test hook).
	OnPass func(service.CheckResult, error)
}

// RedemptionReconciler asks the order system about reservations whose
// confirmation is late and confirms, releases or sends them to the review
// list (service.CheckRedemptions), one instance at a time under its lease.
type RedemptionReconciler struct {
	cfg RedemptionReconcilerConfig
	log *slog.Logger
	ss  startstop
}

// NewRedemptionReconciler returns a RedemptionReconciler; Start runs it.
func NewRedemptionReconciler(cfg RedemptionReconcilerConfig) *RedemptionReconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultRedemptionCheckInterval
	}
	return &RedemptionReconciler{cfg: cfg, log: cfg.Logger.With("worker", "redemption-reconciler")}
}

// Start runs the loop until Stop or the end of ctx.
func (r *RedemptionReconciler) Start(ctx context.Context) error {
	if r.cfg.Service == nil {
		return errors.New("worker: the redemption reconciler needs a service")
	}
	return r.ss.start(ctx, func(ctx context.Context, stop <-chan struct{}) {
		leasedLoop(ctx, stop, r.cfg.Lease, r.cfg.Interval, func(ctx context.Context) {
			res, err := r.cfg.Service.CheckRedemptions(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				r.log.Error("redemption check failed; will retry", "err", err)
			case res.Checked > 0:
				r.log.Info("late reservations checked", "checked", res.Checked, "confirmed", res.Confirmed,
					"cancelled", res.Cancelled, "pending", res.Pending, "failed", res.Failed, "reviewed", res.Reviewed)
			}
			if r.cfg.OnPass != nil {
				r.cfg.OnPass(res, err)
			}
		})
	})
}

// Stop finishes the current pass and returns; safe twice.
func (r *RedemptionReconciler) Stop() { r.ss.stopAndWait() }

// ExpirySweeperConfig configures an ExpirySweeper. Service is required.
type ExpirySweeperConfig struct {
	Service RedemptionService
	Logger  *slog.Logger
	// Interval between passes; default 1m.
	Interval time.Duration
	// Lease, if set, makes one instance sweep at a time.
	Lease *Lease
	// OnPass, if set, is called after every pass (a test hook).
	OnPass func(service.ExpiryResult, error)
}

// ExpirySweeper marks claims past their validity as expired and notices
// those about to expire (service.SweepExpiry), one instance at a time under
// its lease, in short transactions that never hold up claims.
type ExpirySweeper struct {
	cfg ExpirySweeperConfig
	log *slog.Logger
	ss  startstop
}

// NewExpirySweeper returns an ExpirySweeper; Start runs it.
func NewExpirySweeper(cfg ExpirySweeperConfig) *ExpirySweeper {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultExpirySweepInterval
	}
	return &ExpirySweeper{cfg: cfg, log: cfg.Logger.With("worker", "expiry-sweeper")}
}

// Start runs the loop until Stop or the end of ctx.
func (x *ExpirySweeper) Start(ctx context.Context) error {
	if x.cfg.Service == nil {
		return errors.New("worker: the expiry sweeper needs a service")
	}
	return x.ss.start(ctx, func(ctx context.Context, stop <-chan struct{}) {
		leasedLoop(ctx, stop, x.cfg.Lease, x.cfg.Interval, func(ctx context.Context) {
			res, err := x.cfg.Service.SweepExpiry(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				x.log.Error("expiry sweep failed; will retry", "err", err)
			case res.Expired+res.Noticed > 0:
				x.log.Info("claims swept", "batches", res.Batches, "expired", res.Expired, "noticed", res.Noticed)
			}
			if x.cfg.OnPass != nil {
				x.cfg.OnPass(res, err)
			}
		})
	})
}

// Stop finishes the current pass and returns; safe twice.
func (x *ExpirySweeper) Stop() { x.ss.stopAndWait() }

// leasedLoop runs pass every interval while this instance holds the lease,
// until stop or the end of ctx; Stop cancels a pass under way. The lease is
// released on the way out.
func leasedLoop(ctx context.Context, stop <-chan struct{}, lease *Lease, interval time.Duration, pass func(context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer lease.Release(context.WithoutCancel(ctx))
	for {
		if lease.Hold(ctx) {
			pass(ctx)
		}
		if !sleep(ctx, stop, nil, interval) {
			return
		}
	}
}
