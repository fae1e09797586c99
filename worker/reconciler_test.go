package worker_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/worker"
)

// A process died between the engine step and the commit: its claim is
// pending in the engine and absent from the store. Another claim committed
// but was never settled. One pass reclaims the first and settles the second.
func TestReconcilerReclaimsClaimsThatNeverCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	eng := memory.New()

	now := time.Now().UTC()
	b := &coupon.Batch{ID: coupon.NewID(now), Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now, BatchSpec: coupon.BatchSpec{
		Name: "r", Type: coupon.TypeCash, TotalQuantity: 3, PerUserLimit: 1,
		Validity: coupon.Validity{Days: 1}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 10},
	}}
	require.NoError(t, st.CreateBatch(ctx, b))
	codes := []coupon.Code{{Code: coupon.NewCode(coupon.CodeFormat{}), Amount: 10}, {Code: coupon.NewCode(coupon.CodeFormat{}), Amount: 10}, {Code: coupon.NewCode(coupon.CodeFormat{}), Amount: 10}}
	_, err = st.AddCodes(ctx, b.ID, codes)
	require.NoError(t, err)
	pool := []engine.PoolCode{{Code: codes[0].Code, Amount: 10}, {Code: codes[1].Code, Amount: 10}, {Code: codes[2].Code, Amount: 10}}
	require.NoError(t, eng.Rebuild(ctx, engine.Snapshot{Batch: engine.BatchState{BatchID: b.ID, Active: true, PerUserLimit: 1}, Pool: pool}))

	old := now.Add(-time.Hour)
	lost, err := eng.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "lost", IdempotencyKey: "k", ClaimID: coupon.NewID(old), At: old})
	require.NoError(t, err)
	kept, err := eng.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "kept", ClaimID: coupon.NewID(old), At: old})
	require.NoError(t, err)
	c := coupon.NewClaim(b, coupon.NewID(old), coupon.Claimant{UserID: "kept"}, kept.Code, kept.Amount, kept.Seq, "", old)
	require.NoError(t, st.InsertClaims(ctx, []store.ClaimWrite{{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: json.RawMessage(`{}`)}}})[0])
	// A recent claim is inside the grace period: left alone.
	recent, err := eng.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "recent", ClaimID: coupon.NewID(now), At: now})
	require.NoError(t, err)

	r := worker.NewReconciler(worker.ReconcilerConfig{
		Engine: eng, Store: st, Grace: time.Minute, Now: func() time.Time { return now },
		Batches: func(context.Context) ([]string, error) { return []string{b.ID}, nil },
	})
	res, err := r.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, worker.ReconcileResult{Settled: 1, Reclaimed: 1}, res)

	stats, err := eng.Stats(ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.PoolDepth, "the lost claim's code is back in the pool")
	// The lost user can claim again and gets the reclaimed code; the key was forgotten.
	again, err := eng.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "lost", IdempotencyKey: "k", ClaimID: coupon.NewID(now), At: now})
	require.NoError(t, err)
	require.False(t, again.Replayed)
	require.Equal(t, lost.Code, again.Code)

	pending, err := eng.Pending(ctx, b.ID, now.Add(time.Second), 10)
	require.NoError(t, err)
	var left []string
	for _, p := range pending {
		left = append(left, p.Code)
	}
	require.ElementsMatch(t, []string{recent.Code, again.Code}, left, "only the claims within the grace period stay pending")

	// A second pass finds nothing more to do.
	res, err = r.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, worker.ReconcileResult{}, res)
}

// With a lease, of two reconcilers sharing an engine only one works.
func TestReconcilerLeaseLetsOneInstanceWork(t *testing.T) {
	t.Parallel()
	eng := memory.New()
	a := worker.NewLease(eng, "reconciler-test", time.Minute, nil)
	b := worker.NewLease(eng, "reconciler-test", time.Minute, nil)
	ctx := context.Background()
	require.True(t, a.Hold(ctx))
	require.False(t, b.Hold(ctx))
	require.True(t, a.Hold(ctx), "the holder renews")
	a.Release(ctx)
	require.True(t, b.Hold(ctx), "released: the other takes it")
}
