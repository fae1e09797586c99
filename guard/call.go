package guard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/telemetry"
)

// op is one guarded operation of a backend, resolved once: its span name,
// metrics, timeout and breaker.
type op struct {
	span     string
	metrics  *telemetry.BackendOp
	timeout  time.Duration
	breaker  *Breaker // nil: none
	gated    bool     // refused at once while the breaker is open
	expected []error  // answers that are not failures of the backend
}

type ops struct {
	backend string
	tracer  trace.Tracer
	metrics *telemetry.Metrics
}

func (o ops) op(name string, timeout time.Duration, b *Breaker, gated bool, expected []error) *op {
	return &op{
		span:     o.backend + "." + name,
		metrics:  o.metrics.Backend(o.backend, name),
		timeout:  timeout,
		breaker:  b,
		gated:    gated,
		expected: expected,
	}
}

// call is one call of an op in progress. It lives on the caller's stack:
// guarding a call allocates only what a span or a timeout needs.
type call struct {
	op     *op
	parent context.Context
	start  time.Time
	span   trace.Span
	cancel context.CancelFunc
}

// begin starts a call: the breaker's permission, a span (when tracing is
// on), the timeout. When err is not nil the call must not be made.
func begin(ctx context.Context, tracer trace.Tracer, o *op) (call, context.Context, error) {
	c := call{op: o, parent: ctx, start: time.Now()}
	if o.breaker != nil && o.gated {
		if err := o.breaker.Allow(); err != nil {
			o.metrics.Observe(0, true)
			return c, ctx, err
		}
	}
	if tracer != nil {
		ctx, c.span = tracer.Start(ctx, o.span, trace.WithSpanKind(trace.SpanKindClient))
	}
	if o.timeout > 0 {
		ctx, c.cancel = context.WithTimeout(ctx, o.timeout)
	}
	return c, ctx, nil
}

// attr sets a string attribute on the call's span, if it has one.
func (c *call) attr(key, value string) {
	if c.span != nil {
		c.span.SetAttributes(attribute.String(key, value))
	}
}

// end records the call's outcome and returns err.
func (c *call) end(err error) error {
	if c.cancel != nil {
		c.cancel()
	}
	failed := Failed(c.parent, err, c.op.expected...)
	if c.op.breaker != nil && !abandoned(c.parent, err, failed) {
		// An answer, even a refusal such as "batch not loaded", shows the
		// backend works: it closes a half-open breaker.
		c.op.breaker.Record(failed)
	}
	c.op.metrics.Observe(time.Since(c.start), failed)
	if c.span != nil {
		if err != nil {
			c.span.RecordError(err)
			if failed {
				c.span.SetStatus(codes.Error, "backend call failed")
			}
		}
		c.span.End()
	}
	return err
}
