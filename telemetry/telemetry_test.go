package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/telemetry"
)

func TestTracingIsOffWithoutAnEndpoint(t *testing.T) {
	t.Parallel()
	tr, err := telemetry.NewTracing(context.Background(), "test", func(string) string { return "" })
	require.NoError(t, err)
	require.False(t, tr.Enabled())
	require.Nil(t, tr.Tracer("x"), "no tracer, so callers skip spans altogether")
	require.NoError(t, tr.Shutdown(context.Background()))
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach the collector over
// OTLP/HTTP, at the latest when the tracing shuts down.
func TestTracingExportsOverOTLPWhenTheEndpointIsSet(t *testing.T) {
	got := make(chan []string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		var names []string
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
		got <- names
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)

	tr, err := telemetry.NewTracing(context.Background(), "test", os.Getenv)
	require.NoError(t, err)
	require.True(t, tr.Enabled())
	_, span := tr.Tracer("test").Start(context.Background(), "claim")
	span.End()
	require.NoError(t, tr.Shutdown(context.Background()))
	select {
	case names := <-got:
		require.Equal(t, []string{"claim"}, names)
	case <-time.After(10 * time.Second):
		t.Fatal("no spans reached the collector")
	}
}

func TestOriginsRememberSampledSpansBoundedly(t *testing.T) {
	t.Parallel()
	o := telemetry.NewOrigins(2)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "req")
	defer span.End()
	o.Remember(ctx, "a")
	o.Remember(context.Background(), "unsampled")
	sc, ok := o.Lookup("a")
	require.True(t, ok)
	require.Equal(t, span.SpanContext().TraceID(), sc.TraceID())
	_, ok = o.Lookup("unsampled")
	require.False(t, ok)
	o.Remember(ctx, "b")
	o.Remember(ctx, "c")
	_, ok = o.Lookup("a")
	require.False(t, ok, "the oldest is forgotten past the bound")
	_, ok = o.Lookup("c")
	require.True(t, ok)
	var none *telemetry.Origins
	none.Remember(ctx, "x")
	_, ok = none.Lookup("x")
	require.False(t, ok)
}

type publisherFunc func(ctx context.Context, envs []bus.Envelope) error

func (f publisherFunc) Publish(ctx context.Context, envs []bus.Envelope) error { return f(ctx, envs) }

// The relay's publication is one producer span linked to the requests that
// caused its events, and each event carries its cause's span.
func TestPublisherLinksEventsToTheirCauses(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	origins := telemetry.NewOrigins(16)
	reqCtx, reqSpan := tp.Tracer("http").Start(context.Background(), "POST /v1/batches/{id}/claims")
	origins.Remember(reqCtx, "claim-1")
	reqSpan.End()
	m := telemetry.NewMetrics("test")

	var sent []bus.Envelope
	fail := false
	p := telemetry.NewPublisher(publisherFunc(func(ctx context.Context, envs []bus.Envelope) error {
		if fail {
			return errors.New("nats down")
		}
		sent = append(sent, envs...)
		require.True(t, trace.SpanContextFromContext(ctx).IsValid(), "the bus sees the publish span")
		return nil
	}), tp.Tracer("bus"), origins, m)
	require.NoError(t, p.Publish(context.Background(), []bus.Envelope{{ID: 1, AggregateID: "claim-1"}, {ID: 2, AggregateID: "claim-2"}}))
	require.Equal(t, reqSpan.SpanContext().TraceID(), sent[0].Trace.TraceID())
	require.False(t, sent[1].Trace.IsValid(), "an event of unknown cause carries the publish span (set by the bus)")
	spans := rec.Ended()
	require.Len(t, spans, 2)
	pub := spans[1]
	require.Equal(t, "outbox publish", pub.Name())
	require.Len(t, pub.Links(), 1)
	require.Equal(t, reqSpan.SpanContext().SpanID(), pub.Links()[0].SpanContext.SpanID())

	fail = true
	require.Error(t, p.Publish(context.Background(), []bus.Envelope{{ID: 3}}))
	require.Contains(t, scrape(t, m), "coupond_outbox_published_total 2\n")
	require.Contains(t, scrape(t, m), `coupond_backend_errors_total{backend="bus",op="publish"} 1`)
}

