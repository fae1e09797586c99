package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/telemetry"
)

// retryAfter is what a 503 asks a client to wait, in seconds: long enough
// for a breaker's probe or a burst of claims to pass.
const retryAfter = "1"

// observer is the outermost middleware: it gives every request an id (the
// client's X-Request-Id if it is sane), a server span when tracing is on,
// metrics, one access log line with the outcome code, and sheds claims
// beyond the in-flight bound with a 503 instead of queueing them. It costs a
// request two allocations (its state and the request's new context) when
// tracing is off.
type observer struct {
	next      http.Handler
	mux       *http.ServeMux
	metrics   *telemetry.Metrics
	tracer    trace.Tracer
	log       *slog.Logger
	accessLog *guard.Switch
	maxClaims int64
	inflight  atomic.Int64
}

// recorder is one request's state: its telemetry.Request (for the logs
// and the outcome) and its response's status.
type recorder struct {
	http.ResponseWriter
	req    telemetry.Request
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (o *observer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	// Headers are read and set by their canonical keys: no canonicalizing
	// on the hot path.
	if id := r.Header["X-Request-Id"]; len(id) > 0 && telemetry.ValidRequestID(id[0]) {
		rec.req.ID = id[0]
	} else {
		rec.req.ID = telemetry.NewRequestID()
	}
	w.Header()["X-Request-Id"] = []string{rec.req.ID}

	ctx := r.Context()
	if len(r.Header["Traceparent"]) > 0 {
		// Even with tracing off, the logs name the caller's trace.
		ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	var span trace.Span
	if o.tracer != nil {
		ctx, span = o.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
	}
	r = r.WithContext(telemetry.WithRequest(ctx, &rec.req))

	claim := r.Method == http.MethodPost && isClaimPath(r.URL.Path)
	if claim && o.maxClaims > 0 {
		if o.inflight.Add(1) > o.maxClaims {
			o.inflight.Add(-1)
			rec.Header().Set("Retry-After", retryAfter)
			writeProblem(rec, &Problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable", Code: codeOverloaded,
				Detail: "too many claims in flight on this instance; retry after " + retryAfter + "s"})
			o.finish(rec, r, span, claim, time.Since(start))
			return
		}
		defer o.inflight.Add(-1)
	}
	o.next.ServeHTTP(rec, r)
	o.finish(rec, r, span, claim, time.Since(start))
}

// finish counts, traces and logs an answered request.
func (o *observer) finish(rec *recorder, r *http.Request, span trace.Span, claim bool, d time.Duration) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	outcome := rec.req.Outcome
	if outcome == "" {
		switch {
		case status < 300 && len(rec.Header()["Idempotent-Replayed"]) > 0 && rec.Header()["Idempotent-Replayed"][0] == "true":
			outcome = telemetry.OutcomeReplayed
		case status == http.StatusCreated:
			outcome = telemetry.OutcomeCreated
		case status < 400:
			outcome = telemetry.OutcomeOK
		default:
			outcome = codeOf[status]
		}
	}
	route := o.route(r)
	o.metrics.ObserveHTTP(route, methodLabel(r.Method), status, d)
	if claim {
		o.metrics.Claim(outcome)
	}
	if span != nil {
		span.SetName(r.Method + " " + route)
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.Int("http.response.status_code", status),
			attribute.String("coupond.outcome", outcome),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
	if !o.accessLog.On() {
		return
	}
	ctx := r.Context()
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		level = slog.LevelDebug
	}
	if !o.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.String("code", outcome),
		slog.Duration("duration", d),
	}
	if rec.req.Err != nil {
		attrs = append(attrs, slog.Any("err", rec.req.Err))
	}
	o.log.LogAttrs(ctx, level, "http request", attrs...)
}

// route is the request's route pattern without its method, e.g.
// "/v1/batches/{id}/claims"; "unmatched" when no route matched. A request
// refused before routing (a bad bearer token) is looked up in the mux.
func (o *observer) route(r *http.Request) string {
	p := r.Pattern
	if p == "" && o.mux != nil {
		_, p = o.mux.Handler(r)
	}
	if _, path, ok := strings.Cut(p, " "); ok {
		p = path
	}
	if p == "" || p == "/" {
		return "unmatched"
	}
	return p
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

// isClaimPath reports whether p is /v1/batches/{id}/claims.
func isClaimPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v1/batches/")
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, "/claims")
	return ok && id != "" && !strings.Contains(id, "/")
}

// recordOutcome is a huma transformer: it notes the code of every problem
// the API answers with (and its hidden cause) in the request's state, and
// asks for a retry later on a 503.
func recordOutcome(ctx huma.Context, _ string, v any) (any, error) {
	p, ok := v.(*Problem)
	if !ok {
		return v, nil
	}
	if req := telemetry.RequestFrom(ctx.Context()); req != nil {
		req.Outcome, req.Err = p.Code, p.cause
	}
	if p.Status == http.StatusServiceUnavailable {
		ctx.SetHeader("Retry-After", retryAfter)
	}
	if p.retryAfter > 0 {
		ctx.SetHeader("Retry-After", strconv.Itoa(p.retryAfter))
	}
	return v, nil
}
