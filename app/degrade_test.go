package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/store"
)

// The rows of the degradation table in docs/operations.md, one test each
// (the order system's row is guard's TestOrderSystemDown: there is no order
// system client yet).

// bootWith starts a coupond like boot, after set has adjusted its
// configuration and hook its test hooks (either may be nil).
func bootWith(t *testing.T, set func(*config.Config), hook func(*app.App)) *app.App {
	t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "test-token", ShutdownTimeout: 20 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	if set != nil {
		set(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("COUPOND_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a := app.New(cfg, log, io.Discard)
	if hook != nil {
		hook(a)
	}
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func (c *client) claim(batchID, user string) response {
	c.t.Helper()
	return c.do("POST", "/v1/batches/"+batchID+"/claims", map[string]any{"user_id": user})
}

// checkCounts verifies that every code is claimed or back in the pool.
func checkCounts(t *testing.T, c *client, batchID string, total int) {
	t.Helper()
	b := c.must(200, "GET", "/v1/batches/"+batchID, nil)
	if b["claimed_count"].(float64)+b["pool_depth"].(float64) != float64(total) {
		t.Fatalf("claimed %v + pool %v != total %d: a code is stranded", b["claimed_count"], b["pool_depth"], total)
	}
}

// Engine down: claims answer 503 `unavailable` with Retry-After at once
// (the breaker opens), queries are still served from the store, /readyz is
// degraded; when the engine is back (empty) claims go on.
func TestDegradeEngineDown(t *testing.T) {
	t.Parallel()
	redis := backendtest.RedisServer(t)
	a := bootWith(t, func(cfg *config.Config) {
		cfg.Redis.URL = "redis://" + redis.Addr() + "/0"
		cfg.Ops.BreakerFailures = 3
		cfg.Ops.BreakerCooldown = 300 * time.Millisecond
	}, nil)
	c := newClient(t, a)
	id := c.publishedBatch(100, 1)
	first := c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "before"})

	redis.Stop()
	for i := range 10 {
		start := time.Now()
		r := c.claim(id, fmt.Sprint("down", i))
		if r.status != 503 || r.body["code"] != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("claim with the engine down: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("a claim took %v with the engine down: it must fail fast", d)
		}
	}
	metrics := c.metrics()
	if !strings.Contains(metrics, `coupond_breaker_state{breaker="engine"} 2`) {
		t.Fatalf("the engine's breaker is not open:\n%s", grep(metrics, "breaker"))
	}
	if !strings.Contains(metrics, `coupond_claims_total{code="unavailable"} 10`) {
		t.Fatalf("claims by outcome:\n%s", grep(metrics, "coupond_claims_total"))
	}
	// Queries come from the store.
	c.must(200, "GET", "/v1/batches/"+id, nil)
	c.must(200, "GET", "/v1/claims/"+first["id"].(string), nil)
	c.must(200, "GET", "/v1/users/before/claims", nil)
	c.must(200, "GET", "/v1/codes/"+first["code"].(string), nil)
	c.must(200, "GET", "/v1/batches", nil)
	// Batch changes are made in the store; the engine learns them when it
	// is back (a batch it does not hold is rebuilt from the store).
	draft := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "during", "total_quantity": 5, "validity": map[string]any{"days": 1}, "amount": map[string]any{"type": "fixed", "value": 1},
	})["id"].(string)
	if p := c.must(200, "POST", "/v1/batches/"+draft+"/publish", nil); p["status"] != "active" {
		t.Fatalf("publish with the engine down: %v", p)
	}
	ready := c.must(200, "GET", "/readyz", nil)
	if ready["status"] != "degraded" || !failed(ready, "engine") {
		t.Fatalf("/readyz with the engine down: %v", ready)
	}
	c.must(503, "GET", "/readyz?strict=true", nil)

	redis.Start() // empty: the batch is rebuilt from the store on the next claim
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := c.claim(id, "after")
		if r.status == 201 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("claim after the engine came back: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.must(409, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "before"}) // its claim survived: limit reached
	checkCounts(t, c, id, 100)
	c.must(201, "POST", "/v1/batches/"+draft+"/claims", map[string]any{"user_id": "after"}) // published while the engine was down
	checkCounts(t, c, draft, 5)
}

// Store slow: each store call is bounded by COUPOND_STORE_TIMEOUT, so a
// store that stops answering turns claims and queries into quick 503s, not
// hung requests; the engine step of a claim that could not commit is undone.
func TestDegradeStoreSlow(t *testing.T) {
	t.Parallel()
	pg := backendtest.PostgresSchema(t)
	a := bootWith(t, func(cfg *config.Config) {
		cfg.Postgres.URL = pg
		cfg.Ops.StoreTimeout = 300 * time.Millisecond
	}, nil)
	c := newClient(t, a)
	id := c.publishedBatch(50, 1)
	claimed := c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "before"})

	// Another session locks the claims table: every read and write of
	// claims waits on it, as on a store that has stopped answering.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE claims IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := c.claim(id, fmt.Sprint("slow", i))
			if r.status != 503 || r.body["code"] != "unavailable" {
				t.Errorf("claim on a slow store: %d %s", r.status, r.raw)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("a claim hung for %v on a slow store", d)
			}
		}()
	}
	for _, path := range []string{"/v1/claims/" + claimed["id"].(string), "/v1/users/before/claims", "/v1/batches/" + id} {
		start := time.Now()
		r := c.do("GET", path, nil)
		if r.status != 503 || r.body["code"] != "unavailable" || time.Since(start) > 5*time.Second {
			t.Errorf("GET %s on a slow store: %d in %v: %s", path, r.status, time.Since(start), r.raw)
		}
	}
	wg.Wait()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "after"})
	checkCounts(t, c, id, 50)
	if m := c.metrics(); !strings.Contains(m, `coupond_backend_errors_total{backend="store",op="insert_claims"}`) {
		t.Fatalf("no store errors counted:\n%s", grep(m, "backend_errors"))
	}
}