func TestHTTPAndClaimMetrics(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics("test")
	for range 3 {
		m.ObserveHTTP("/v1/batches/{id}/claims", "POST", 201, time.Millisecond)
	}
	m.ObserveHTTP("/v1/batches/{id}/claims", "POST", 409, time.Millisecond)
	m.Claim("created")
	m.Claim("sold_out")
	m.Claim("sold_out")
	out := scrape(t, m)
	require.Contains(t, out, `coupond_http_requests_total{method="POST",route="/v1/batches/{id}/claims",status="201"} 3`)
	require.Contains(t, out, `coupond_http_requests_total{method="POST",route="/v1/batches/{id}/claims",status="409"} 1`)
	require.Contains(t, out, `coupond_http_request_duration_seconds_count{method="POST",route="/v1/batches/{id}/claims"} 4`)
	require.Contains(t, out, `coupond_claims_total{code="sold_out"} 2`)
	require.Contains(t, out, `coupond_build_info{`)

	var none *telemetry.Metrics
	none.ObserveHTTP("/", "GET", 200, 0) // counts nothing, fails nothing
	none.Claim("created")
}

type fakeStore struct {
	events  []store.Event
	batches []*coupon.Batch
}

func (f *fakeStore) PendingEvents(context.Context, int) ([]store.Event, error) { return f.events, nil }

func (f *fakeStore) ListBatches(_ context.Context, filter store.BatchFilter) ([]*coupon.Batch, error) {
	var out []*coupon.Batch
	for _, b := range f.batches {
		if b.Status == filter.Status {
			out = append(out, b)
		}
	}
	return out, nil
}

func TestStateCollectorReadsPoolsOutboxAndBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 11, 11, 0, 0, 10, 0, time.UTC)
	e := memory.New()
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: "b1", Active: true, PerUserLimit: 1},
		Pool:  []engine.PoolCode{{Code: "A", Amount: 1}, {Code: "B", Amount: 1}, {Code: "C", Amount: 1}},
	}))
	_, err := e.Claim(ctx, engine.ClaimParams{BatchID: "b1", UserID: "u", ClaimID: "c1", At: now.Add(-5 * time.Minute)})
	require.NoError(t, err)
	on := true
	m := telemetry.NewMetrics("test")
	m.Registry().MustRegister(telemetry.NewStateCollector(m, telemetry.StateConfig{
		Engine: e,
		Store: &fakeStore{
			events: []store.Event{{ID: 7, CreatedAt: now.Add(-90 * time.Second)}, {ID: 8, CreatedAt: now}},
			batches: []*coupon.Batch{
				{ID: "b1", Status: coupon.StatusActive, GeneratedCount: 3, BatchSpec: coupon.BatchSpec{TotalQuantity: 5}},
				{ID: "gone", Status: coupon.StatusPaused},
			},
		},
		Grace:   time.Minute,
		Enabled: func() bool { return on },
		Now:     func() time.Time { return now },
		MaxAge:  time.Nanosecond,
	}))
	out := scrape(t, m)
	require.Contains(t, out, `coupond_engine_pool_depth{batch_id="b1"} 2`)
	require.Contains(t, out, `coupond_engine_claimed{batch_id="b1"} 1`)
	require.Contains(t, out, `coupond_engine_batches 2`)
	require.Contains(t, out, `coupond_batch_total_quantity{batch_id="b1"} 5`)
	require.Contains(t, out, `coupond_batch_generated{batch_id="b1"} 3`)
	require.Contains(t, out, `coupond_reconciler_backlog_claims 1`)
	require.Contains(t, out, `coupond_outbox_pending_events 2`)
	require.Contains(t, out, `coupond_outbox_oldest_pending_age_seconds 90`)
	require.NotContains(t, out, `coupond_engine_pool_depth{batch_id="gone"}`, "a batch the engine does not hold has no pool")

	on = false
	require.NotContains(t, scrape(t, m), "coupond_engine_pool_depth", "the batch_metrics switch turns the reads off")
}

func scrape(t *testing.T, m *telemetry.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	return rec.Body.String()
}
