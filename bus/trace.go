package bus

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads and writes the W3C traceparent and tracestate headers.
var traceContext = propagation.TraceContext{}

// injectTrace writes sc, or else the span of ctx, into h as W3C trace
// context; nothing when neither is valid (tracing off).
func injectTrace(ctx context.Context, sc trace.SpanContext, h nats.Header) {
	if !sc.IsValid() {
		sc = trace.SpanContextFromContext(ctx)
		if !sc.IsValid() {
			return
		}
	}
	traceContext.Inject(trace.ContextWithSpanContext(ctx, sc), headerCarrier(h))
}

// ContextFromHeader returns ctx with the trace context a message carries
// (its traceparent header) as the remote parent, for a consumer to start
// its span in the trace of the event's cause:
//
//	ctx := bus.ContextFromHeader(ctx, msg.Headers())
//	ctx, span := tracer.Start(ctx, "handle claim.created", trace.WithSpanKind(trace.SpanKindConsumer))
func ContextFromHeader(ctx context.Context, h nats.Header) context.Context {
	return traceContext.Extract(ctx, headerCarrier(h))
}

// headerCarrier keeps the header names as the propagator writes them
// (lower case, as other languages' NATS instrumentation expects) and finds
// them in any case.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
