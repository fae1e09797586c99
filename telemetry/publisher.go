package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/bus"
)

// maxLinks bounds the links of one publish span to the requests whose
// events it carries.
const maxLinks = 128

// Publisher wraps the outbox relay's publisher: each publication gets a
// producer span linked to the spans where its events were caused (found in
// Origins), each message carries its cause's trace context (or the publish
// span's), and the published events and failures are counted.
type Publisher struct {
	next interface {
		Publish(ctx context.Context, envs []bus.Envelope) error
	}
	tracer  trace.Tracer
	origins *Origins
	metrics *Metrics
	op      *BackendOp
}

// NewPublisher wraps next; a nil tracer records no spans.
func NewPublisher(next interface {
	Publish(ctx context.Context, envs []bus.Envelope) error
}, tracer trace.Tracer, origins *Origins, m *Metrics) *Publisher {
	return &Publisher{next: next, tracer: tracer, origins: origins, metrics: m, op: m.Backend("bus", "publish")}
}

// Publish publishes envs through the wrapped publisher.
func (p *Publisher) Publish(ctx context.Context, envs []bus.Envelope) error {
	start := time.Now()
	var span trace.Span
	if p.tracer != nil {
		var links []trace.Link
		for i := range envs {
			if sc, ok := p.origins.Lookup(envs[i].AggregateID); ok {
				envs[i].Trace = sc
				if len(links) < maxLinks {
					links = append(links, trace.Link{SpanContext: sc})
				}
			}
		}
		ctx, span = p.tracer.Start(ctx, "outbox publish",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithLinks(links...),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.Int("messaging.batch.message_count", len(envs)),
			))
		defer span.End()
	}
	err := p.next.Publish(ctx, envs)
	p.op.Observe(time.Since(start), err != nil)
	if err != nil {
		if span != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
		}
		return err
	}
	p.metrics.Published(len(envs))
	return nil
}
