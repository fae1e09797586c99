package guard_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/telemetry"
)

// clock is a settable clock for the breakers.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var errDown = errors.New("connection refused")

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(0, 0)}
	b := guard.NewBreaker(guard.BreakerConfig{Name: "x", Failures: 3, Cooldown: time.Second, Now: clk.Now})
	ctx := context.Background()
	fail := func(context.Context) error { return errDown }
	ok := func(context.Context) error { return nil }

	require.ErrorIs(t, b.Do(ctx, fail), errDown)
	require.ErrorIs(t, b.Do(ctx, fail), errDown)
	require.NoError(t, b.Do(ctx, ok), "a success resets the count")
	for range 3 {
		require.ErrorIs(t, b.Do(ctx, fail), errDown)
	}
	require.Equal(t, guard.Open, b.State())
	calls := 0
	err := b.Do(ctx, func(context.Context) error { calls++; return nil })
	require.ErrorIs(t, err, guard.ErrOpen)
	require.Equal(t, coupon.CodeUnavailable, coupon.ErrorCode(err), "the API answers 503")
	require.Zero(t, calls, "an open breaker does not call")

	clk.add(time.Second)
	require.Equal(t, guard.HalfOpen, b.State())
	require.NoError(t, b.Allow(), "one probe")
	require.ErrorIs(t, b.Allow(), guard.ErrOpen, "only one probe at a time")
	b.Record(true)
	require.Equal(t, guard.Open, b.State(), "a failed probe opens it again")

	clk.add(time.Second)
	require.NoError(t, b.Do(ctx, ok))
	require.Equal(t, guard.Closed, b.State(), "a good probe closes it")
}

// Domain answers and callers that give up say nothing about the backend.
func TestBreakerIgnoresAnswersAndCancellations(t *testing.T) {
	t.Parallel()
	b := guard.NewBreaker(guard.BreakerConfig{Name: "x", Failures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range []error{coupon.ErrSoldOut, coupon.ErrNotFound, coupon.ErrLimitReached} {
		require.ErrorIs(t, b.Do(context.Background(), func(context.Context) error { return err }), err)
	}
	_ = b.Do(ctx, func(ctx context.Context) error { return ctx.Err() })
	require.Equal(t, guard.Closed, b.State())
	require.True(t, guard.Failed(context.Background(), context.DeadlineExceeded), "a timeout is a failure")
	require.False(t, guard.Failed(context.Background(), engine.ErrUnknownBatch, engine.ErrUnknownBatch))
}

func TestBreakerUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := guard.NewBreaker(guard.BreakerConfig{Name: "x", Failures: 10, Cooldown: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 2000 {
				_ = b.Do(context.Background(), func(context.Context) error {
					if (i+j)%3 == 0 {
						return errDown
					}
					return nil
				})
				_ = b.State()
			}
		}()
	}
	wg.Wait()
}

// flaky is an engine whose calls fail while down.
type flaky struct {
	engine.Engine
	down  atomic.Bool
	slow  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) Claim(ctx context.Context, p engine.ClaimParams) (engine.ClaimResult, error) {
	f.calls.Add(1)
	if f.slow.Load() {
		<-ctx.Done()
		return engine.ClaimResult{}, ctx.Err()
	}
	if f.down.Load() {
		return engine.ClaimResult{}, errDown
	}
	return f.Engine.Claim(ctx, p)
}

func loaded(t *testing.T, codes int) engine.Engine {
	t.Helper()
	e := memory.New()
	pool := make([]engine.PoolCode, codes)
	for i := range pool {
		pool[i] = engine.PoolCode{Code: string(rune('A' + i)), Amount: 1}
	}
	require.NoError(t, e.Rebuild(context.Background(), engine.Snapshot{
		Batch: engine.BatchState{BatchID: "b", Active: true, PerUserLimit: 100}, Pool: pool,
	}))
	return e
}

func TestEngineGuardFailsFastWhileTheEngineIsDown(t *testing.T) {
	t.Parallel()
	f := &flaky{Engine: loaded(t, 20)}
	m := telemetry.NewMetrics("test")
	clk := &clock{now: time.Unix(0, 0)}
	g := guard.NewEngine(f, guard.EngineConfig{
		Timeout: time.Second, Metrics: m,
		Breaker: guard.NewBreaker(guard.BreakerConfig{Name: "engine", Failures: 3, Cooldown: time.Second, Metrics: m, Now: clk.Now}),
	})
	ctx := context.Background()
	claim := func(i int) error {
		_, err := g.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: "u", ClaimID: string(rune('a' + i)), At: time.Now()})
		return err
	}
	require.NoError(t, claim(0))
	f.down.Store(true)
	for i := range 3 {
		require.ErrorIs(t, claim(i), errDown)
	}
	before := f.calls.Load()
	err := claim(9)
	require.ErrorIs(t, err, guard.ErrOpen)
	require.Equal(t, before, f.calls.Load(), "the engine was not called")

	f.down.Store(false)
	clk.add(time.Second)
	require.NoError(t, claim(10), "the probe goes through and closes the breaker")
	require.NoError(t, claim(11))
	_, err = g.Stats(ctx, "nope")
	require.ErrorIs(t, err, engine.ErrUnknownBatch, "an unknown batch is an answer, not a failure")

	// An engine that comes back empty answers the probe with "batch not
	// loaded": an answer, which closes the breaker.
	f.down.Store(true)
	for i := range 3 {
		require.ErrorIs(t, claim(20+i), errDown)
	}
	f.down.Store(false)
	clk.add(time.Second)
	_, err = g.Claim(ctx, engine.ClaimParams{BatchID: "unloaded", UserID: "u", ClaimID: "x", At: time.Now()})
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	_, err = g.Stats(ctx, "b")
	require.NoError(t, err, "the breaker closed on the answer")
}

