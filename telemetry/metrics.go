package telemetry

import (
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are coupond's Prometheus metrics, all named coupond_…, in a
// registry of their own (with the Go runtime's and the process's). The
// methods a request calls are cheap: series are resolved once and kept, so
// counting costs an atomic add and no allocation. A nil *Metrics counts
// nothing.
type Metrics struct {
	reg   *prometheus.Registry
	names map[string]bool // of the coupond_… metrics, for Names

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpMu       sync.Mutex
	httpSeries   atomic.Pointer[map[httpKey]*HTTPSeries]

	claims      *prometheus.CounterVec
	claimMu     sync.Mutex
	claimSeries atomic.Pointer[map[string]prometheus.Counter]

	backendDuration *prometheus.HistogramVec
	backendErrors   *prometheus.CounterVec

	breakerState    *prometheus.GaugeVec
	breakerRejected *prometheus.CounterVec

	replicaFallbacks    prometheus.Counter
	outboxPublished     prometheus.Counter
	reconcilerPasses    *prometheus.CounterVec
	reconcilerSettled   prometheus.Counter
	reconcilerReclaimed prometheus.Counter
	replenishRuns       *prometheus.CounterVec
	replenishedCodes    prometheus.Counter
	generatedCodes      prometheus.Counter
	scrapeErrors        *prometheus.CounterVec
	switches            *prometheus.GaugeVec
}

// Claim outcome codes besides the problem codes of the API.
const (
	OutcomeCreated  = "created"  // a new claim
	OutcomeReplayed = "replayed" // the stored answer to a repeated Idempotency-Key
	OutcomeOK       = "ok"       // any other success
)

// NewMetrics registers every coupond metric in a new registry.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{reg: reg, names: map[string]bool{}}
	f := factory{m}
	f.gaugeVec("coupond_build_info", "Always 1; the labels name the running build.", "version", "go_version").
		WithLabelValues(version, runtime.Version()).Set(1)

	m.httpRequests = f.counterVec("coupond_http_requests_total",
		"HTTP requests answered, by route pattern (\"unmatched\" for no route), method and status.", "route", "method", "status")
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "coupond_http_request_duration_seconds",
		Help:    "Time from a request's arrival to its answer, by route pattern and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
	m.Register(m.httpDuration)
	m.claims = f.counterVec("coupond_claims_total",
		"Claim requests by outcome: created, replayed, or the problem code (sold_out, limit_reached, not_claimable, overloaded, unavailable, …).", "code")
	m.backendDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "coupond_backend_duration_seconds",
		Help:    "Time of calls to a backend (engine, store, replica, bus, …), by backend and operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"backend", "op"})
	m.Register(m.backendDuration)
	m.backendErrors = f.counterVec("coupond_backend_errors_total",
		"Calls to a backend that failed (timeouts, connection errors, calls refused by an open circuit breaker), by backend and operation. Domain refusals such as sold out are not errors.", "backend", "op")
	m.breakerState = f.gaugeVec("coupond_breaker_state",
		"State of a circuit breaker: 0 closed (calls go through), 1 half-open (one probe call), 2 open (calls fail at once).", "breaker")
	m.breakerRejected = f.counterVec("coupond_breaker_rejected_total",
		"Calls an open circuit breaker refused without trying the backend.", "breaker")
	m.replicaFallbacks = f.counter("coupond_replica_fallbacks_total",
		"List queries that the read replica failed or whose breaker was open, answered by the primary instead.")
	m.outboxPublished = f.counter("coupond_outbox_published_total",
		"Events this instance's outbox relay published to the bus (acknowledged by JetStream).")
	m.reconcilerPasses = f.counterVec("coupond_reconciler_passes_total",
		"Reconciler passes on this instance, by result (ok, error).", "result")
	m.reconcilerSettled = f.counter("coupond_reconciler_settled_total",
		"Pending engine claims the reconciler found committed in the store and settled.")
	m.reconcilerReclaimed = f.counter("coupond_reconciler_reclaimed_total",
		"Pending engine claims that never committed, whose codes the reconciler returned to the pool.")
	m.replenishRuns = f.counterVec("coupond_replenish_runs_total",
		"Pool replenishments by this instance: batches topped up (ok) and failed passes (error).", "result")
	m.generatedCodes = f.counter("coupond_replenish_generated_codes_total",
		"Codes the replenisher generated into the store.")
	m.replenishedCodes = f.counter("coupond_replenished_codes_total",
		"Codes the replenisher loaded into engine pools.")
	m.scrapeErrors = f.counterVec("coupond_scrape_errors_total",
		"Failures reading backend state for a scrape (pool depth, outbox, reconciler backlog), by source.", "source")
	m.switches = f.gaugeVec("coupond_switch_enabled",
		"Run-time switches of non-essential work: 1 on, 0 off.", "switch")
	m.httpSeries.Store(&map[httpKey]*HTTPSeries{})
	m.claimSeries.Store(&map[string]prometheus.Counter{})
	return m
}

