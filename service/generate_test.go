package service_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// cluster is several services over one SQLite store and one memory engine,
// as several instances are over PostgreSQL and Redis: they share the store,
// the engine's pools and its leases, whose clock the test turns.
type cluster struct {
	store  *sqlite.Store
	engine *memory.Engine
	leases *clock // the engine's clock, by which leases expire
	svcs   []*service.Service
}

func setupCluster(t *testing.T, n int, cfg func(i int, s *service.Service)) *cluster {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db"), Synchronous: "normal"})
	require.NoError(t, err)
	c := &cluster{store: st, engine: memory.New(), leases: &clock{t: time.Now()}}
	c.engine.Now = c.leases.Now
	for i := range n {
		// Claims may wait for chunks longer than by default: these tests
		// are about the answers, and a loaded machine is slow.
		s := service.New(service.Config{Store: st, Engine: c.engine, RefillWait: time.Minute})
		if cfg != nil {
			cfg(i, s)
		}
		c.svcs = append(c.svcs, s)
	}
	t.Cleanup(func() {
		for _, s := range c.svcs {
			s.Close()
		}
		_ = st.Close()
	})
	return c
}

// incrementalSpec is a batch generated in chunks whose amounts split a
// budget of 7 per code plus 3.
func incrementalSpec(total int64, limit, chunk, lowWater int) coupon.BatchSpec {
	s := spec(total, limit)
	s.Amount = coupon.AmountSpec{Type: coupon.AmountSplit, Budget: 7*total + 3, Min: 1}
	s.Generation = coupon.Generation{Mode: coupon.GenerationIncremental, Chunk: chunk, LowWater: lowWater}
	return s
}

// defaultMode leaves the generation mode to the default, with a chunk.
func defaultMode(s coupon.BatchSpec, chunk int) coupon.BatchSpec {
	s.Generation = coupon.Generation{Chunk: chunk}
	return s
}

func publishSpec(t *testing.T, svc *service.Service, s coupon.BatchSpec) *service.BatchView {
	t.Helper()
	ctx := context.Background()
	b, err := svc.CreateBatch(ctx, s)
	require.NoError(t, err)
	v, err := svc.Transition(ctx, b.ID, coupon.Publish)
	require.NoError(t, err)
	require.Equal(t, coupon.StatusActive, v.Status)
	return v
}

// claimN claims n codes of a batch, one per user, and requires every claim
// to succeed.
func claimN(t *testing.T, svc *service.Service, batchID string, n int, prefix string) []*coupon.Claim {
	t.Helper()
	out := make([]*coupon.Claim, n)
	for i := range out {
		c, _, err := svc.Claim(context.Background(), claimReq(batchID, fmt.Sprintf("%s-%d", prefix, i)))
		require.NoError(t, err, "claim %d", i)
		out[i] = c
	}
	return out
}

// requirePoolMatchesStore requires the engine's pool to hold exactly the
// store's unclaimed loaded codes: a code loaded twice would make it deeper,
// a range loaded and lost shallower. No claim may be in flight.
func requirePoolMatchesStore(t *testing.T, st *sqlite.Store, eng engine.Engine, batchID string) engine.BatchStats {
	t.Helper()
	ctx := context.Background()
	stats, err := eng.Stats(ctx, batchID)
	require.NoError(t, err)
	b, err := st.GetBatch(ctx, batchID)
	require.NoError(t, err)
	require.LessOrEqual(t, stats.LoadedSeq, b.GeneratedCount, "the engine loaded codes the store does not have")
	unclaimed, err := st.UnclaimedCodes(ctx, batchID, 0, stats.LoadedSeq)
	require.NoError(t, err)
	require.EqualValues(t, len(unclaimed), stats.PoolDepth, "engine pool against the store's unclaimed codes up to %d", stats.LoadedSeq)
	return stats
}

// requireExactBatch requires a batch generated whole: the total, the
// budget to the unit, every code claimed once.
func requireExactBatch(t *testing.T, st *sqlite.Store, batchID string, claims []*coupon.Claim) {
	t.Helper()
	b, err := st.GetBatch(context.Background(), batchID)
	require.NoError(t, err)
	require.Equal(t, b.TotalQuantity, b.GeneratedCount)
	require.Equal(t, b.Amount.Budget, b.GeneratedAmount, "generated amount against the budget")
	require.Len(t, claims, int(b.TotalQuantity))
	var sum int64
	seen := make(map[string]bool, len(claims))
	for _, c := range claims {
		require.False(t, seen[c.Code], "code %s claimed twice", c.Code)
		seen[c.Code] = true
		require.GreaterOrEqual(t, c.Amount, b.Amount.Min)
		sum += c.Amount
	}
	require.Equal(t, b.Amount.Budget, sum, "the claimed amounts sum to the budget")
	n, err := st.ClaimedCount(context.Background(), batchID)
	require.NoError(t, err)
	require.Equal(t, b.TotalQuantity, n)
}

