// Package enginetest is the conformance suite of engine.Engine. Every
// implementation's tests call Run; a change of the engine's behaviour extends
// this suite first.
package enginetest

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
)

// Run runs the suite against engines made by newEngine. It tests only through
// the interface and gives every subtest its own batch IDs and lease names,
// so newEngine may return one shared engine (such as a client of one Redis)
// to all of them.
// Run never calls Close: newEngine registers any cleanup with t.Cleanup.
func Run(t *testing.T, newEngine func(t *testing.T) engine.Engine) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, e engine.Engine)
	}{
		{"UnknownBatch", testUnknownBatch},
		{"NotClaimable", testNotClaimable},
		{"Replay", testReplay},
		{"ReplayWinsOverLimit", testReplayWinsOverLimit},
		{"ReplayWinsOverSoldOut", testReplayWinsOverSoldOut},
		{"LimitBeforeSoldOut", testLimitBeforeSoldOut},
		{"PoolIsFIFO", testPoolIsFIFO},
		{"SmallestFreeSeq", testSmallestFreeSeq},
		{"UndoReturnsCode", testUndoReturnsCode},
		{"UndoKeepCode", testUndoKeepCode},
		{"UndoKeepSeq", testUndoKeepSeq},
		{"UndoForgetsKey", testUndoForgetsKey},
		{"RebuildReplacesState", testRebuildReplacesState},
		{"RebuildCreatesBatch", testRebuildCreatesBatch},
		{"SetBatchPauseResume", testSetBatchPauseResume},
		{"SetBatchLimit", testSetBatchLimit},
		{"AddCodes", testAddCodes},
		{"AddCodesStale", testAddCodesStale},
		{"AddCodesConcurrent", testAddCodesConcurrent},
		{"Stats", testStats},
		{"PendingAfterClaim", testPendingAfterClaim},
		{"PendingGoneAfterSettle", testPendingGoneAfterSettle},
		{"PendingGoneAfterUndo", testPendingGoneAfterUndo},
		{"PendingOrderAndFilters", testPendingOrderAndFilters},
		{"Reclaim", testReclaim},
		{"ReclaimAfterSettle", testReclaimAfterSettle},
		{"ReclaimStale", testReclaimStale},
		{"ReclaimConcurrent", testReclaimConcurrent},
		{"RebuildDropsPending", testRebuildDropsPending},
		{"LeaseExclusive", testLeaseExclusive},
		{"LeaseTokenHolder", testLeaseTokenHolder},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"Model", testModel},
		{"StressClaims", testStressClaims},
		{"StressClaimsWithUndo", testStressClaimsWithUndo},
		{"StressReplays", testStressReplays},
		{"StressReclaim", testStressReclaim},
	}
	tests = append(tests, cacheTests...)
	tests = append(tests, delayTests...)
	tests = append(tests, protectionTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newEngine(t))
		})
	}
}

var batchSeq atomic.Int64

// newBatchID returns a batch ID no other subtest, run or process uses, so
// that the suite can share one Redis.
func newBatchID() string {
	return "enginetest-" + coupon.NewID(time.Now()) + "-" + strconv.FormatInt(batchSeq.Add(1), 10)
}

// codes returns n pool codes named prefix-1 … prefix-n, of amounts 100, 200, ….
func codes(prefix string, n int) []engine.PoolCode {
	out := make([]engine.PoolCode, n)
	for i := range out {
		out[i] = engine.PoolCode{Code: prefix + "-" + strconv.Itoa(i+1), Amount: int64(100 * (i + 1))}
	}
	return out
}

// load creates an active batch with limit and pool, returning its ID.
func load(t *testing.T, e engine.Engine, limit int, pool []engine.PoolCode) string {
	t.Helper()
	id := newBatchID()
	require.NoError(t, e.Rebuild(t.Context(), engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: limit},
		Pool:  pool,
	}))
	return id
}

