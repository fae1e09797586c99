package guard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/telemetry"
)

// ExternalConfig configures the guard of an external system.
type ExternalConfig struct {
	// Name labels metrics, spans and errors: order_system, risk, sms.
	Name string
	// Timeout bounds each call; default 2s.
	Timeout time.Duration
	// Failures and Cooldown configure the breaker (defaults 5 and 5s).
	Failures int
	Cooldown time.Duration
	Tracer   trace.Tracer // nil: no spans
	Metrics  *telemetry.Metrics
	Now      func() time.Time
}

// External guards calls to a system outside coupond — the order system,
// a risk service, an SMS gateway — with a timeout, a circuit breaker, a span
// and metrics. A client of such a system runs each request through Do:
//
//	err := orders.guard.Do(ctx, "confirm", func(ctx context.Context) error {
//		return orders.post(ctx, "/orders/"+id+"/coupons", body)
//	})
//
// While the system is down, calls fail at once with an error that wraps
// ErrOpen and coupon.ErrUnavailable, so the API answers 503 `unavailable`
// with Retry-After instead of holding requests for the length of a timeout.
type External struct {
	breaker *Breaker
	timeout time.Duration
	tracer  trace.Tracer
	ops     ops
	byName  map[string]*op
}

// NewExternal returns the guard of one external system. ops names the
// operations whose metrics it keeps; other names are measured as "other".
func NewExternal(cfg ExternalConfig, opNames ...string) *External {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	x := &External{
		breaker: NewBreaker(BreakerConfig{Name: cfg.Name, Failures: cfg.Failures, Cooldown: cfg.Cooldown, Metrics: cfg.Metrics, Now: cfg.Now}),
		timeout: cfg.Timeout,
		tracer:  cfg.Tracer,
		ops:     ops{backend: cfg.Name, tracer: cfg.Tracer, metrics: cfg.Metrics},
		byName:  map[string]*op{},
	}
	for _, name := range append(opNames, "other") {
		x.byName[name] = x.ops.op(name, x.timeout, x.breaker, true, nil)
	}
	return x
}

// Breaker is the guard's circuit breaker.
func (x *External) Breaker() *Breaker { return x.breaker }

// Do runs one call of operation name.
func (x *External) Do(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	o := x.byName[name]
	if o == nil {
		o = x.byName["other"]
	}
	c, cctx, err := begin(ctx, x.tracer, o)
	if err != nil {
		return err
	}
	return c.end(fn(cctx))
}
