package enginetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// at returns the instant n microseconds after a fixed origin, in UTC: the
// claim times of the pending tests. Engines may keep At to the microsecond
// only, as the store does.
func at(n int) time.Time {
	return time.UnixMicro(1_750_000_000_000_000 + int64(n)).UTC()
}

// later is after every at(n) the tests use.
var later = at(1 << 30)

// claimAt claims at the instant when and requires success without a replay.
func claimAt(t *testing.T, e engine.Engine, batchID, user, key, claimID string, when time.Time) engine.ClaimResult {
	t.Helper()
	r, err := e.Claim(t.Context(), engine.ClaimParams{BatchID: batchID, UserID: user, IdempotencyKey: key, ClaimID: claimID, At: when})
	require.NoError(t, err)
	require.False(t, r.Replayed)
	require.Equal(t, claimID, r.ClaimID)
	return r
}

// pendingAll lists every pending claim of the batch.
func pendingAll(t *testing.T, e engine.Engine, batchID string) []engine.PendingClaim {
	t.Helper()
	p, err := e.Pending(t.Context(), batchID, later, 1000)
	require.NoError(t, err)
	return p
}

// pendingOf is the PendingClaim of r, a claim made at when.
func pendingOf(batchID, user, key string, r engine.ClaimResult, when time.Time) engine.PendingClaim {
	return engine.PendingClaim{
		BatchID: batchID, ClaimID: r.ClaimID, UserID: user, IdempotencyKey: key,
		Code: r.Code, Amount: r.Amount, Seq: r.Seq, At: when,
	}
}

func reclaim(t *testing.T, e engine.Engine, p engine.PendingClaim) bool {
	t.Helper()
	ok, err := e.Reclaim(t.Context(), p)
	require.NoError(t, err)
	return ok
}

func testPendingAfterClaim(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 1, codes("A", 2))
	r1 := claimAt(t, e, id, "u1", "k1", "c1", at(10))
	r2 := claimAt(t, e, id, "u2", "", "c2", at(20))
	want := []engine.PendingClaim{pendingOf(id, "u1", "k1", r1, at(10)), pendingOf(id, "u2", "", r2, at(20))}
	require.Equal(t, []engine.PendingClaim{
		{BatchID: id, ClaimID: "c1", UserID: "u1", IdempotencyKey: "k1", Code: "A-1", Amount: 100, Seq: 1, At: at(10)},
		{BatchID: id, ClaimID: "c2", UserID: "u2", Code: "A-2", Amount: 200, Seq: 1, At: at(20)},
	}, want)
	require.Equal(t, want, pendingAll(t, e, id))

	// Replays and refusals record nothing.
	again, err := e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u1", IdempotencyKey: "k1", ClaimID: "c3", At: at(30)})
	require.NoError(t, err)
	require.True(t, again.Replayed)
	_, err = e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u1", ClaimID: "c4", At: at(40)})
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u3", ClaimID: "c5", At: at(50)})
	require.ErrorIs(t, err, engine.ErrSoldOut)
	require.NoError(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: false, PerUserLimit: 1}))
	_, err = e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u4", ClaimID: "c6", At: at(60)})
	require.ErrorIs(t, err, engine.ErrNotClaimable)
	require.Equal(t, want, pendingAll(t, e, id))
}

func testPendingGoneAfterSettle(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 5, codes("A", 4))
	r1 := claimAt(t, e, id, "u1", "k1", "c1", at(1))
	r2 := claimAt(t, e, id, "u1", "", "c2", at(2))
	r3 := claimAt(t, e, id, "u2", "k1", "c3", at(3))

	// Codes not pending, or not of the batch, are ignored.
	require.NoError(t, e.Settle(ctx, id, []string{r1.Code, r3.Code, "A-4", "Z-1"}))
	require.Equal(t, []engine.PendingClaim{pendingOf(id, "u1", "", r2, at(2))}, pendingAll(t, e, id))
	require.NoError(t, e.Settle(ctx, id, nil))
	require.NoError(t, e.Settle(ctx, id, []string{r1.Code}), "settling twice")
	require.NoError(t, e.Settle(ctx, id, []string{r2.Code}))
	require.Empty(t, pendingAll(t, e, id))

	// Settling changes nothing else.
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 3}, stats(t, e, id))
	again, err := claim(t, e, id, "u1", "k1", "c4")
	require.NoError(t, err)
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c1", Replayed: true}, again)
}