func claim(t *testing.T, e engine.Engine, batchID, user, key, claimID string) (engine.ClaimResult, error) {
	t.Helper()
	return e.Claim(t.Context(), engine.ClaimParams{BatchID: batchID, UserID: user, IdempotencyKey: key, ClaimID: claimID})
}

// mustClaim claims and requires success without a replay.
func mustClaim(t *testing.T, e engine.Engine, batchID, user, key, claimID string) engine.ClaimResult {
	t.Helper()
	r, err := claim(t, e, batchID, user, key, claimID)
	require.NoError(t, err)
	require.False(t, r.Replayed)
	require.Equal(t, claimID, r.ClaimID)
	return r
}

// undo reverses r, a claim of user with key.
func undo(t *testing.T, e engine.Engine, batchID, user, key string, r engine.ClaimResult) {
	t.Helper()
	require.NoError(t, e.Undo(t.Context(), engine.UndoParams{
		BatchID: batchID, UserID: user, IdempotencyKey: key, Code: r.Code, Amount: r.Amount, Seq: r.Seq,
	}))
}

func stats(t *testing.T, e engine.Engine, batchID string) engine.BatchStats {
	t.Helper()
	s, err := e.Stats(t.Context(), batchID)
	require.NoError(t, err)
	return s
}

func testUnknownBatch(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := newBatchID()

	_, err := claim(t, e, id, "u1", "", "c1")
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	_, err = claim(t, e, id, "u1", "k1", "c1")
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	require.ErrorIs(t, e.Undo(ctx, engine.UndoParams{BatchID: id, UserID: "u1", Code: "X", Seq: 1}), engine.ErrUnknownBatch)
	require.ErrorIs(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: true, PerUserLimit: 1}), engine.ErrUnknownBatch)
	require.ErrorIs(t, e.AddCodes(ctx, id, 0, 1, codes("A", 1)), engine.ErrUnknownBatch)
	_, err = e.Stats(ctx, id)
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	require.ErrorIs(t, e.Settle(ctx, id, []string{"X"}), engine.ErrUnknownBatch)
	require.ErrorIs(t, e.Settle(ctx, id, nil), engine.ErrUnknownBatch)
	_, err = e.Pending(ctx, id, time.Now(), 10)
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	ok, err := e.Reclaim(ctx, engine.PendingClaim{BatchID: id, ClaimID: "c1", UserID: "u1", Code: "X", Seq: 1})
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	require.False(t, ok)

	// None of the refused calls loaded the batch.
	_, err = claim(t, e, id, "u1", "", "c1")
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
}

func testNotClaimable(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := newBatchID()
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: false, PerUserLimit: 1},
		Pool:  codes("A", 2),
	}))
	_, err := claim(t, e, id, "u1", "", "c1")
	require.ErrorIs(t, err, engine.ErrNotClaimable)

	// Not active is checked before the key, the limit and the pool.
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: false, PerUserLimit: 1},
		Users: []engine.UserSeqs{{UserID: "u1", Seqs: []int{1}}},
		Keys:  []engine.KeyEntry{{UserID: "u1", Key: "k1", ClaimID: "c1", Code: "A-9", Amount: 900, Seq: 1}},
	}))
	for _, key := range []string{"", "k1", "k2"} {
		_, err = claim(t, e, id, "u1", key, "c2")
		require.ErrorIs(t, err, engine.ErrNotClaimable, "key %q", key)
		_, err = claim(t, e, id, "u2", key, "c2")
		require.ErrorIs(t, err, engine.ErrNotClaimable, "key %q", key)
	}
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 1}, stats(t, e, id))
}

