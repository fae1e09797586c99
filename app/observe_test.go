package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/telemetry"
)

// /metrics serves the request, claim, pool, outbox, reconciler and cache
// metrics, and the batch_metrics switch turns the per-batch reads off.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	a := bootWith(t, nil, nil)
	c := newClient(t, a)
	id := c.publishedBatch(10, 1)
	for _, user := range []string{"a", "b", "c"} {
		c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": user})
	}
	c.must(409, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "a"})
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "d"}, "Idempotency-Key", "k1")
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "d"}, "Idempotency-Key", "k1")

	m := c.metrics()
	for _, want := range []string{
		`coupond_http_requests_total{method="POST",route="/v1/batches/{id}/claims",status="201"} 5`,
		`coupond_http_requests_total{method="POST",route="/v1/batches/{id}/claims",status="409"} 1`,
		`coupond_http_request_duration_seconds_bucket{method="POST",route="/v1/batches/{id}/claims",le="+Inf"} 6`,
		`coupond_claims_total{code="created"} 4`,
		`coupond_claims_total{code="replayed"} 1`,
		`coupond_claims_total{code="limit_reached"} 1`,
		`coupond_engine_pool_depth{batch_id="` + id + `"} 6`,
		`coupond_engine_claimed{batch_id="` + id + `"} 4`,
		`coupond_reconciler_backlog_claims 0`,
		`coupond_outbox_pending_events `,
		`coupond_outbox_oldest_pending_age_seconds `,
		`coupond_batch_cache_hits_total `,
		`coupond_batch_cache_misses_total `,
		`coupond_backend_duration_seconds_count{backend="engine",op="claim"} 6`,
		`coupond_backend_duration_seconds_count{backend="store",op="insert_claims"} `,
		`coupond_breaker_state{breaker="engine"} 0`,
		`coupond_switch_enabled{switch="batch_metrics"} 1`,
		`coupond_claims_inflight_limit 1024`,
		`go_goroutines `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	if metricValue(m, "coupond_batch_cache_hits_total") < 1 {
		t.Errorf("the batch cache hits are not counted:\n%s", grep(m, "batch_cache"))
	}
	c.must(401, "GET", "/v1/nope", nil, "Authorization", "Bearer wrong")
	if m := c.metrics(); !strings.Contains(m, `route="unmatched",status="401"`) {
		t.Errorf("an unrouted 401 is not counted:\n%s", grep(m, "status=\"401\""))
	}

	sw := c.must(200, "PUT", "/v1/ops/switches/batch_metrics", map[string]any{"enabled": false})
	if sw["enabled"] != false {
		t.Fatalf("switch: %v", sw)
	}
	time.Sleep(10 * time.Millisecond)
	if m := c.metrics(); strings.Contains(m, "coupond_engine_pool_depth") || !strings.Contains(m, `coupond_switch_enabled{switch="batch_metrics"} 0`) {
		t.Fatalf("batch_metrics off, yet:\n%s", grep(m, "pool_depth"))
	}
	c.must(404, "PUT", "/v1/ops/switches/nope", map[string]any{"enabled": false})
	list := c.must(200, "GET", "/v1/ops/switches", nil)
	if len(list["items"].([]any)) != 5 {
		t.Fatalf("switches: %v", list)
	}
}

// One trace covers a claim from HTTP through the engine and the store to
// the bus, and the message on the bus carries it to consumers.
func TestTraceFollowsAClaimIntoTheBus(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	a := bootWith(t, nil, func(a *app.App) { a.Tracing = telemetry.TracingWith(tp) })
	c := newClient(t, a)
	id := c.publishedBatch(5, 1)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	claim := c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "tracey"},
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")

	// The consumer side: the claim.created message carries the request's trace.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := a.Bus.JetStream().OrderedConsumer(ctx, a.Bus.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{a.Bus.Subject(bus.TypeClaimCreated)},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := trace.SpanContextFromContext(bus.ContextFromHeader(context.Background(), msg.Headers()))
	if got.TraceID().String() != traceID {
		t.Fatalf("the message carries trace %s, want the request's %s", got.TraceID(), traceID)
	}

	var server, engineClaim, insert, publish sdktrace.ReadOnlySpan
	waitFor(t, "the spans", func() bool {
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "POST /v1/batches/{id}/claims":
				server = s
			case "engine.claim":
				if s.SpanContext().TraceID().String() == traceID {
					engineClaim = s
				}
			case "store.insert_claims":
				insert = s
			case "outbox publish":
				for _, l := range s.Links() {
					if l.SpanContext.TraceID().String() == traceID {
						publish = s
					}
				}
			}
		}
		return server != nil && engineClaim != nil && insert != nil && publish != nil
	})
	if server.SpanContext().TraceID().String() != traceID || server.SpanKind() != trace.SpanKindServer {
		t.Fatalf("server span %v in trace %s", server.Name(), server.SpanContext().TraceID())
	}
	if engineClaim.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Fatal("the engine step is not a child of the request")
	}
	linked := false
	for _, s := range rec.Ended() {
		if s.Name() == "group commit" {
			for _, l := range s.Links() {
				linked = linked || l.SpanContext.SpanID() == server.SpanContext().SpanID()
			}
		}
	}
	if !linked {
		t.Fatal("the group commit that wrote the claim is not linked to the request")
	}
	_ = claim
}

// Every line a request logs carries its request id (and trace id), the
// access line carries the outcome code, and no token or phone number is
// written.
func TestRequestLogs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "log-secret-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	a := app.New(cfg, telemetry.NewLogger("json", "debug", &buf), io.Discard)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	c := newClient(t, a)
	id := c.publishedBatch(3, 1)
	const phone = "+8613812345678"
	r := c.do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "pat", "phone": phone}, "X-Request-Id", "req-claim-1",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if r.status != 201 || r.header.Get("X-Request-Id") != "req-claim-1" {
		t.Fatalf("claim: %d, X-Request-Id %q", r.status, r.header.Get("X-Request-Id"))
	}
	c.must(409, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "pat", "phone": phone}, "X-Request-Id", "req-claim-2")
	c.must(401, "GET", "/v1/batches", nil, "Authorization", "Bearer not-the-token-"+phone)
	c.must(422, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "pat", "phone": "call-me"}, "X-Request-Id", "req-claim-3")

	logs := buf.String()
	for _, secret := range []string{"log-secret-token", phone, "not-the-token"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("%q was logged:\n%s", secret, logs)
		}
	}
	lines := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if rid, ok := rec["request_id"].(string); ok && rec["msg"] == "http request" {
			lines[rid] = rec
		}
	}
	for rid, code := range map[string]string{"req-claim-1": "created", "req-claim-2": "limit_reached", "req-claim-3": "invalid"} {
		l := lines[rid]
		if l == nil || l["code"] != code || l["route"] != "/v1/batches/{id}/claims" {
			t.Fatalf("access log of %s: %v, want code %s\n%s", rid, l, code, logs)
		}
	}
	if lines["req-claim-1"]["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("the caller's trace is not logged: %v", lines["req-claim-1"])
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