func testPendingGoneAfterUndo(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 5, codes("A", 5))
	r1 := claimAt(t, e, id, "u1", "k1", "c1", at(1))
	r2 := claimAt(t, e, id, "u2", "", "c2", at(2))
	r3 := claimAt(t, e, id, "u3", "k3", "c3", at(3))
	r4 := claimAt(t, e, id, "u4", "", "c4", at(4))

	undo(t, e, id, "u1", "k1", r1)
	require.NoError(t, e.Undo(ctx, engine.UndoParams{
		BatchID: id, UserID: "u2", Code: r2.Code, Amount: r2.Amount, Seq: r2.Seq, KeepCode: true,
	}))
	require.NoError(t, e.Undo(ctx, engine.UndoParams{
		BatchID: id, UserID: "u3", IdempotencyKey: "k3", Code: r3.Code, Amount: r3.Amount, Seq: r3.Seq, KeepSeq: true,
	}))
	require.Equal(t, []engine.PendingClaim{pendingOf(id, "u4", "", r4, at(4))}, pendingAll(t, e, id))

	// The code undone last is claimed again: pending once, for its new claim.
	r5 := claimAt(t, e, id, "u5", "", "c5", at(5))
	require.Equal(t, r3.Code, r5.Code)
	require.Equal(t, []engine.PendingClaim{
		pendingOf(id, "u4", "", r4, at(4)),
		pendingOf(id, "u5", "", r5, at(5)),
	}, pendingAll(t, e, id))
}

func testPendingOrderAndFilters(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 5, codes("A", 5))
	// Callers stamp At before the engine step, so claims may arrive out of
	// time order; Pending lists them oldest first all the same.
	r1 := claimAt(t, e, id, "u1", "", "c1", at(30))
	r2 := claimAt(t, e, id, "u2", "", "c2", at(10))
	r3 := claimAt(t, e, id, "u3", "k3", "c3", at(20))
	r4 := claimAt(t, e, id, "u4", "", "c4", at(40))
	p1, p2, p3, p4 := pendingOf(id, "u1", "", r1, at(30)), pendingOf(id, "u2", "", r2, at(10)),
		pendingOf(id, "u3", "k3", r3, at(20)), pendingOf(id, "u4", "", r4, at(40))

	list := func(before time.Time, limit int) []engine.PendingClaim {
		t.Helper()
		p, err := e.Pending(ctx, id, before, limit)
		require.NoError(t, err)
		return p
	}
	require.Equal(t, []engine.PendingClaim{p2, p3, p1, p4}, list(later, 10))
	require.Equal(t, []engine.PendingClaim{p2, p3, p1, p4}, list(later, 4))
	require.Equal(t, []engine.PendingClaim{p2, p3}, list(later, 2))
	require.Equal(t, []engine.PendingClaim{p2}, list(later, 1))
	// `before` is exclusive.
	require.Equal(t, []engine.PendingClaim{p2, p3}, list(at(30), 10))
	require.Equal(t, []engine.PendingClaim{p2, p3, p1}, list(at(31), 10))
	require.Equal(t, []engine.PendingClaim{p2, p3}, list(at(31), 2))
	require.Empty(t, list(at(10), 10))
	require.Empty(t, list(later, 0))

	require.NoError(t, e.Settle(ctx, id, []string{r3.Code}))
	require.Equal(t, []engine.PendingClaim{p2, p1}, list(at(35), 10))
}