func testReplay(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("A", 5))
	first := mustClaim(t, e, id, "u1", "k1", "c1")
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c1"}, first)

	again, err := claim(t, e, id, "u1", "k1", "c2")
	require.NoError(t, err)
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c1", Replayed: true}, again)
	require.Equal(t, engine.BatchStats{PoolDepth: 4, Claimed: 1}, stats(t, e, id), "a replay changes nothing")

	// The key belongs to the user and the batch.
	other := mustClaim(t, e, id, "u2", "k1", "c3")
	require.Equal(t, "A-2", other.Code)
	id2 := load(t, e, 5, codes("B", 1))
	require.Equal(t, "B-1", mustClaim(t, e, id2, "u1", "k1", "c4").Code)

	// Claims without a key are never replays.
	r1 := mustClaim(t, e, id, "u1", "", "c5")
	r2 := mustClaim(t, e, id, "u1", "", "c6")
	require.Equal(t, []string{"A-3", "A-4"}, []string{r1.Code, r2.Code})
	require.Equal(t, []int{2, 3}, []int{r1.Seq, r2.Seq})
}

func testReplayWinsOverLimit(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("A", 5))
	first := mustClaim(t, e, id, "u1", "k1", "c1")

	_, err := claim(t, e, id, "u1", "k2", "c2")
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = claim(t, e, id, "u1", "", "c2")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	again, err := claim(t, e, id, "u1", "k1", "c3")
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Equal(t, first.Code, again.Code)
	require.Equal(t, "c1", again.ClaimID)
}

func testReplayWinsOverSoldOut(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("A", 1))
	first := mustClaim(t, e, id, "u1", "k1", "c1")

	_, err := claim(t, e, id, "u2", "k1", "c2")
	require.ErrorIs(t, err, engine.ErrSoldOut)
	_, err = claim(t, e, id, "u1", "k2", "c2")
	require.ErrorIs(t, err, engine.ErrSoldOut)

	again, err := claim(t, e, id, "u1", "k1", "c3")
	require.NoError(t, err)
	require.Equal(t, engine.ClaimResult{Code: first.Code, Amount: first.Amount, Seq: 1, ClaimID: "c1", Replayed: true}, again)
}

func testLimitBeforeSoldOut(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("A", 1))
	mustClaim(t, e, id, "u1", "", "c1")
	// The pool is empty and u1 is at the limit: the limit is reported.
	_, err := claim(t, e, id, "u1", "", "c2")
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = claim(t, e, id, "u2", "", "c3")
	require.ErrorIs(t, err, engine.ErrSoldOut)
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 1}, stats(t, e, id))
}

func testPoolIsFIFO(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("A", 3))
	require.NoError(t, e.AddCodes(t.Context(), id, 0, 2, codes("B", 2)))
	var got []engine.PoolCode
	for i := range 5 {
		r := mustClaim(t, e, id, "u"+strconv.Itoa(i), "", "c"+strconv.Itoa(i))
		require.Equal(t, 1, r.Seq)
		got = append(got, engine.PoolCode{Code: r.Code, Amount: r.Amount})
	}
	require.Equal(t, append(codes("A", 3), codes("B", 2)...), got)
	_, err := claim(t, e, id, "u9", "", "c9")
	require.ErrorIs(t, err, engine.ErrSoldOut)
}

func testSmallestFreeSeq(t *testing.T, e engine.Engine) {
	id := load(t, e, 3, codes("A", 10))
	held := map[int]engine.ClaimResult{}
	for want := 1; want <= 3; want++ {
		r := mustClaim(t, e, id, "u1", "", "c"+strconv.Itoa(want))
		require.Equal(t, want, r.Seq)
		held[r.Seq] = r
	}
	_, err := claim(t, e, id, "u1", "", "c4")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	// Holds 1,2,3; undo 2: the next claim gets 2.
	undo(t, e, id, "u1", "", held[2])
	r := mustClaim(t, e, id, "u1", "", "c5")
	require.Equal(t, 2, r.Seq)
	held[2] = r
	_, err = claim(t, e, id, "u1", "", "c6")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	// Undo 3 then 1: the next claims get 1, then 3.
	undo(t, e, id, "u1", "", held[3])
	undo(t, e, id, "u1", "", held[1])
	require.Equal(t, 1, mustClaim(t, e, id, "u1", "", "c7").Seq)
	require.Equal(t, 3, mustClaim(t, e, id, "u1", "", "c8").Seq)
	_, err = claim(t, e, id, "u1", "", "c9")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	// Undo of the top number, then of the one below it.
	undo(t, e, id, "u1", "", engine.ClaimResult{Code: "X-3", Seq: 3})
	undo(t, e, id, "u1", "", engine.ClaimResult{Code: "X-2", Seq: 2})
	require.Equal(t, 2, mustClaim(t, e, id, "u1", "", "c10").Seq)
	require.Equal(t, 3, mustClaim(t, e, id, "u1", "", "c11").Seq)
}