// Replica down: the lists that read the replica fall back to the primary.
func TestDegradeReplicaDown(t *testing.T) {
	t.Parallel()
	pg := backendtest.PostgresSchema(t)
	u, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	a := bootWith(t, func(cfg *config.Config) {
		cfg.Postgres.URL = pg
		cfg.Postgres.ReplicaURL = u.String()
		cfg.Ops.BreakerFailures = 2
		cfg.Ops.BreakerCooldown = time.Minute
	}, nil)
	c := newClient(t, a)
	id := c.publishedBatch(20, 5)
	for range 3 {
		c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "reader"})
	}
	c.must(200, "GET", "/v1/users/reader/claims", nil)

	proxy.stop() // the replica goes away, its open connections with it
	for range 5 {
		start := time.Now()
		page := c.must(200, "GET", "/v1/users/reader/claims", nil)
		if n := len(page["items"].([]any)); n != 3 {
			t.Fatalf("%d claims listed from the primary, want 3", n)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a list took %v with the replica down", d)
		}
		batches := c.must(200, "GET", "/v1/batches?status=active", nil)
		if len(batches["items"].([]any)) != 1 {
			t.Fatalf("batches listed from the primary: %v", batches)
		}
	}
	m := c.metrics()
	if !strings.Contains(m, `coupond_breaker_state{breaker="replica"} 2`) || strings.Contains(m, "coupond_replica_fallbacks_total 0") {
		t.Fatalf("replica metrics:\n%s", grep(m, "replica"))
	}
}

// NATS down: claims succeed; the outbox keeps their events and the relay
// publishes them when NATS is back; /readyz is degraded meanwhile.
func TestDegradeNATSDown(t *testing.T) {
	t.Parallel()
	nats := backendtest.NATSServer(t)
	a := bootWith(t, func(cfg *config.Config) {
		cfg.NATS.URL = "nats://" + nats.Addr()
		cfg.NATS.Stream, cfg.NATS.SubjectPrefix = backendtest.Name("S"), backendtest.Name("s")+"."
	}, nil)
	c := newClient(t, a)
	id := c.publishedBatch(30, 1)

	nats.Stop()
	for i := range 20 {
		c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("u", i)})
	}
	var m string
	waitFor(t, "the outbox lag to show", func() bool {
		m = c.metrics()
		return metricValue(m, "coupond_outbox_pending_events") >= 20 && metricValue(m, "coupond_outbox_oldest_pending_age_seconds") > 0
	})
	ready := c.must(200, "GET", "/readyz", nil)
	if ready["status"] != "degraded" || !failed(ready, "bus") {
		t.Fatalf("/readyz with NATS down: %v", ready)
	}

	nats.Start()
	waitFor(t, "the events to be published", func() bool {
		pending, err := a.Store.PendingEvents(context.Background(), 10)
		return err == nil && len(pending) == 0
	})
	if r := c.must(200, "GET", "/readyz", nil); r["status"] != "ready" {
		t.Fatalf("/readyz with NATS back: %v", r)
	}
}