func TestIncrementalPublishGeneratesAFirstChunk(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, tc := range []struct {
		name      string
		spec      coupon.BatchSpec
		generated int64
	}{
		{"one chunk above the low-water mark", incrementalSpec(10_000, 1, 500, 200), 500},
		{"enough to pass the low-water mark", incrementalSpec(10_000, 1, 300, 1000), 1001},
		{"a batch smaller than a chunk", incrementalSpec(100, 1, 500, 50), 100},
		{"full: every code", spec(2500, 1), 2500},
		{"incremental by default above 100,000", defaultMode(spec(100_001, 1), 500), 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := publishSpec(t, e.svc, tc.spec)
			require.Equal(t, tc.generated, v.GeneratedCount)
			require.Equal(t, tc.generated, v.PoolDepth)
			require.Equal(t, tc.generated, v.LoadedSeq)
			require.Equal(t, v.TotalQuantity, v.RemainingCount)
		})
	}
}

func TestReplenishTopsUpBelowLowWater(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	v := publishSpec(t, e.svc, incrementalSpec(1000, 1, 100, 30))
	require.EqualValues(t, 100, v.GeneratedCount)

	claimN(t, e.svc, v.ID, 60, "a")
	ids, err := e.svc.BatchesToReplenish(ctx)
	require.NoError(t, err)
	require.Empty(t, ids, "40 in the pool, low water 30")
	res, err := e.svc.Replenish(ctx, v.ID)
	require.NoError(t, err)
	require.Equal(t, service.ReplenishResult{}, res, "above the low-water mark: nothing to do")

	claimN(t, e.svc, v.ID, 15, "b")
	ids, err = e.svc.BatchesToReplenish(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{v.ID}, ids)
	res, err = e.svc.Replenish(ctx, v.ID)
	require.NoError(t, err)
	require.Equal(t, service.ReplenishResult{Generated: 100, Loaded: 100}, res)

	got, err := e.svc.GetBatch(ctx, v.ID)
	require.NoError(t, err)
	require.EqualValues(t, 200, got.GeneratedCount)
	require.EqualValues(t, 200, got.LoadedSeq)
	require.EqualValues(t, 125, got.PoolDepth)
	require.EqualValues(t, 75, got.ClaimedCount)
	require.EqualValues(t, 925, got.RemainingCount)
	ids, err = e.svc.BatchesToReplenish(ctx)
	require.NoError(t, err)
	require.Empty(t, ids)
	requirePoolMatchesStore(t, e.store, e.engine, v.ID)
}

// With no replenisher running, claims that find the pool empty generate
// the next chunk themselves: none is told sold out until the last code is
// claimed, and the split budget is exact. 3,000 claims at once wait for 15
// chunks written one after the other; the wait a claim allows is raised
// from its default, which a loaded machine under the race detector can
// pass, since this test is about the answers, not the latency.
func TestClaimsNeverSoldOutWhileCodesRemain(t *testing.T) {
	t.Parallel()
	e := setupTuned(t, func(c *service.Config) { c.RefillWait = time.Minute })
	const total = 3000
	v := publishSpec(t, e.svc, incrementalSpec(total, 10, 200, 10))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		claims []*coupon.Claim
		start  = make(chan struct{})
	)
	for i := range total {
		wg.Go(func() {
			<-start
			c, _, err := e.svc.Claim(context.Background(), claimReq(v.ID, fmt.Sprintf("u%d", i%(total/10))))
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
				return
			}
			mu.Lock()
			claims = append(claims, c)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	requireExactBatch(t, e.store, v.ID, claims)
	_, _, err := e.svc.Claim(context.Background(), claimReq(v.ID, "late"))
	require.Equal(t, coupon.CodeSoldOut, coupon.ErrorCode(err), "%v", err)
	stats := requirePoolMatchesStore(t, e.store, e.engine, v.ID)
	require.EqualValues(t, total, stats.LoadedSeq)
}

// Two replenishers race on one batch. The first draws a chunk and is paused
// before writing it, past its lease's expiry; the second takes the lease,
// writes and loads its chunk; then the first wakes and tries to write what
// it drew. The store refuses it (the count moved), so the total, the split
// budget and the pool stay exact.
func TestRacingReplenishersKeepTheTotal(t *testing.T) {
	t.Parallel()
	var (
		armed   atomic.Bool
		paused  = make(chan int64, 1)
		release = make(chan struct{})
	)
	c := setupCluster(t, 2, func(i int, s *service.Service) {
		if i == 0 {
			service.SetBeforeWrite(s, func(_ string, from int64, _ []coupon.Code) {
				if armed.CompareAndSwap(true, false) {
					paused <- from
					<-release
				}
			})
		}
	})
	a, b := c.svcs[0], c.svcs[1]
	ctx := context.Background()
	const total = 1000
	v := publishSpec(t, a, incrementalSpec(total, 1, 100, 50))
	claims := claimN(t, a, v.ID, 60, "first") // 40 left: below the mark

	armed.Store(true)
	type outcome struct {
		res service.ReplenishResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.Replenish(ctx, v.ID)
		done <- outcome{res, err}
	}()
	require.EqualValues(t, 100, <-paused, "the first replenisher drew the chunk after code 100")

	res, err := b.Replenish(ctx, v.ID)
	require.NoError(t, err)
	require.True(t, res.Busy, "the lease is the first replenisher's")

	c.leases.Advance(time.Minute) // the lease expires under the paused process
	res, err = b.Replenish(ctx, v.ID)
	require.NoError(t, err)
	require.Equal(t, service.ReplenishResult{Generated: 100, Loaded: 100}, res)

	close(release)
	out := <-done
	require.NoError(t, out.err)
	require.Equal(t, service.ReplenishResult{}, out.res, "the paused replenisher wrote and loaded nothing")

	got, err := c.store.GetBatch(ctx, v.ID)
	require.NoError(t, err)
	require.EqualValues(t, 200, got.GeneratedCount)
	stats := requirePoolMatchesStore(t, c.store, c.engine, v.ID)
	require.EqualValues(t, 140, stats.PoolDepth)
	require.EqualValues(t, 200, stats.LoadedSeq)

	// Both instances claim the rest; their claims generate what is missing.
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for i := range total - 60 {
		wg.Go(func() {
			cl, _, err := c.svcs[i%2].Claim(ctx, claimReq(v.ID, fmt.Sprintf("rest-%d", i)))
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
				return
			}
			mu.Lock()
			claims = append(claims, cl)
			mu.Unlock()
		})
	}
	wg.Wait()
	requireExactBatch(t, c.store, v.ID, claims)
	requirePoolMatchesStore(t, c.store, c.engine, v.ID)
}