func testUndoReturnsCode(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("A", 2))
	r1 := mustClaim(t, e, id, "u1", "", "c1")
	mustClaim(t, e, id, "u2", "", "c2")
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 2}, stats(t, e, id))

	undo(t, e, id, "u1", "", r1)
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 1}, stats(t, e, id))
	// The code is handed out again, with its amount, and u1's number is free.
	r := mustClaim(t, e, id, "u1", "", "c3")
	require.Equal(t, engine.ClaimResult{Code: r1.Code, Amount: r1.Amount, Seq: 1, ClaimID: "c3"}, r)
	_, err := claim(t, e, id, "u3", "", "c4")
	require.ErrorIs(t, err, engine.ErrSoldOut)
}

func testUndoKeepCode(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 1, codes("A", 2))
	r := mustClaim(t, e, id, "u1", "", "c1")
	require.NoError(t, e.Undo(ctx, engine.UndoParams{
		BatchID: id, UserID: "u1", Code: r.Code, Amount: r.Amount, Seq: r.Seq, KeepCode: true,
	}))
	require.Equal(t, int64(1), stats(t, e, id).PoolDepth, "the code stays out of the pool")

	// The number is free again, and the next code is the second one.
	r2 := mustClaim(t, e, id, "u1", "", "c2")
	require.Equal(t, engine.ClaimResult{Code: "A-2", Amount: 200, Seq: 1, ClaimID: "c2"}, r2)
	_, err := claim(t, e, id, "u2", "", "c3")
	require.ErrorIs(t, err, engine.ErrSoldOut)
}

func testUndoKeepSeq(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 2, codes("A", 3))
	r := mustClaim(t, e, id, "u1", "", "c1")
	require.NoError(t, e.Undo(ctx, engine.UndoParams{
		BatchID: id, UserID: "u1", Code: r.Code, Amount: r.Amount, Seq: r.Seq, KeepSeq: true,
	}))
	require.Equal(t, int64(3), stats(t, e, id).PoolDepth, "the code is back")

	// Number 1 stays taken: u1 gets 2, then is at the limit.
	r2 := mustClaim(t, e, id, "u1", "", "c2")
	require.Equal(t, engine.ClaimResult{Code: r.Code, Amount: r.Amount, Seq: 2, ClaimID: "c2"}, r2)
	_, err := claim(t, e, id, "u1", "", "c3")
	require.ErrorIs(t, err, engine.ErrLimitReached)
}

func testUndoForgetsKey(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("A", 3))
	r := mustClaim(t, e, id, "u1", "k1", "c1")
	undo(t, e, id, "u1", "k1", r)

	// A retry with the same key makes a fresh claim…
	r2 := mustClaim(t, e, id, "u1", "k1", "c2")
	require.Equal(t, "c2", r2.ClaimID)
	require.Equal(t, 1, r2.Seq)
	// …which later replays.
	again, err := claim(t, e, id, "u1", "k1", "c3")
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Equal(t, "c2", again.ClaimID)
	require.Equal(t, r2.Code, again.Code)
}