// Beyond the in-flight bound, claims are answered 503 `overloaded` with
// Retry-After at once instead of queueing; nothing changes for them.
func TestClaimsBeyondTheInFlightBoundAreShed(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	a := bootWith(t, func(cfg *config.Config) { cfg.Ops.MaxInflightClaims = 2 }, func(a *app.App) {
		a.WrapStore = func(s store.Store) store.Store { return &slowStore{Store: s, slow: &slow} }
	})
	c := newClient(t, a)
	id := c.publishedBatch(100, 1)
	slow.Store(true)
	var (
		wg               sync.WaitGroup
		created, shed    atomic.Int64
		retryAfterMissed atomic.Bool
	)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := c.claim(id, fmt.Sprint("u", i))
			switch {
			case r.status == 201:
				created.Add(1)
			case r.status == 503 && r.body["code"] == "overloaded":
				shed.Add(1)
				if r.header.Get("Retry-After") != "1" {
					retryAfterMissed.Store(true)
				}
				if d := time.Since(start); d > 200*time.Millisecond {
					t.Errorf("a shed claim waited %v", d)
				}
			default:
				t.Errorf("claim: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	slow.Store(false)
	if shed.Load() == 0 || created.Load() == 0 || retryAfterMissed.Load() {
		t.Fatalf("created %d, shed %d (Retry-After missing: %v)", created.Load(), shed.Load(), retryAfterMissed.Load())
	}
	checkCounts(t, c, id, 100)
	b := c.must(200, "GET", "/v1/batches/"+id, nil)
	if b["claimed_count"].(float64) != float64(created.Load()) {
		t.Fatalf("claimed %v, acknowledged %d", b["claimed_count"], created.Load())
	}
	if m := c.metrics(); !strings.Contains(m, fmt.Sprintf(`coupond_claims_total{code="overloaded"} %d`, shed.Load())) {
		t.Fatalf("shed claims not counted:\n%s", grep(m, "coupond_claims_total"))
	}
}

// slowStore makes each group commit take a while.
type slowStore struct {
	store.Store
	slow *atomic.Bool
}

func (s *slowStore) InsertClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	if s.slow.Load() {
		time.Sleep(400 * time.Millisecond)
	}
	return s.Store.InsertClaims(ctx, writes)
}

// On shutdown, /readyz answers 503 for the drain delay before the listener
// closes, so that load balancers stop sending requests first.
func TestReadyzDuringShutdown(t *testing.T) {
	t.Parallel()
	a := bootWith(t, func(cfg *config.Config) { cfg.Ops.DrainDelay = time.Second }, nil)
	c := newClient(t, a)
	r := c.must(200, "GET", "/readyz", nil)
	if r["status"] != "ready" {
		t.Fatalf("/readyz: %v", r)
	}
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	waitFor(t, "/readyz to answer 503", func() bool {
		r := c.do("GET", "/readyz", nil)
		return r.status == 503 && r.body["status"] == "not_ready" && failed(r.body, "shutdown")
	})
	<-closed
}

func (c *client) metrics() string {
	c.t.Helper()
	r := c.do("GET", "/metrics", nil)
	if r.status != 200 {
		c.t.Fatalf("/metrics: %d", r.status)
	}
	return string(r.raw)
}

// metricValue is the value of an unlabelled metric, or -1.
func metricValue(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

func failed(ready map[string]any, check string) bool {
	for _, c := range ready["checks"].([]any) {
		c := c.(map[string]any)
		if c["name"] == check {
			return c["ok"] == false
		}
	}
	return false
}

func grep(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpProxy forwards connections to a backend until stopped; stopping it
// also cuts the connections it forwards, as a dead host would.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	done   bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	t.Cleanup(p.stop)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.done {
				p.mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}
