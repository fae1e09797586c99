// Package httpapi serves coupond's HTTP API: JSON under /v1, described by an
// OpenAPI 3.1 document at /openapi.json with a docs page at /docs that needs
// no internet access. Every error is an RFC 9457 problem with a stable code.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/console"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/telemetry"
)

// Config wires the API.
type Config struct {
	Service *service.Service
	// AdminToken is the bootstrap bearer token: it authenticates as admin.
	AdminToken string
	// Authenticate, if set, authenticates the other credentials of a /v1
	// request (API keys, signatures); ok false means "not one of mine",
	// an error refuses the request with its problem.
	Authenticate func(r *http.Request) (p auth.Principal, ok bool, err error)
	Logger       *slog.Logger
	Version      string

	// Operations; each is optional.

	// Metrics counts requests and claims and is served at GET /metrics.
	Metrics *telemetry.Metrics
	// Tracer starts a server span per request; nil: no spans (the caller's
	// trace context is still logged).
	Tracer trace.Tracer
	// Ready lists the checks of GET /readyz; nil: ready while serving.
	Ready func(context.Context) []ReadyCheck
	// Switches are served at /v1/ops/switches; their access_log turns the
	// per-request log line off. Nil: none.
	Switches *guard.Switches
	// MaxInflightClaims bounds the claims served at once; beyond it a claim
	// is answered 503 `overloaded` with Retry-After at once. 0: no bound.
	MaxInflightClaims int
}

// Body limits: a claim is a few hundred bytes; a batch with a thousand rules
// a few hundred kilobytes.
const (
	maxClaimBody = 4 << 10
	maxBatchBody = 512 << 10
)

// New returns the API's handler.
func New(cfg Config) http.Handler {
	h, _ := newAPI(cfg)
	return h
}

// OpenAPI returns the API's OpenAPI description, as /openapi.json serves it.
func OpenAPI() *huma.OpenAPI {
	sw, _ := guard.NewSwitches(nil)
	_, api := newAPI(Config{Switches: sw})
	return api.OpenAPI()
}

func newAPI(cfg Config) (http.Handler, huma.API) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	hc := huma.DefaultConfig("coupond", cfg.Version)
	hc.Info.Description = "High-availability coupon and red-envelope service: batches, codes, claims. " +
		"Every /v1 call needs `Authorization: Bearer <token>`. Money is integer minor units; times are RFC 3339 UTC. " +
		"Errors are RFC 9457 problem documents with a stable `code`."
	hc.OpenAPIPath = "/openapi"
	hc.DocsPath = "" // served below from embedded files: no CDN
	hc.SchemasPath = ""
	hc.CreateHooks = nil // no $schema links in bodies
	hc.RejectUnknownQueryParameters = true
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer"},
	}
	hc.Security = []map[string][]string{{"bearer": {}}}
	hc.Transformers = append(hc.Transformers, recordOutcome)
	api := humago.New(mux, hc)

	requireRoles(api)
	h := &handlers{svc: cfg.Service, log: cfg.Logger}
	h.registerBatches(api)
	h.registerClaims(api)
	h.registerRedemptions(api)
	h.registerQueries(api) // search.go
	h.registerStats(api)
	h.registerTags(api)
	h.registerDistribution(api)
	h.registerAccess(api) // keys.go, lists.go, sms.go, risk.go
	h.registerHealth(api, cfg.Ready)
	if cfg.Switches != nil {
		h.registerSwitches(api, cfg.Switches)
	}
	document(api)
	documentRoles(api)

	mux.Handle("GET /docs", docsHandler())
	mux.Handle("GET /console", console.Handler()) // the admin console: embedded pages over this API
	mux.Handle("GET /console/", console.Handler())
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(mux, r); allow != "" {
			w.Header().Set("Allow", allow)
			writeProblem(w, &Problem{Status: http.StatusMethodNotAllowed, Title: "Method Not Allowed", Code: "method_not_allowed",
				Detail: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + allow})
			return
		}
		writeProblem(w, &Problem{Status: http.StatusNotFound, Title: "Not Found", Code: "not_found",
			Detail: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	o := &observer{
		next:      authenticate(cfg.AdminToken, cfg.Authenticate, mux),
		mux:       mux,
		metrics:   cfg.Metrics,
		tracer:    cfg.Tracer,
		log:       cfg.Logger,
		accessLog: accessLogSwitch(cfg.Switches),
		maxClaims: int64(cfg.MaxInflightClaims),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.GaugeFunc("coupond_claims_inflight", "Claims this instance is serving now (counted while a bound is set).",
			func() float64 { return float64(o.inflight.Load()) })
	}
	return o, api
}

// accessLogSwitch is the switch of the access log; without switches the
// log is on.
func accessLogSwitch(sw *guard.Switches) *guard.Switch {
	if s := sw.Get(guard.SwitchAccessLog); s != nil {
		return s
	}
	on := &guard.Switch{Name: guard.SwitchAccessLog}
	on.Set(true)
	return on
}

type handlers struct {
	svc *service.Service
	log *slog.Logger
}

// authenticate finds the principal of a /v1 request: the bootstrap admin
// token, or whatever cfg.Authenticate recognises. Anything else is 401.
func authenticate(token string, others func(*http.Request) (auth.Principal, bool, error), next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	bootstrap := auth.Principal{KeyID: "bootstrap", Role: auth.Admin}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 {
			next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), bootstrap)))
			return
		}
		if others != nil {
			p, ok, err := others(r)
			if err != nil {
				writeProblem(w, problem(err, "header"))
				return
			}
			if ok {
				next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), p)))
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="coupond"`)
		writeProblem(w, &Problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "unauthorized",
			Detail: "missing or wrong credentials"})
	})
}

// allowed lists the methods that have a route for r's path; the catch-all
// route hides the mux's own 405 answers, so they are found here.
func allowed(mux *http.ServeMux, r *http.Request) string {
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			methods = append(methods, m)
		}
	}
	return strings.Join(methods, ", ")
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	if rec, ok := w.(*recorder); ok {
		rec.req.Outcome = p.Code
	}
	w.Header().Set("Content-Type", "application/problem+json")
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