func testRebuildReplacesState(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 5, codes("A", 5))
	mustClaim(t, e, id, "u1", "k1", "c1")
	mustClaim(t, e, id, "u2", "k2", "c2")
	mustClaim(t, e, id, "u2", "", "c3")

	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 4},
		Pool:  codes("B", 3),
		Users: []engine.UserSeqs{
			{UserID: "u3", Seqs: []int{4, 1}}, // holes 2 and 3
			{UserID: "u4", Seqs: []int{1, 2, 3, 4}},
		},
		Keys: []engine.KeyEntry{{UserID: "u3", Key: "k3", ClaimID: "c0", Code: "Z-1", Amount: 7, Seq: 4}},
	}))
	require.Equal(t, engine.BatchStats{PoolDepth: 3, Claimed: 6}, stats(t, e, id))

	// The old users and keys are gone: u1's key claims afresh from the new pool.
	r := mustClaim(t, e, id, "u1", "k1", "c4")
	require.Equal(t, engine.ClaimResult{Code: "B-1", Amount: 100, Seq: 1, ClaimID: "c4"}, r)

	// The snapshot's key replays.
	again, err := claim(t, e, id, "u3", "k3", "c5")
	require.NoError(t, err)
	require.Equal(t, engine.ClaimResult{Code: "Z-1", Amount: 7, Seq: 4, ClaimID: "c0", Replayed: true}, again)

	// u3 holds 1 and 4: the holes 2 and 3 are handed out, then the limit holds.
	require.Equal(t, 2, mustClaim(t, e, id, "u3", "", "c6").Seq)
	require.Equal(t, 3, mustClaim(t, e, id, "u3", "", "c7").Seq)
	_, err = claim(t, e, id, "u3", "", "c8")
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = claim(t, e, id, "u4", "", "c9")
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = claim(t, e, id, "u5", "", "c10")
	require.ErrorIs(t, err, engine.ErrSoldOut)
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 9}, stats(t, e, id))

	// The batch state is replaced too.
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: false, PerUserLimit: 4},
		Pool:  codes("C", 1),
	}))
	_, err = claim(t, e, id, "u1", "", "c11")
	require.ErrorIs(t, err, engine.ErrNotClaimable)
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 0}, stats(t, e, id))
}

func testRebuildCreatesBatch(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := newBatchID()
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2},
		Pool:  codes("A", 2),
		Users: []engine.UserSeqs{{UserID: "u1", Seqs: []int{2}}},
	}))
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 1}, stats(t, e, id))
	require.Equal(t, engine.ClaimResult{Code: "A-1", Amount: 100, Seq: 1, ClaimID: "c1"}, mustClaim(t, e, id, "u1", "", "c1"))
	_, err := claim(t, e, id, "u1", "", "c2")
	require.ErrorIs(t, err, engine.ErrLimitReached)

	// An empty batch is loaded too: it is known, and sold out.
	empty := newBatchID()
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{Batch: engine.BatchState{BatchID: empty, Active: true, PerUserLimit: 1}}))
	require.Equal(t, engine.BatchStats{}, stats(t, e, empty))
	_, err = claim(t, e, empty, "u1", "", "c3")
	require.ErrorIs(t, err, engine.ErrSoldOut)
	require.NoError(t, e.AddCodes(ctx, empty, 0, 1, codes("B", 1)))
	require.Equal(t, "B-1", mustClaim(t, e, empty, "u1", "", "c4").Code)
}

func testSetBatchPauseResume(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 2, codes("A", 3))
	mustClaim(t, e, id, "u1", "k1", "c1")

	require.NoError(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: false, PerUserLimit: 2}))
	_, err := claim(t, e, id, "u1", "", "c2")
	require.ErrorIs(t, err, engine.ErrNotClaimable)
	_, err = claim(t, e, id, "u1", "k1", "c2")
	require.ErrorIs(t, err, engine.ErrNotClaimable)
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 1}, stats(t, e, id), "pausing keeps the state")

	require.NoError(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2}))
	again, err := claim(t, e, id, "u1", "k1", "c3")
	require.NoError(t, err)
	require.True(t, again.Replayed, "resuming keeps the keys")
	r := mustClaim(t, e, id, "u1", "", "c4")
	require.Equal(t, engine.ClaimResult{Code: "A-2", Amount: 200, Seq: 2, ClaimID: "c4"}, r)
}

