package app

import (
	"context"
	"fmt"
	"time"

	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/worker"
)

// RedemptionOptions tune the redemption workers; set them before Run (tests
// do). Zero values take the defaults.
type RedemptionOptions struct {
	CheckInterval time.Duration       // the redemption reconciler's passes; default 10s
	SweepInterval time.Duration       // the expiry sweeper's passes; default 1m
	OrderSystem   service.OrderSystem // default: an ordersys.Client
	OrderRetry    time.Duration       // the order consumer's first retry; default 1s
	CheckBackoff  time.Duration       // the wait after a failed check of an order; default 30s
	OnCheck       func(service.CheckResult, error)
}

// redemptionWorkers are the background loops of redemption.
type redemptionWorkers struct {
	orders  *worker.OrderConsumer
	checker *worker.RedemptionReconciler
	sweeper *worker.ExpirySweeper
}

// redemptionConfig is the service's redemption configuration.
func (a *App) redemptionConfig() service.RedemptionConfig {
	r := a.cfg.Redemption
	orders := a.Redemption.OrderSystem
	if orders == nil {
		orders = ordersys.New(ordersys.Config{})
	}
	return service.RedemptionConfig{
		OrderSystem: orders, OrderSystemURL: r.OrderSystemURL, ReservationTimeout: r.ReservationTimeout,
		MaxCouponsPerOrder: r.MaxCouponsPerOrder, ExpiringLead: r.ExpiringLead, CheckBackoff: a.Redemption.CheckBackoff,
	}
}

// startRedemption starts the order consumer, the redemption reconciler and
// the expiry sweeper; the last two run on one instance at a time.
func (a *App) startRedemption(ctx context.Context) error {
	r := a.cfg.Redemption
	w := &a.redemption
	w.orders = worker.NewOrderConsumer(worker.OrderConsumerConfig{
		JetStream: a.Bus.JetStream(), Service: a.Service, Logger: a.log, Stream: r.OrdersStream,
		PaidSubject: r.PaidSubject, CancelledSubject: r.CancelledSubject, RefundedSubject: r.RefundedSubject,
		Retry: a.Redemption.OrderRetry,
	})
	w.checker = worker.NewRedemptionReconciler(worker.RedemptionReconcilerConfig{
		Service: a.Service, Logger: a.log, Interval: a.Redemption.CheckInterval, OnPass: a.Redemption.OnCheck,
		Lease: worker.NewLease(a.Engine, "redemption-reconciler", time.Minute, a.log),
	})
	w.sweeper = worker.NewExpirySweeper(worker.ExpirySweeperConfig{
		Service: a.Service, Logger: a.log, Interval: a.Redemption.SweepInterval,
		Lease: worker.NewLease(a.Engine, "expiry-sweeper", 5*time.Minute, a.log),
	})
	for _, s := range []worker.Worker{w.orders, w.checker, w.sweeper} {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("start redemption workers: %w", err)
		}
	}
	return nil
}

// stopRedemption stops the redemption workers; safe twice and before start.
func (a *App) stopRedemption() {
	w := &a.redemption
	if w.orders != nil {
		w.orders.Stop()
	}
	if w.checker != nil {
		w.checker.Stop()
	}
	if w.sweeper != nil {
		w.sweeper.Stop()
	}
}