func testReclaim(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 2, codes("A", 3))
	r1 := claimAt(t, e, id, "u1", "k1", "c1", at(1))
	r2 := claimAt(t, e, id, "u1", "", "c2", at(2))
	require.Equal(t, []int{1, 2}, []int{r1.Seq, r2.Seq})
	require.NoError(t, e.Settle(ctx, id, []string{r2.Code}))
	p := pendingAll(t, e, id)
	require.Equal(t, []engine.PendingClaim{pendingOf(id, "u1", "k1", r1, at(1))}, p)

	require.True(t, reclaim(t, e, p[0]))
	require.Empty(t, pendingAll(t, e, id))
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 1}, stats(t, e, id))

	// The key is forgotten, the number freed, and the code is at the head of
	// the pool: a retry with the key makes a fresh claim of the same code.
	r3 := claimAt(t, e, id, "u1", "k1", "c3", at(3))
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c3"}, r3)
	_, err := claim(t, e, id, "u1", "", "c4")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	// The first claim's code is pending again, but for c3: reclaiming the
	// first claim a second time changes nothing.
	require.False(t, reclaim(t, e, p[0]))
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 2}, stats(t, e, id))
	p3 := pendingOf(id, "u1", "k1", r3, at(3))
	require.Equal(t, []engine.PendingClaim{p3}, pendingAll(t, e, id))

	// Reclaiming twice: the second call changes nothing.
	require.True(t, reclaim(t, e, p3))
	require.False(t, reclaim(t, e, p3))
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 1}, stats(t, e, id))
	r4 := claimAt(t, e, id, "u2", "", "c5", at(5))
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c5"}, r4)
	require.Equal(t, "A-3", claimAt(t, e, id, "u3", "", "c6", at(6)).Code)
	_, err = claim(t, e, id, "u4", "", "c7")
	require.ErrorIs(t, err, engine.ErrSoldOut)
}

func testReclaimAfterSettle(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 1, codes("A", 2))
	r := claimAt(t, e, id, "u1", "k1", "c1", at(1))
	p := pendingAll(t, e, id)
	require.Len(t, p, 1)
	require.NoError(t, e.Settle(ctx, id, []string{r.Code}))

	require.False(t, reclaim(t, e, p[0]))
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 1}, stats(t, e, id))
	again, err := claim(t, e, id, "u1", "k1", "c2")
	require.NoError(t, err)
	require.True(t, again.Replayed, "the key is kept")
	_, err = claim(t, e, id, "u1", "", "c3")
	require.ErrorIs(t, err, engine.ErrLimitReached, "the number stays taken")
	require.Equal(t, "A-2", mustClaim(t, e, id, "u2", "", "c4").Code)
}

// testReclaimStale: a PendingClaim that does not describe the claim pending
// for its code (another claim, user, number…) reclaims nothing.
func testReclaimStale(t *testing.T, e engine.Engine) {
	id := load(t, e, 3, codes("A", 3))
	r := claimAt(t, e, id, "u1", "k1", "c1", at(1))
	p := pendingOf(id, "u1", "k1", r, at(1))
	for _, change := range []func(*engine.PendingClaim){
		func(p *engine.PendingClaim) { p.ClaimID = "c2" },
		func(p *engine.PendingClaim) { p.UserID = "u2" },
		func(p *engine.PendingClaim) { p.IdempotencyKey = "" },
		func(p *engine.PendingClaim) { p.Seq = 2 },
		func(p *engine.PendingClaim) { p.Amount = 1 },
		func(p *engine.PendingClaim) { p.Code = "A-2" },
		func(p *engine.PendingClaim) { p.Code = "Z-1" },
	} {
		stale := p
		change(&stale)
		require.False(t, reclaim(t, e, stale), "%+v", stale)
	}
	require.Equal(t, []engine.PendingClaim{p}, pendingAll(t, e, id))
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 1}, stats(t, e, id))

	// At is not compared: the code, claim, user, key, amount and number are.
	p.At = at(99)
	require.True(t, reclaim(t, e, p))
}

// testReclaimConcurrent: one pending claim reclaimed by 16 goroutines at once
// is reclaimed exactly once.
func testReclaimConcurrent(t *testing.T, e engine.Engine) {
	const (
		callers = 16
		rounds  = 10
	)
	id := load(t, e, 1, codes("A", 1))
	for round := range rounds {
		key := "k" + strconv.Itoa(round)
		r := claimAt(t, e, id, "u1", key, "c"+strconv.Itoa(round), at(round))
		require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 1}, stats(t, e, id))
		p := pendingOf(id, "u1", key, r, at(round))

		var wins atomic.Int32
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				<-start
				ok, err := e.Reclaim(t.Context(), p)
				errs[c] = err
				if ok {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		require.Equal(t, int32(1), wins.Load(), "round %d", round)
		require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 0}, stats(t, e, id), "round %d", round)
		require.Empty(t, pendingAll(t, e, id))
	}
}