func testSetBatchLimit(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	setLimit := func(t *testing.T, id string, limit int) {
		t.Helper()
		require.NoError(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: true, PerUserLimit: limit}))
	}

	t.Run("raised", func(t *testing.T) {
		id := load(t, e, 1, codes("A", 5))
		mustClaim(t, e, id, "u1", "", "c1")
		_, err := claim(t, e, id, "u1", "", "c2")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		setLimit(t, id, 3)
		require.Equal(t, 2, mustClaim(t, e, id, "u1", "", "c3").Seq)
		require.Equal(t, 3, mustClaim(t, e, id, "u1", "", "c4").Seq)
		_, err = claim(t, e, id, "u1", "", "c5")
		require.ErrorIs(t, err, engine.ErrLimitReached)
	})

	t.Run("lowered", func(t *testing.T) {
		id := load(t, e, 3, codes("A", 5))
		mustClaim(t, e, id, "u1", "", "c1")
		mustClaim(t, e, id, "u1", "", "c2")
		mustClaim(t, e, id, "u2", "", "c3")
		setLimit(t, id, 1)
		// u1 holds more than the new limit, u2 exactly the limit.
		_, err := claim(t, e, id, "u1", "", "c4")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		_, err = claim(t, e, id, "u2", "", "c5")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		require.Equal(t, 1, mustClaim(t, e, id, "u3", "", "c6").Seq)
		_, err = claim(t, e, id, "u3", "", "c7")
		require.ErrorIs(t, err, engine.ErrLimitReached)
	})

	t.Run("lowered with holes", func(t *testing.T) {
		id := newBatchID()
		require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
			Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 5},
			Pool:  codes("A", 5),
			Users: []engine.UserSeqs{
				{UserID: "u1", Seqs: []int{1, 4}}, // holes 2, 3
				{UserID: "u2", Seqs: []int{5}},    // holes 1 to 4
				{UserID: "u3", Seqs: []int{2, 5}}, // holes 1, 3, 4
			},
		}))
		setLimit(t, id, 3)
		// u1 holds 2 of 3: it gets hole 2, then is at the limit; hole 3 is not handed out.
		require.Equal(t, 2, mustClaim(t, e, id, "u1", "", "c1").Seq)
		_, err := claim(t, e, id, "u1", "", "c2")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		// u2 holds 1 of 3: it gets 1 and 2, never a number above 3.
		require.Equal(t, 1, mustClaim(t, e, id, "u2", "", "c3").Seq)
		require.Equal(t, 2, mustClaim(t, e, id, "u2", "", "c4").Seq)
		_, err = claim(t, e, id, "u2", "", "c5")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		setLimit(t, id, 2)
		// u3 holds 2 of 2 (one of them above the limit): refused.
		_, err = claim(t, e, id, "u3", "", "c6")
		require.ErrorIs(t, err, engine.ErrLimitReached)
		setLimit(t, id, 0)
		_, err = claim(t, e, id, "u4", "", "c7")
		require.ErrorIs(t, err, engine.ErrLimitReached)
	})
}