func TestEngineGuardTimesOut(t *testing.T) {
	t.Parallel()
	f := &flaky{Engine: loaded(t, 2)}
	f.slow.Store(true)
	g := guard.NewEngine(f, guard.EngineConfig{Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := g.Claim(context.Background(), engine.ClaimParams{BatchID: "b", UserID: "u", ClaimID: "c", At: time.Now()})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
}

// replicated is a store with a replica that can go down.
type replicated struct {
	store.Store
	replicaDown atomic.Bool
	replicaHits atomic.Int64
	primaryHits atomic.Int64
}

func (r *replicated) HasReplica() bool { return true }

func (r *replicated) ListUserClaims(context.Context, store.UserClaimFilter) ([]*coupon.Claim, error) {
	r.replicaHits.Add(1)
	if r.replicaDown.Load() {
		return nil, errDown
	}
	return []*coupon.Claim{{ID: "from-replica"}}, nil
}

func (r *replicated) ListUserClaimsPrimary(context.Context, store.UserClaimFilter) ([]*coupon.Claim, error) {
	r.primaryHits.Add(1)
	return []*coupon.Claim{{ID: "from-primary"}}, nil
}

func (r *replicated) ListBatches(context.Context, store.BatchFilter) ([]*coupon.Batch, error) {
	r.replicaHits.Add(1)
	if r.replicaDown.Load() {
		return nil, errDown
	}
	return []*coupon.Batch{{ID: "from-replica"}}, nil
}

func (r *replicated) ListBatchesPrimary(context.Context, store.BatchFilter) ([]*coupon.Batch, error) {
	r.primaryHits.Add(1)
	return []*coupon.Batch{{ID: "from-primary"}}, nil
}

func TestStoreGuardFallsBackToThePrimary(t *testing.T) {
	t.Parallel()
	r := &replicated{}
	m := telemetry.NewMetrics("test")
	clk := &clock{now: time.Unix(0, 0)}
	g := guard.NewStore(r, guard.StoreConfig{
		Timeout: time.Second, Metrics: m,
		ReplicaBreaker: guard.NewBreaker(guard.BreakerConfig{Name: "replica", Failures: 2, Cooldown: time.Second, Now: clk.Now}),
	})
	ctx := context.Background()
	cs, err := g.ListUserClaims(ctx, store.UserClaimFilter{UserID: "u"})
	require.NoError(t, err)
	require.Equal(t, "from-replica", cs[0].ID)

	r.replicaDown.Store(true)
	for range 2 {
		cs, err = g.ListUserClaims(ctx, store.UserClaimFilter{UserID: "u"})
		require.NoError(t, err)
		require.Equal(t, "from-primary", cs[0].ID)
	}
	hits := r.replicaHits.Load()
	bs, err := g.ListBatches(ctx, store.BatchFilter{})
	require.NoError(t, err)
	require.Equal(t, "from-primary", bs[0].ID)
	require.Equal(t, hits, r.replicaHits.Load(), "with the breaker open the replica is not tried")

	r.replicaDown.Store(false)
	clk.add(time.Second)
	bs, err = g.ListBatches(ctx, store.BatchFilter{})
	require.NoError(t, err)
	require.Equal(t, "from-replica", bs[0].ID, "after the cooldown the replica serves again")
}

// The order system does not exist yet; its client will run every request
// through guard.External. This is the "order system down" row of the
// degradation table: while it is down, calls fail at once with 503
// `unavailable` instead of each waiting for a timeout, and they go through
// again once it is back.
func TestOrderSystemDown(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var served atomic.Int64
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if down.Load() {
			time.Sleep(300 * time.Millisecond) // hangs past the client's timeout
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer orders.Close()
	clk := &clock{now: time.Unix(0, 0)}
	m := telemetry.NewMetrics("test")
	x := guard.NewExternal(guard.ExternalConfig{Name: "order_system", Timeout: 100 * time.Millisecond, Failures: 3, Cooldown: 5 * time.Second, Metrics: m, Now: clk.Now}, "confirm")
	confirm := func() error {
		return x.Do(context.Background(), "confirm", func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, orders.URL+"/orders/o1/coupons", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
	}
	require.NoError(t, confirm())

	down.Store(true)
	for range 3 {
		start := time.Now()
		require.ErrorIs(t, confirm(), context.DeadlineExceeded)
		require.Less(t, time.Since(start), time.Second, "bounded by the timeout")
	}
	before := served.Load()
	start := time.Now()
	err := confirm()
	require.ErrorIs(t, err, guard.ErrOpen)
	require.Equal(t, coupon.CodeUnavailable, coupon.ErrorCode(err))
	require.Less(t, time.Since(start), 10*time.Millisecond, "fails at once")
	require.Equal(t, before, served.Load(), "the order system is spared while it is down")

	down.Store(false)
	clk.add(5 * time.Second)
	require.NoError(t, confirm())
	require.Equal(t, guard.Closed, x.Breaker().State())
}

func TestSwitches(t *testing.T) {
	t.Parallel()
	sw, err := guard.NewSwitches(nil, "stats", " tagging ")
	require.NoError(t, err)
	require.False(t, sw.Get(guard.SwitchStats).On())
	require.False(t, sw.Get(guard.SwitchTagging).On())
	require.True(t, sw.Get(guard.SwitchBatchMetrics).On())
	sw.Get(guard.SwitchBatchMetrics).Set(false)
	require.False(t, sw.Get(guard.SwitchBatchMetrics).On())
	require.Nil(t, sw.Get("nope"))
	require.False(t, sw.Get("nope").On(), "a missing switch is off")
	_, err = guard.NewSwitches(nil, "nope")
	require.ErrorContains(t, err, "unknown switch")
	require.Len(t, sw.All(), 5)
}