// A process died between the store's insert of a chunk and the engine's
// load (simulated by writing the chunk with the store alone). The next
// replenish — here sixteen of them at once, from two instances — loads the
// stranded range exactly once; so does a claim that finds the pool empty.
func TestStrandedChunkIsLoadedOnce(t *testing.T) {
	t.Parallel()
	c := setupCluster(t, 2, nil)
	ctx := context.Background()
	v := publishSpec(t, c.svcs[0], incrementalSpec(1000, 1, 100, 50))

	strand := func(from int64, n int) []coupon.Code {
		t.Helper()
		in := make([]coupon.Code, n)
		b, err := c.store.GetBatch(ctx, v.ID)
		require.NoError(t, err)
		amounts := coupon.NewAmounts(b.Amount, b.TotalQuantity, b.GeneratedCount, b.GeneratedAmount)
		for i := range in {
			in[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{}), Amount: amounts.Next()}
		}
		out, err := c.store.ContinueCodes(ctx, store.ContinueCodes{BatchID: v.ID, From: from, Version: b.Version, Codes: in})
		require.NoError(t, err)
		require.Len(t, out, n)
		return out
	}
	strand(100, 80)
	stats, err := c.engine.Stats(ctx, v.ID)
	require.NoError(t, err)
	require.EqualValues(t, 100, stats.LoadedSeq, "the engine never heard of the chunk")

	var (
		wg     sync.WaitGroup
		loaded atomic.Int64
	)
	for i := range 16 {
		wg.Go(func() {
			res, err := c.svcs[i%2].Replenish(ctx, v.ID)
			if err != nil {
				t.Error(err)
			}
			loaded.Add(res.Loaded)
		})
	}
	wg.Wait()
	require.EqualValues(t, 80, loaded.Load(), "the stranded range, loaded once")
	stats = requirePoolMatchesStore(t, c.store, c.engine, v.ID)
	require.EqualValues(t, 180, stats.PoolDepth)
	require.EqualValues(t, 180, stats.LoadedSeq)

	// Empty the pool, strand another chunk: a claim loads it (and, the pool
	// being below the low-water mark, a chunk more) and gets a code.
	claims := claimN(t, c.svcs[1], v.ID, 180, "drain")
	stranded := strand(180, 30)
	cl, _, err := c.svcs[0].Claim(ctx, claimReq(v.ID, "after-the-crash"))
	require.NoError(t, err)
	require.Equal(t, stranded[0].Code, cl.Code, "the stranded chunk is next in the pool")
	claims = append(claims, cl)
	stats = requirePoolMatchesStore(t, c.store, c.engine, v.ID)
	require.EqualValues(t, 310, stats.LoadedSeq)
	require.EqualValues(t, 129, stats.PoolDepth)

	// And the batch still ends exact.
	claims = append(claims, claimN(t, c.svcs[0], v.ID, 1000-len(claims), "rest")...)
	requireExactBatch(t, c.store, v.ID, claims)
}