func testAddCodes(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 10, nil)
	_, err := claim(t, e, id, "u1", "", "c1")
	require.ErrorIs(t, err, engine.ErrSoldOut)

	require.NoError(t, e.AddCodes(ctx, id, 0, 2, codes("A", 2)))
	require.NoError(t, e.AddCodes(ctx, id, 2, 2, nil), "an empty range")
	require.Equal(t, engine.BatchStats{PoolDepth: 2, LoadedSeq: 2}, stats(t, e, id))
	require.Equal(t, "A-1", mustClaim(t, e, id, "u1", "", "c2").Code)
	// The range (2, 5] had a code claimed already: two codes for three numbers.
	require.NoError(t, e.AddCodes(ctx, id, 2, 5, codes("B", 2)))
	require.Equal(t, engine.BatchStats{PoolDepth: 3, Claimed: 1, LoadedSeq: 5}, stats(t, e, id))

	var got []string
	for i := range 3 {
		got = append(got, mustClaim(t, e, id, "u1", "", "c"+strconv.Itoa(10+i)).Code)
	}
	require.Equal(t, []string{"A-2", "B-1", "B-2"}, got)
	_, err = claim(t, e, id, "u1", "", "c20")
	require.ErrorIs(t, err, engine.ErrSoldOut)

	// Many appends and pops interleaved keep the order.
	var want, order []string
	loaded := int64(5)
	for round := range 20 {
		more := codes("R"+strconv.Itoa(round), 7)
		require.NoError(t, e.AddCodes(ctx, id, loaded, loaded+7, more))
		loaded += 7
		for _, c := range more {
			want = append(want, c.Code)
		}
		for i := range 5 {
			r, err := claim(t, e, id, "w"+strconv.Itoa(round*10+i), "", "x")
			require.NoError(t, err)
			order = append(order, r.Code)
		}
	}
	for i := range 40 {
		r, err := claim(t, e, id, "v"+strconv.Itoa(i), "", "x")
		require.NoError(t, err)
		order = append(order, r.Code)
	}
	require.Equal(t, want, order)
	require.Equal(t, int64(0), stats(t, e, id).PoolDepth)
	require.Equal(t, loaded, stats(t, e, id).LoadedSeq)
}

// testAddCodesStale: a load whose fromSeq is not the batch's LoadedSeq is
// refused with ErrStaleLoad and changes nothing; Rebuild sets LoadedSeq.
func testAddCodesStale(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := newBatchID()
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 100},
		Pool:  codes("A", 3), LoadedSeq: 10,
	}))
	require.Equal(t, engine.BatchStats{PoolDepth: 3, LoadedSeq: 10}, stats(t, e, id))

	for _, from := range []int64{0, 9, 11} {
		require.ErrorIs(t, e.AddCodes(ctx, id, from, from+4, codes("X", 4)), engine.ErrStaleLoad, "from %d", from)
	}
	require.ErrorIs(t, e.AddCodes(ctx, id, 12, 12, nil), engine.ErrStaleLoad, "even an empty load is checked")
	require.Equal(t, engine.BatchStats{PoolDepth: 3, LoadedSeq: 10}, stats(t, e, id), "refused loads change nothing")
	err := e.AddCodes(ctx, id, 10, 9, codes("X", 1))
	require.Error(t, err, "through below from")
	require.NotErrorIs(t, err, engine.ErrStaleLoad)

	require.NoError(t, e.AddCodes(ctx, id, 10, 14, codes("B", 4)))
	require.ErrorIs(t, e.AddCodes(ctx, id, 10, 14, codes("B", 4)), engine.ErrStaleLoad, "the same range twice")
	require.Equal(t, engine.BatchStats{PoolDepth: 7, LoadedSeq: 14}, stats(t, e, id))

	// A large load (beyond what some engines take in one step) is refused
	// whole too.
	big := codes("L", 5000)
	require.ErrorIs(t, e.AddCodes(ctx, id, 13, 5013, big), engine.ErrStaleLoad)
	require.Equal(t, engine.BatchStats{PoolDepth: 7, LoadedSeq: 14}, stats(t, e, id))

	var got []string
	for i := range 7 {
		got = append(got, mustClaim(t, e, id, "u1", "", "c"+strconv.Itoa(i)).Code)
	}
	require.Equal(t, []string{"A-1", "A-2", "A-3", "B-1", "B-2", "B-3", "B-4"}, got, "no refused code reached the pool")
	_, err = claim(t, e, id, "u1", "", "c9")
	require.ErrorIs(t, err, engine.ErrSoldOut)

	// A Rebuild sets LoadedSeq from its snapshot, lower or higher.
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 100}, LoadedSeq: 3,
	}))
	require.ErrorIs(t, e.AddCodes(ctx, id, 14, 15, codes("C", 1)), engine.ErrStaleLoad)
	require.NoError(t, e.AddCodes(ctx, id, 3, 5003, big))
	require.Equal(t, engine.BatchStats{PoolDepth: 5000, LoadedSeq: 5003}, stats(t, e, id))
	require.Equal(t, "L-1", mustClaim(t, e, id, "u2", "", "c10").Code)
}

