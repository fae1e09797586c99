package bus_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/bus"
)

// A message carries the trace context of its event's cause, else of the
// publishing context, else none; a consumer continues that trace.
func TestMessagesCarryTraceContextToConsumers(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{})
	tp := sdktrace.NewTracerProvider()
	_, cause := tp.Tracer("t").Start(context.Background(), "POST /v1/batches/{id}/claims")
	cause.End()
	pubCtx, pub := tp.Tracer("t").Start(context.Background(), "outbox publish")
	defer pub.End()

	withCause := envelope(t, 1, bus.TypeClaimCreated, "c1", map[string]string{"claim_id": "c1"})
	withCause.Trace = cause.SpanContext()
	ofPublisher := envelope(t, 2, bus.TypeClaimCreated, "c2", map[string]string{"claim_id": "c2"})
	require.NoError(t, b.Publish(pubCtx, []bus.Envelope{withCause, ofPublisher}))
	untraced := envelope(t, 3, bus.TypeClaimCreated, "c3", map[string]string{"claim_id": "c3"})
	require.NoError(t, b.Publish(context.Background(), []bus.Envelope{untraced}))

	msgs := readAll(t, b, 3)
	require.Contains(t, msgs[0].Headers(), "traceparent", "lower case, as other languages expect")
	consumer := func(i int) trace.SpanContext {
		ctx := bus.ContextFromHeader(context.Background(), msgs[i].Headers())
		_, span := tp.Tracer("consumer").Start(ctx, "handle claim.created", trace.WithSpanKind(trace.SpanKindConsumer))
		defer span.End()
		return span.SpanContext()
	}
	require.Equal(t, cause.SpanContext().TraceID(), consumer(0).TraceID(), "the consumer continues the request's trace")
	require.Equal(t, pub.SpanContext().TraceID(), consumer(1).TraceID())
	require.Empty(t, msgs[2].Headers().Get("traceparent"))
	require.NotEqual(t, cause.SpanContext().TraceID(), consumer(2).TraceID())
}
