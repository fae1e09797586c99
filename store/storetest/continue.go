package storetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testContinueCodes: ContinueCodes writes only on the generated count it is
// given, and otherwise behaves as AddCodes.
func testContinueCodes(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 6 })
	f.createBatch()

	out, err := f.continueCodes(b.ID, 0, []coupon.Code{{Code: "CONT-A", Amount: 10}, {Code: "CONT-B", Amount: 20}})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2}, []int64{out[0].Seq, out[1].Seq})

	// A count that moved on: nothing is written, even a code that would fit.
	for _, from := range []int64{0, 1, 3} {
		stale := codes(2, 5)
		_, err = f.continueCodes(b.ID, from, stale)
		require.ErrorIs(t, err, store.ErrGeneratedMoved, "from %d", from)
		require.NotErrorIs(t, err, store.ErrTotalExceeded)
		for _, c := range stale {
			_, err := f.s.GetCode(f.ctx, c.Code)
			require.ErrorIs(t, err, store.ErrNotFound, "no code of a refused call is inserted")
		}
	}
	_, err = f.continueCodes(b.ID, 5, nil)
	require.ErrorIs(t, err, store.ErrGeneratedMoved, "an empty call is checked too")
	none, err := f.continueCodes(b.ID, 2, nil)
	require.NoError(t, err)
	require.Empty(t, none)
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, got.GeneratedCount)
	require.EqualValues(t, 30, got.GeneratedAmount)

	// Duplicates are skipped and not counted, as in AddCodes: the caller
	// continues from the count plus what went in.
	out, err = f.continueCodes(b.ID, 2, []coupon.Code{{Code: "CONT-A", Amount: 99}, {Code: "CONT-C", Amount: 30}})
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "CONT-C", out[0].Code)
	require.EqualValues(t, 3, out[0].Seq)
	_, err = f.continueCodes(b.ID, 2, codes(1, 5))
	require.ErrorIs(t, err, store.ErrGeneratedMoved)

	// The total still bounds it.
	_, err = f.continueCodes(b.ID, 3, codes(4, 5))
	require.ErrorIs(t, err, store.ErrTotalExceeded)
	out, err = f.continueCodes(b.ID, 3, codes(3, 5))
	require.NoError(t, err)
	require.Len(t, out, 3)
	got, err = f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 6, got.GeneratedCount)
	require.EqualValues(t, 10+20+30+15, got.GeneratedAmount)

	_, err = f.continueCodes(f.id(), 0, codes(1, 5))
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testContinueCodesRace: generators of a split budget race to fill a batch,
// each drawing its chunk from the count and amount it read, redrawing the
// codes that collide with the same amounts and reading again when the count
// moved. The batch ends with exactly its total, its budget summed exactly,
// and sequence numbers 1..total.
func testContinueCodesRace(t *testing.T, f *fixture) {
	const (
		generators = 8
		total      = 2000
		chunk      = 37
		budget     = 1_000_003
	)
	b := f.createBatch(func(b *coupon.Batch) {
		b.TotalQuantity = total
		b.Amount = coupon.AmountSpec{Type: coupon.AmountSplit, Budget: budget, Min: 3}
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		moved int
		errs  = make(chan error, generators)
	)
	for g := range generators {
		wg.Go(func() {
			for {
				cur, err := f.s.GetBatch(f.ctx, b.ID)
				if err != nil {
					errs <- err
					return
				}
				if cur.GeneratedCount == total {
					return
				}
				amounts := coupon.NewAmounts(cur.Amount, total, cur.GeneratedCount, cur.GeneratedAmount)
				in := make([]coupon.Code, min(chunk, total-cur.GeneratedCount))
				for i := range in {
					in[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: amounts.Next()}
				}
				// A code every generator tries: all but one collide on it.
				in[0].Code = "RACE-SHARED-" + string(rune('A'+g%2))
				from := cur.GeneratedCount
				for len(in) > 0 {
					out, err := f.continueCodes(b.ID, from, in)
					if errors.Is(err, store.ErrGeneratedMoved) {
						mu.Lock()
						moved++
						mu.Unlock()
						break
					}
					if err != nil {
						errs <- err
						return
					}
					from += int64(len(out))
					done := make(map[string]bool, len(out))
					for _, c := range out {
						done[c.Code] = true
					}
					retry := in[:0:0]
					for _, c := range in {
						if !done[c.Code] {
							c.Code = coupon.NewCode(coupon.CodeFormat{Length: 16})
							retry = append(retry, c)
						}
					}
					in = retry
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, moved, "the generators raced")

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, total, got.GeneratedCount)
	require.EqualValues(t, budget, got.GeneratedAmount)
	snap, err := f.s.Snapshot(f.ctx, b.ID)
	require.NoError(t, err)
	require.Len(t, snap.Pool, total)
	var sum int64
	for _, p := range snap.Pool {
		require.GreaterOrEqual(t, p.Amount, int64(3))
		sum += p.Amount
	}
	require.EqualValues(t, budget, sum, "the codes' amounts sum to the budget")
	all, err := f.s.UnclaimedCodes(f.ctx, b.ID, 0, total)
	require.NoError(t, err)
	require.Equal(t, snap.Pool, all, "sequence numbers 1..total, in order")
}

// testUnclaimedCodes: the unclaimed codes of a range of sequence numbers, in
// order, of this batch only.
func testUnclaimedCodes(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 5 })
	other := f.createBatch()
	cs := f.addCodes(b, 10)
	f.addCodes(other, 3)
	f.insert(f.claim(b, cs[3], "u1", 1, ""), f.claim(b, cs[4], "u1", 2, ""), f.claim(b, cs[8], "u2", 1, ""))

	pool := func(cs ...coupon.Code) []store.PoolCode {
		out := []store.PoolCode{}
		for _, c := range cs {
			out = append(out, store.PoolCode{Code: c.Code, Amount: c.Amount})
		}
		return out
	}
	for _, tc := range []struct {
		after, through int64
		want           []store.PoolCode
	}{
		{0, 10, pool(cs[0], cs[1], cs[2], cs[5], cs[6], cs[7], cs[9])},
		{2, 8, pool(cs[2], cs[5], cs[6], cs[7])},
		{3, 5, pool()},
		{9, 100, pool(cs[9])},
		{10, 20, pool()},
		{6, 6, pool()},
		{7, 2, pool()},
	} {
		got, err := f.s.UnclaimedCodes(f.ctx, b.ID, tc.after, tc.through)
		require.NoError(t, err)
		if len(tc.want) == 0 {
			require.Empty(t, got, "(%d, %d]", tc.after, tc.through)
			continue
		}
		require.Equal(t, tc.want, got, "(%d, %d]", tc.after, tc.through)
	}
	_, err := f.s.UnclaimedCodes(f.ctx, f.id(), 0, 10)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testSnapshotGeneratedCount: while codes are being added, every snapshot's
// pool is exactly the codes up to its batch's generated count.
func testSnapshotGeneratedCount(t *testing.T, f *fixture) {
	const total = 3000
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = total })
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for added := int64(0); added < total; {
			out, err := f.continueCodes(b.ID, added, codes(100, 7))
			if err != nil {
				done <- err
				return
			}
			added += int64(len(out))
		}
	}()
	snapshots := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			require.NoError(t, err)
			finished = true
		default:
		}
		snap, err := f.s.Snapshot(f.ctx, b.ID)
		require.NoError(t, err)
		require.EqualValues(t, snap.Batch.GeneratedCount, len(snap.Pool), "snapshot %d", snapshots)
		require.EqualValues(t, 7*snap.Batch.GeneratedCount, snap.Batch.GeneratedAmount)
		snapshots++
	}
	require.Greater(t, snapshots, 1)
}

// continueCodes calls ContinueCodes on any version.
func (f *fixture) continueCodes(batchID string, from int64, in []coupon.Code) ([]coupon.Code, error) {
	return f.s.ContinueCodes(f.ctx, store.ContinueCodes{BatchID: batchID, From: from, Codes: in})
}
