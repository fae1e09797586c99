package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/telemetry"
	"github.com/coupond/coupond/worker"
)

// Defaults of config.Config.Ops, for an App made from a Config literal.
const (
	defaultMaxInflightClaims = 1024
	defaultEngineTimeout     = time.Second
	defaultStoreTimeout      = 10 * time.Second
	// bulkTimeout bounds the calls that move a whole pool: a snapshot of a
	// batch of ten million codes, a chunk of generated codes.
	bulkTimeout = 2 * time.Minute
	// originsSize bounds the spans remembered for events not yet relayed.
	originsSize = 1 << 16
)

// opsDefaults fills the zero settings of cfg.Ops; a negative bound or
// timeout turns it off.
func opsDefaults(cfg *config.Config) {
	o := &cfg.Ops
	switch {
	case o.MaxInflightClaims == 0:
		o.MaxInflightClaims = defaultMaxInflightClaims
	case o.MaxInflightClaims < 0:
		o.MaxInflightClaims = 0
	}
	o.EngineTimeout = orDefault(o.EngineTimeout, defaultEngineTimeout)
	o.StoreTimeout = orDefault(o.StoreTimeout, defaultStoreTimeout)
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = 5 * time.Second
	}
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// setupTelemetry makes the tracer provider (unless a test gave one), the
// metrics registry and the switches.
func (a *App) setupTelemetry(ctx context.Context) error {
	opsDefaults(&a.cfg)
	if a.Tracing == nil {
		t, err := telemetry.NewTracing(ctx, Version, os.Getenv)
		if err != nil {
			return err
		}
		a.Tracing = t
	}
	if a.Tracing.Enabled() {
		a.origins = telemetry.NewOrigins(originsSize)
		log := a.log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry: exporting spans failed", "err", err) }))
	}
	a.Metrics = telemetry.NewMetrics(Version)
	var err error
	a.Switches, err = guard.NewSwitches(a.Metrics, strings.Split(a.cfg.Ops.SwitchesOff, ",")...)
	if err != nil {
		return fmt.Errorf("COUPOND_SWITCHES_OFF: %w", err)
	}
	return nil
}

// guardStore wraps the opened store with timeouts, spans, metrics and the
// replica's fallback.
func (a *App) guardStore(s store.Store) store.Store {
	if a.WrapStore != nil {
		s = a.WrapStore(s)
	}
	return guard.NewStore(s, guard.StoreConfig{
		Timeout:     a.cfg.Ops.StoreTimeout,
		BulkTimeout: bulkTimeout,
		ReplicaBreaker: guard.NewBreaker(guard.BreakerConfig{
			Name: "replica", Failures: a.cfg.Ops.BreakerFailures, Cooldown: a.cfg.Ops.BreakerCooldown, Metrics: a.Metrics,
		}),
		Tracer:  a.Tracing.Tracer("store"),
		Metrics: a.Metrics,
		Origins: a.origins,
	})
}

// guardEngine wraps the opened engine with its breaker, spans, metrics and,
// for Redis, timeouts (the in-memory engine does no I/O to wait for).
func (a *App) guardEngine(e engine.Engine) engine.Engine {
	if a.WrapEngine != nil {
		e = a.WrapEngine(e)
	}
	cfg := guard.EngineConfig{
		Breaker: guard.NewBreaker(guard.BreakerConfig{
			Name: "engine", Failures: a.cfg.Ops.BreakerFailures, Cooldown: a.cfg.Ops.BreakerCooldown, Metrics: a.Metrics,
		}),
		Tracer:  a.Tracing.Tracer("engine"),
		Metrics: a.Metrics,
		Origins: a.origins,
	}
	if a.cfg.Redis.URL != "" || a.WrapEngine != nil {
		cfg.Timeout, cfg.BulkTimeout = a.cfg.Ops.EngineTimeout, bulkTimeout
	}
	return guard.NewEngine(e, cfg)
}

// publisher is the bus as the outbox relay sees it: with a span per
// publication and the causes' trace context in the messages.
func (a *App) publisher() worker.Publisher {
	return telemetry.NewPublisher(a.Bus, a.Tracing.Tracer("bus"), a.origins, a.Metrics)
}

