package telemetry

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator reads and writes W3C trace context (traceparent, tracestate)
// in HTTP requests and NATS messages.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is the process's tracer provider. It exports spans over OTLP/HTTP
// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set (the exporter reads the other OTEL_EXPORTER_OTLP_* settings, and the
// SDK OTEL_TRACES_SAMPLER, from the environment too); otherwise it is off,
// and Tracer returns nil so that callers skip spans altogether.
type Tracing struct {
	provider trace.TracerProvider
	enabled  bool
	shutdown func(context.Context) error
	once     sync.Once
	err      error
}

// NewTracing sets tracing up from the environment, read with getenv.
func NewTracing(ctx context.Context, version string, getenv func(string) string) (*Tracing, error) {
	if getenv("OTEL_SDK_DISABLED") == "true" ||
		(getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		return &Tracing{provider: noop.NewTracerProvider()}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "coupond"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{provider: tp, enabled: true, shutdown: tp.Shutdown}, nil
}

// TracingWith uses tp, for tests that record spans; a nil tp is off.
func TracingWith(tp trace.TracerProvider) *Tracing {
	if tp == nil {
		return &Tracing{provider: noop.NewTracerProvider()}
	}
	return &Tracing{provider: tp, enabled: true}
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t != nil && t.enabled }

// Tracer returns a tracer named for a component, or nil when tracing is off.
func (t *Tracing) Tracer(name string) trace.Tracer {
	if !t.Enabled() {
		return nil
	}
	return t.provider.Tracer("github.com/coupond/coupond/" + name)
}

// Shutdown exports the spans still buffered and stops the exporter; safe
// to call twice.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	t.once.Do(func() { t.err = t.shutdown(ctx) })
	return t.err
}

// Origins remembers, for a bounded number of recent state changes, the span
// in which each happened, keyed by the id of what changed (a claim id, a
// batch id: the outbox's aggregate id). The outbox relay runs later, in
// another goroutine and without the request's context; it looks the span up
// to link its publish span to the request and to send the request's trace
// context in the message, so that a consumer continues the request's trace.
// It is in-process only: an event relayed after a restart, or by another
// instance, carries the relay's own trace context instead. A nil *Origins
// remembers nothing.
type Origins struct {
	mu   sync.Mutex
	m    map[string]trace.SpanContext
	ring []string
	next int
}

// NewOrigins returns Origins holding at most size entries, the oldest
// forgotten first.
func NewOrigins(size int) *Origins {
	return &Origins{m: make(map[string]trace.SpanContext, size), ring: make([]string, size)}
}

// Remember records ctx's span as the origin of id, if it is sampled.
func (o *Origins) Remember(ctx context.Context, id string) {
	if o == nil || id == "" {
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return
	}
	o.mu.Lock()
	if _, ok := o.m[id]; !ok {
		if old := o.ring[o.next]; old != "" {
			delete(o.m, old)
		}
		o.ring[o.next] = id
		o.next = (o.next + 1) % len(o.ring)
	}
	o.m[id] = sc
	o.mu.Unlock()
}

// Lookup returns the origin of id.
func (o *Origins) Lookup(id string) (trace.SpanContext, bool) {
	if o == nil {
		return trace.SpanContext{}, false
	}
	o.mu.Lock()
	sc, ok := o.m[id]
	o.mu.Unlock()
	return sc, ok
}