// Registry is where the metrics live.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Register adds a collector to the registry.
func (m *Metrics) Register(c prometheus.Collector) {
	m.reg.MustRegister(c)
	descs := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(descs); close(descs) }()
	for d := range descs {
		// A Desc shows its name only in its String form: Desc{fqName: "…", …}.
		if _, rest, ok := strings.Cut(d.String(), `fqName: "`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok {
				m.names[name] = true
			}
		}
	}
}

// Names lists the coupond_… metrics registered, sorted.
func (m *Metrics) Names() []string {
	var out []string
	for n := range m.names {
		if strings.HasPrefix(n, "coupond_") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

type httpKey struct {
	route, method string
	status        int
}

// HTTPSeries counts the requests of one route, method and status.
type HTTPSeries struct {
	Requests prometheus.Counter
	Duration prometheus.Observer
}

// ObserveHTTP counts one answered request.
func (m *Metrics) ObserveHTTP(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := httpKey{route, method, status}
	s := (*m.httpSeries.Load())[k]
	if s == nil {
		s = m.addHTTP(k)
	}
	s.Requests.Inc()
	s.Duration.Observe(d.Seconds())
}

func (m *Metrics) addHTTP(k httpKey) *HTTPSeries {
	m.httpMu.Lock()
	defer m.httpMu.Unlock()
	old := *m.httpSeries.Load()
	if s := old[k]; s != nil {
		return s
	}
	s := &HTTPSeries{
		Requests: m.httpRequests.WithLabelValues(k.route, k.method, strconv.Itoa(k.status)),
		Duration: m.httpDuration.WithLabelValues(k.route, k.method),
	}
	next := make(map[httpKey]*HTTPSeries, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = s
	m.httpSeries.Store(&next)
	return s
}

// Claim counts one claim request by its outcome code.
func (m *Metrics) Claim(code string) {
	if m == nil || code == "" {
		return
	}
	c := (*m.claimSeries.Load())[code]
	if c == nil {
		m.claimMu.Lock()
		old := *m.claimSeries.Load()
		if c = old[code]; c == nil {
			c = m.claims.WithLabelValues(code)
			next := make(map[string]prometheus.Counter, len(old)+1)
			for k, v := range old {
				next[k] = v
			}
			next[code] = c
			m.claimSeries.Store(&next)
		}
		m.claimMu.Unlock()
	}
	c.Inc()
}

// BackendOp measures the calls of one operation on one backend. A nil
// *BackendOp measures nothing.
type BackendOp struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

// Backend returns the series of one backend's operation; resolve it once.
func (m *Metrics) Backend(backend, op string) *BackendOp {
	if m == nil {
		return nil
	}
	return &BackendOp{
		duration: m.backendDuration.WithLabelValues(backend, op),
		errors:   m.backendErrors.WithLabelValues(backend, op),
	}
}

// Observe records one call.
func (b *BackendOp) Observe(d time.Duration, failed bool) {
	if b == nil {
		return
	}
	b.duration.Observe(d.Seconds())
	if failed {
		b.errors.Inc()
	}
}

// BreakerState records a breaker's state: 0 closed, 1 half-open, 2 open.
func (m *Metrics) BreakerState(name string, state int) {
	if m != nil {
		m.breakerState.WithLabelValues(name).Set(float64(state))
	}
}

// BreakerRejected counts a call an open breaker refused.
func (m *Metrics) BreakerRejected(name string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.breakerRejected.WithLabelValues(name)
}

// ReplicaFallback counts a list query the primary answered for the replica.
func (m *Metrics) ReplicaFallback() {
	if m != nil {
		m.replicaFallbacks.Inc()
	}
}

// Published counts events the relay published.
func (m *Metrics) Published(n int) {
	if m != nil {
		m.outboxPublished.Add(float64(n))
	}
}

// ObserveReconcile records one reconciler pass.
func (m *Metrics) ObserveReconcile(settled, reclaimed int, err error) {
	if m == nil {
		return
	}
	m.reconcilerPasses.WithLabelValues(result(err)).Inc()
	m.reconcilerSettled.Add(float64(settled))
	m.reconcilerReclaimed.Add(float64(reclaimed))
}

// ObserveReplenish records one pass of the replenisher: the batches it
// topped up, the codes it generated into the store and loaded into the
// engine, and its error.
func (m *Metrics) ObserveReplenish(batches int, generated, loaded int64, err error) {
	if m == nil {
		return
	}
	if batches > 0 {
		m.replenishRuns.WithLabelValues("ok").Add(float64(batches))
	}
	if err != nil {
		m.replenishRuns.WithLabelValues("error").Inc()
	}
	m.generatedCodes.Add(float64(generated))
	m.replenishedCodes.Add(float64(loaded))
}

// ScrapeError counts a failure to read backend state for a scrape.
func (m *Metrics) ScrapeError(source string) {
	if m != nil {
		m.scrapeErrors.WithLabelValues(source).Inc()
	}
}

// Switch records a run-time switch's state.
func (m *Metrics) Switch(name string, on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.switches.WithLabelValues(name).Set(v)
}

// CounterFunc registers a counter whose value f reads at each scrape.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// GaugeFunc registers a gauge whose value f reads at each scrape.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

type factory struct{ m *Metrics }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.m.Register(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.m.Register(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.m.Register(g)
	return g
}
