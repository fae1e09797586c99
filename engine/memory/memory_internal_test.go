package memory

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// TestPendingListBounded: a claim left pending while many others are
// settled does not keep their dead entries.
func TestPendingListBounded(t *testing.T) {
	ctx := context.Background()
	e := New()
	const n = 10_000
	pool := make([]engine.PoolCode, 2*n)
	for i := range pool {
		pool[i] = engine.PoolCode{Code: "C" + strconv.Itoa(i), Amount: 1}
	}
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: "b", Active: true, PerUserLimit: 2 * n},
		Pool:  pool,
	}))
	stuck, err := e.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: "u", At: time.Unix(1, 0)})
	require.NoError(t, err)
	for i := range n {
		r, err := e.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: "u", At: time.Unix(int64(2+i), 0)})
		require.NoError(t, err)
		require.NoError(t, e.Settle(ctx, "b", []string{r.Code}))
	}
	b := e.batch("b")
	require.LessOrEqual(t, cap(b.pending.list), 4)
	p, err := e.Pending(ctx, "b", time.Unix(1e9, 0), 10)
	require.NoError(t, err)
	require.Len(t, p, 1)
	require.Equal(t, stuck.Code, p[0].Code)

	// Half of many claims left pending: the array stays within twice them.
	for i := range n / 2 {
		r, err := e.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: "u", At: time.Unix(int64(n+i), 0)})
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, e.Undo(ctx, engine.UndoParams{BatchID: "b", UserID: "u", Code: r.Code, Amount: r.Amount, Seq: r.Seq}))
		}
	}
	require.LessOrEqual(t, len(b.pending.list), 4*len(b.pending.index))
}

// TestLeaseClock: leases expire by the engine's clock.
func TestLeaseClock(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	e := New()
	e.Now = func() time.Time { return now }

	tok, ok, err := e.Lock(ctx, "job", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	now = now.Add(time.Minute - time.Nanosecond)
	_, ok, err = e.Lock(ctx, "job", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "held until its ttl has passed")
	ok, err = e.Extend(ctx, "job", tok, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	now = now.Add(time.Minute)
	ok, err = e.Extend(ctx, "job", tok, time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "expired: it cannot be renewed")
	tok2, ok, err := e.Lock(ctx, "job", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	require.NotEqual(t, tok, tok2)

	_, _, err = e.Lock(ctx, "other", 0)
	require.Error(t, err)
}