// registerStateMetrics adds the metrics read from the backends at scrape
// time and from the service's counters.
func (a *App) registerStateMetrics() {
	m := a.Metrics
	batchMetrics := a.Switches.Get(guard.SwitchBatchMetrics)
	m.Register(telemetry.NewStateCollector(m, telemetry.StateConfig{
		Engine:  a.Engine,
		Store:   a.Store,
		Grace:   worker.DefaultReconcileGrace,
		Enabled: batchMetrics.On,
		Logger:  a.log,
	}))
	svc := a.Service
	m.CounterFunc("coupond_batch_cache_hits_total", "Claims that found their batch in the instance's batch cache.",
		func() float64 { h, _ := svc.BatchCacheStats(); return float64(h) })
	m.CounterFunc("coupond_batch_cache_misses_total", "Claims that read their batch from the store (not cached, or cached too long ago).",
		func() float64 { _, mi := svc.BatchCacheStats(); return float64(mi) })
	st := a.Store
	m.GaugeFunc("coupond_redemption_reservations_stuck", "Reservations still reserved past their timeout (the reconciler could not settle them) or on the review list: each needs a person (GET /v1/reviews).",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := st.StuckReservations(ctx, time.Now())
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		})
	m.GaugeFunc("coupond_claims_inflight_limit", "The bound of claims served at once by this instance (0: none).",
		func() float64 { return float64(a.cfg.Ops.MaxInflightClaims) })
}

// observeReplenish counts what a pass of the replenisher did: the batches
// it topped up (not those another instance was busy with) and the codes.
func (a *App) observeReplenish(p worker.ReplenishPass, err error) {
	a.Metrics.ObserveReplenish(p.Batches-p.Busy, p.Generated, p.Loaded, err)
}

// apiOps is the operational part of the API's configuration.
func (a *App) apiOps(cfg httpapi.Config) httpapi.Config {
	cfg.Metrics = a.Metrics
	cfg.Tracer = a.Tracing.Tracer("http")
	cfg.Ready = a.readyChecks
	cfg.Switches = a.Switches
	cfg.MaxInflightClaims = a.cfg.Ops.MaxInflightClaims
	return cfg
}

// readyChecks are the checks of /readyz. The store and its migrations are
// required: without them the instance serves nothing. The engine and the
// bus are shared by every instance, and without them the instance still
// serves what it can (queries without the engine, everything without the
// bus): they are reported, and make the instance degraded, not unready.
func (a *App) readyChecks(ctx context.Context) []httpapi.ReadyCheck {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	check := func(name string, required bool, err error) httpapi.ReadyCheck {
		c := httpapi.ReadyCheck{Name: name, OK: err == nil, Required: required}
		if err != nil {
			c.Error = err.Error()
		}
		return c
	}
	var checks []httpapi.ReadyCheck
	var drain error
	if a.draining.Load() {
		drain = errors.New("shutting down")
	}
	checks = append(checks, check("shutdown", true, drain))

	applied, err := a.Store.(store.MigrationChecker).MigrationsApplied(ctx)
	checks = append(checks, check("store", true, err))
	if err == nil && !applied {
		err = errors.New("the store lacks migrations this build needs: run coupond migrate")
	} else if err != nil {
		err = errors.New("unknown: the store did not answer")
	}
	checks = append(checks, check("migrations", true, err))

	_, err = a.Engine.Stats(ctx, "readyz-probe")
	if errors.Is(err, engine.ErrUnknownBatch) {
		err = nil // it answered
	}
	checks = append(checks, check("engine", false, err))

	err = nil
	if !a.Bus.Conn().IsConnected() {
		err = fmt.Errorf("not connected to NATS (%s)", a.Bus.Conn().Status())
	}
	checks = append(checks, check("bus", false, err))
	return checks
}

// drain marks the instance unready and, with a drain delay, waits for load
// balancers to notice before the listener closes.
func (a *App) drain() {
	if a.draining.Swap(true) || a.srv == nil || a.cfg.Ops.DrainDelay <= 0 {
		return
	}
	a.log.Info("draining: /readyz answers 503", "for", a.cfg.Ops.DrainDelay)
	time.Sleep(a.cfg.Ops.DrainDelay)
}

// showToken tells the operator a generated admin token without writing it
// into the logs: on a terminal it is shown; elsewhere (a service manager, a
// container) it goes to a file only the service's user can read.
func (a *App) showToken() error {
	if f, ok := a.stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(a.stderr, "coupond: COUPOND_ADMIN_TOKEN is not set; this run's admin token is %s\n", a.cfg.AdminToken)
			return nil
		}
	}
	path := filepath.Join(a.cfg.DataDir, "admin-token")
	if err := os.WriteFile(path, []byte(a.cfg.AdminToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the generated admin token: %w", err)
	}
	fmt.Fprintf(a.stderr, "coupond: COUPOND_ADMIN_TOKEN is not set; this run's admin token is in %s\n", path)
	return nil
}