// testRebuildDropsPending: a Rebuild's pool holds the codes of claims the
// store never committed, so the pending claims before it are dropped and
// cannot be reclaimed (which would put their codes in the pool twice).
func testRebuildDropsPending(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 2, codes("A", 3))
	claimAt(t, e, id, "u1", "k1", "c1", at(1))
	claimAt(t, e, id, "u2", "", "c2", at(2))
	p := pendingAll(t, e, id)
	require.Len(t, p, 2)

	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2},
		Pool:  codes("A", 3),
	}))
	require.Empty(t, pendingAll(t, e, id))
	for _, c := range p {
		require.False(t, reclaim(t, e, c))
	}
	require.Equal(t, engine.BatchStats{PoolDepth: 3, Claimed: 0}, stats(t, e, id))
}

// testStressReclaim: claimants that settle half of their claims and abandon
// the rest, while a reconciler reclaims every pending claim it finds, racing
// the settles. Every code ends up exactly once either in the pool or held.
func testStressReclaim(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	pool := codes("P", stressPool)
	id := load(t, e, stressLimit, pool)

	var successes atomic.Int64
	workerErrs := make([]error, stressWorkers)
	done := make(chan struct{})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range stressWorkers {
		wg.Go(func() {
			<-start
			for i := range stressAttempts {
				n := w*stressAttempts + i
				r, err := e.Claim(ctx, engine.ClaimParams{
					BatchID: id, UserID: "u" + strconv.Itoa(n%stressUsers), ClaimID: "c" + strconv.Itoa(n), At: time.Now(),
				})
				if errors.Is(err, engine.ErrSoldOut) || errors.Is(err, engine.ErrLimitReached) {
					continue
				}
				if err != nil {
					workerErrs[w] = fmt.Errorf("claim %d: %w", n, err)
					return
				}
				successes.Add(1)
				if n%2 == 0 {
					if err := e.Settle(ctx, id, []string{r.Code}); err != nil {
						workerErrs[w] = fmt.Errorf("settle %d: %w", n, err)
						return
					}
				}
			}
		})
	}

	var reclaimed int64
	reconcile := func() (int, error) {
		p, err := e.Pending(ctx, id, time.Now().Add(time.Hour), 50)
		if err != nil {
			return 0, err
		}
		for _, c := range p {
			ok, err := e.Reclaim(ctx, c)
			if err != nil {
				return 0, err
			}
			if ok {
				reclaimed++
			}
		}
		return len(p), nil
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	close(start)
	var reconcileErr error
loop:
	for {
		select {
		case <-done:
			break loop
		default:
			if _, err := reconcile(); err != nil {
				reconcileErr = err
				<-done
				break loop
			}
		}
	}
	require.NoError(t, reconcileErr)
	require.NoError(t, errors.Join(workerErrs...))
	for {
		n, err := reconcile()
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	require.Positive(t, reclaimed)

	held := successes.Load() - reclaimed
	s := stats(t, e, id)
	require.Equal(t, engine.BatchStats{PoolDepth: stressPool - held, Claimed: held}, s)

	// Drain the pool: its codes are distinct codes of the batch.
	seen := make(map[string]bool)
	amounts := make(map[string]int64)
	for _, c := range pool {
		amounts[c.Code] = c.Amount
	}
	for i := 0; ; i++ {
		r, err := claim(t, e, id, "drain"+strconv.Itoa(i), "", "d"+strconv.Itoa(i))
		if errors.Is(err, engine.ErrSoldOut) {
			break
		}
		require.NoError(t, err)
		require.False(t, seen[r.Code], "code %q twice in the pool", r.Code)
		seen[r.Code] = true
		require.Equal(t, amounts[r.Code], r.Amount)
	}
	require.Len(t, seen, int(s.PoolDepth))
}

// newLeaseName returns a lease name no other subtest, run or process uses.
func newLeaseName() string {
	return "lease-" + newBatchID()
}

func lock(t *testing.T, e engine.Engine, name string, ttl time.Duration) (string, bool) {
	t.Helper()
	token, ok, err := e.Lock(t.Context(), name, ttl)
	require.NoError(t, err)
	if ok {
		require.NotEmpty(t, token)
	}
	return token, ok
}

func extend(t *testing.T, e engine.Engine, name, token string, ttl time.Duration) bool {
	t.Helper()
	ok, err := e.Extend(t.Context(), name, token, ttl)
	require.NoError(t, err)
	return ok
}

func testLeaseExclusive(t *testing.T, e engine.Engine) {
	name, other := newLeaseName(), newLeaseName()
	tok, ok := lock(t, e, name, time.Minute)
	require.True(t, ok)
	_, ok = lock(t, e, name, time.Minute)
	require.False(t, ok, "held")
	_, ok = lock(t, e, other, time.Minute)
	require.True(t, ok, "another name is another lease")

	require.NoError(t, e.Unlock(t.Context(), name, tok))
	tok2, ok := lock(t, e, name, time.Minute)
	require.True(t, ok, "released")
	require.NotEqual(t, tok, tok2)
}

func testLeaseTokenHolder(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	name := newLeaseName()
	tok, ok := lock(t, e, name, time.Minute)
	require.True(t, ok)

	require.False(t, extend(t, e, name, "not-"+tok, time.Minute))
	require.NoError(t, e.Unlock(ctx, name, "not-"+tok))
	_, ok = lock(t, e, name, time.Minute)
	require.False(t, ok, "a wrong token releases nothing")
	require.False(t, extend(t, e, newLeaseName(), tok, time.Minute), "the token is of one lease")

	require.True(t, extend(t, e, name, tok, time.Minute))
	require.NoError(t, e.Unlock(ctx, name, tok))
	require.False(t, extend(t, e, name, tok, time.Minute), "released")
	require.NoError(t, e.Unlock(ctx, name, tok), "releasing twice")

	tok2, ok := lock(t, e, name, time.Minute)
	require.True(t, ok)
	require.NoError(t, e.Unlock(ctx, name, tok), "an old token releases nothing")
	require.False(t, extend(t, e, name, tok, time.Minute))
	_, ok = lock(t, e, name, time.Minute)
	require.False(t, ok)
	require.True(t, extend(t, e, name, tok2, time.Minute))
}

func testLeaseExpiry(t *testing.T, e engine.Engine) {
	const ttl = 200 * time.Millisecond

	t.Run("expires", func(t *testing.T) {
		t.Parallel()
		name := newLeaseName()
		start := time.Now()
		tok, ok := lock(t, e, name, ttl)
		require.True(t, ok)
		_, ok = lock(t, e, name, ttl)
		require.False(t, ok)

		var tok2 string
		require.Eventually(t, func() bool {
			tok2, ok = lock(t, e, name, time.Minute)
			return ok
		}, 10*time.Second, 10*time.Millisecond)
		require.GreaterOrEqual(t, time.Since(start), ttl/2, "taken long before the lease expired")

		// The first holder lost it: it can neither extend nor release it.
		require.False(t, extend(t, e, name, tok, time.Minute))
		require.NoError(t, e.Unlock(t.Context(), name, tok))
		_, ok = lock(t, e, name, time.Minute)
		require.False(t, ok)
		require.True(t, extend(t, e, name, tok2, time.Minute))
	})

	t.Run("extended", func(t *testing.T) {
		t.Parallel()
		name := newLeaseName()
		tok, ok := lock(t, e, name, ttl)
		require.True(t, ok)
		// Renewed well within its ttl, the lease outlives several ttls.
		deadline := time.Now().Add(3 * ttl)
		for time.Now().Before(deadline) {
			require.True(t, extend(t, e, name, tok, ttl))
			_, ok = lock(t, e, name, ttl)
			require.False(t, ok)
			time.Sleep(ttl / 8)
		}
		// Left alone, it expires.
		require.Eventually(t, func() bool {
			_, ok := lock(t, e, name, time.Minute)
			return ok
		}, 10*time.Second, 10*time.Millisecond)
	})
}

// testLeaseConcurrent: 32 goroutines taking one free lease at once: exactly
// one gets it.
func testLeaseConcurrent(t *testing.T, e engine.Engine) {
	const callers = 32
	for round := range 5 {
		name := newLeaseName()
		var wins atomic.Int32
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				<-start
				_, ok, err := e.Lock(t.Context(), name, time.Minute)
				errs[c] = err
				if ok {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		require.Equal(t, int32(1), wins.Load(), "round %d", round)
	}
}