// testAddCodesConcurrent: 16 loaders race to load one range of 5,000 codes
// while claims drain the pool; exactly one load succeeds, and every code is
// handed out once.
func testAddCodesConcurrent(t *testing.T, e engine.Engine) {
	const (
		loaders = 16
		n       = 5000
	)
	ctx := t.Context()
	id := newBatchID()
	first := codes("F", 50)
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 1_000_000},
		Pool:  first, LoadedSeq: 50,
	}))
	more := codes("N", n)

	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		ok       atomic.Int64
		stale    atomic.Int64
		done     atomic.Bool
		mu       sync.Mutex
		claimed  []string
		loadErrs = make(chan error, loaders)
	)
	for range loaders {
		wg.Go(func() {
			<-start
			switch err := e.AddCodes(ctx, id, 50, 50+n, more); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, engine.ErrStaleLoad):
				stale.Add(1)
			default:
				loadErrs <- err
			}
		})
	}
	var claimers sync.WaitGroup
	for c := range 4 {
		claimers.Go(func() {
			<-start
			for i := 0; ; i++ {
				r, err := e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u" + strconv.Itoa(c), ClaimID: "c"})
				if errors.Is(err, engine.ErrSoldOut) {
					if done.Load() {
						return
					}
					continue
				}
				if err != nil {
					loadErrs <- err
					return
				}
				mu.Lock()
				claimed = append(claimed, r.Code)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	done.Store(true)
	claimers.Wait()
	close(loadErrs)
	for err := range loadErrs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, ok.Load(), "exactly one loader pushes the range")
	require.EqualValues(t, loaders-1, stale.Load())
	require.Len(t, claimed, 50+n, "every code of the pool and of the range, and no more")
	seen := make(map[string]bool, len(claimed))
	for _, c := range claimed {
		require.False(t, seen[c], "code %s handed out twice", c)
		seen[c] = true
	}
	for _, c := range append(first, more...) {
		require.True(t, seen[c.Code], "code %s never handed out", c.Code)
	}
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: 50 + n, LoadedSeq: 50 + n}, stats(t, e, id))
}

func testStats(t *testing.T, e engine.Engine) {
	id := load(t, e, 2, codes("A", 4))
	require.Equal(t, engine.BatchStats{PoolDepth: 4, Claimed: 0}, stats(t, e, id))
	r1 := mustClaim(t, e, id, "u1", "k1", "c1")
	mustClaim(t, e, id, "u1", "", "c2")
	mustClaim(t, e, id, "u2", "", "c3")
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 3}, stats(t, e, id))

	// Refusals and replays change nothing.
	_, err := claim(t, e, id, "u1", "", "c4")
	require.ErrorIs(t, err, engine.ErrLimitReached)
	_, err = claim(t, e, id, "u1", "k1", "c5")
	require.NoError(t, err)
	require.Equal(t, engine.BatchStats{PoolDepth: 1, Claimed: 3}, stats(t, e, id))

	undo(t, e, id, "u1", "k1", r1)
	require.Equal(t, engine.BatchStats{PoolDepth: 2, Claimed: 2}, stats(t, e, id))
}
