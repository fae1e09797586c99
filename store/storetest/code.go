package storetest

import (
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testAddCodes: codes get Seq 1, 2, … in order, their batch and creation
// time; the batch's generated count and amount follow.
func testAddCodes(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 10 })
	createdAt := time.Date(2031, 1, 1, 0, 0, 0, 7000, time.FixedZone("UTC-5", -5*3600))
	in := []coupon.Code{
		{Code: "CODE-A", Amount: 100},
		{Code: "CODE-B", Amount: 250, Tags: map[string]string{"source": "import", "lot": "7"}},
		{Code: "CODE-C", Amount: 1, CreatedAt: createdAt},
	}
	out, err := f.s.AddCodes(f.ctx, b.ID, in)
	require.NoError(t, err)
	require.Len(t, out, 3)
	for i, c := range out {
		require.Equal(t, in[i].Code, c.Code)
		require.Equal(t, in[i].Amount, c.Amount)
		require.Equal(t, in[i].Tags, c.Tags)
		require.Equal(t, int64(i+1), c.Seq)
		require.Equal(t, b.ID, c.BatchID)
		require.False(t, c.CreatedAt.IsZero(), "CreatedAt is set")
		requireUTC(t, c.CreatedAt)
	}
	require.True(t, out[2].CreatedAt.Equal(createdAt), "a given CreatedAt is kept")

	more, err := f.s.AddCodes(f.ctx, b.ID, []coupon.Code{{Code: "CODE-D", Amount: 40}, {Code: "CODE-E", Amount: 60}})
	require.NoError(t, err)
	require.Equal(t, []int64{4, 5}, []int64{more[0].Seq, more[1].Seq}, "Seq continues after the generated count")

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 5, got.GeneratedCount)
	require.EqualValues(t, 100+250+1+40+60, got.GeneratedAmount)

	for _, want := range append(out, more...) {
		c, err := f.s.GetCode(f.ctx, want.Code)
		require.NoError(t, err)
		require.Equal(t, want.Code, c.Code)
		require.Equal(t, b.ID, c.BatchID)
		require.Equal(t, want.Seq, c.Seq)
		require.Equal(t, want.Amount, c.Amount)
		require.Equal(t, want.Tags, c.Tags)
		require.True(t, want.CreatedAt.Equal(c.CreatedAt))
		requireUTC(t, c.CreatedAt)
		require.Equal(t, coupon.CodeUnclaimed, c.Status)
	}

	none, err := f.s.AddCodes(f.ctx, b.ID, nil)
	require.NoError(t, err)
	require.Empty(t, none)
	got, err = f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 5, got.GeneratedCount)
}

// testAddCodesDuplicates: a code that exists (in this batch, another batch or
// earlier in the same call) is skipped and not counted.
func testAddCodesDuplicates(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 10 })
	other := f.createBatch()
	first, err := f.s.AddCodes(f.ctx, b.ID, []coupon.Code{{Code: "OLD-1", Amount: 10}, {Code: "OLD-2", Amount: 20}})
	require.NoError(t, err)
	require.Len(t, first, 2)
	_, err = f.s.AddCodes(f.ctx, other.ID, []coupon.Code{{Code: "ELSEWHERE", Amount: 30}})
	require.NoError(t, err)

	out, err := f.s.AddCodes(f.ctx, b.ID, []coupon.Code{
		{Code: "OLD-1", Amount: 999},
		{Code: "NEW-1", Amount: 1},
		{Code: "ELSEWHERE", Amount: 999},
		{Code: "NEW-1", Amount: 999},
		{Code: "NEW-2", Amount: 2},
	})
	require.NoError(t, err)
	require.Len(t, out, 2)
	require.Equal(t, "NEW-1", out[0].Code)
	require.EqualValues(t, 1, out[0].Amount)
	require.EqualValues(t, 3, out[0].Seq)
	require.Equal(t, "NEW-2", out[1].Code)
	require.EqualValues(t, 4, out[1].Seq)

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 4, got.GeneratedCount)
	require.EqualValues(t, 10+20+1+2, got.GeneratedAmount)

	// The skipped codes are unchanged.
	c, err := f.s.GetCode(f.ctx, "OLD-1")
	require.NoError(t, err)
	require.EqualValues(t, 10, c.Amount)
	require.EqualValues(t, 1, c.Seq)
	c, err = f.s.GetCode(f.ctx, "ELSEWHERE")
	require.NoError(t, err)
	require.Equal(t, other.ID, c.BatchID)
	require.EqualValues(t, 30, c.Amount)
}

// testAddCodesTotalExceeded: a call that would pass the total inserts
// nothing; filling the batch exactly is fine.
func testAddCodesTotalExceeded(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = 5 })
	f.addCodes(b, 3)

	tooMany := codes(3, 7)
	_, err := f.s.AddCodes(f.ctx, b.ID, tooMany)
	require.ErrorIs(t, err, store.ErrTotalExceeded)
	for _, c := range tooMany {
		_, err := f.s.GetCode(f.ctx, c.Code)
		require.ErrorIs(t, err, store.ErrNotFound, "no code of a refused call is inserted")
	}
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GeneratedCount)
	require.EqualValues(t, 100+101+102, got.GeneratedAmount)

	// Two of the three fit exactly.
	out, err := f.s.AddCodes(f.ctx, b.ID, tooMany[:2])
	require.NoError(t, err)
	require.Len(t, out, 2)
	require.EqualValues(t, 5, out[1].Seq)

	_, err = f.s.AddCodes(f.ctx, b.ID, tooMany[2:])
	require.ErrorIs(t, err, store.ErrTotalExceeded)
	got, err = f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 5, got.GeneratedCount)
	require.EqualValues(t, 100+101+102+7+7, got.GeneratedAmount)
	_, err = f.s.GetCode(f.ctx, tooMany[2].Code)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testAddCodesUnknownBatch(t *testing.T, f *fixture) {
	f.createBatch()
	c := codes(1, 10)
	_, err := f.s.AddCodes(f.ctx, f.id(), c)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.s.GetCode(f.ctx, c[0].Code)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testAddCodesConcurrent: 16 writers race to fill one batch; the generated
// count never passes the total and always equals the codes stored, and the
// sequence numbers are exactly 1..count.
func testAddCodesConcurrent(t *testing.T, f *fixture) {
	const (
		writers = 16
		chunks  = 8
		chunk   = 10
		total   = 1000 // less than writers × chunks × chunk
	)
	b := f.createBatch(func(b *coupon.Batch) { b.TotalQuantity = total })

	var (
		mu       sync.Mutex
		inserted []coupon.Code
		refused  int
		wg       sync.WaitGroup
		errs     = make(chan error, writers*chunks)
	)
	for w := range writers {
		wg.Go(func() {
			for k := range chunks {
				in := codes(chunk, int64(1+w))
				if k == 0 {
					in[0].Code = "SHARED-BY-ALL" // only one writer gets it in
				}
				out, err := f.s.AddCodes(f.ctx, b.ID, in)
				mu.Lock()
				switch {
				case err == nil:
					inserted = append(inserted, out...)
				case errors.Is(err, store.ErrTotalExceeded):
					refused++
				default:
					errs <- err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.LessOrEqual(t, got.GeneratedCount, int64(total))
	require.EqualValues(t, len(inserted), got.GeneratedCount)
	require.Positive(t, refused, "the writers asked for more than the total")
	require.Greater(t, got.GeneratedCount, int64(total-chunk), "a refusal happens only near the total")

	var amount int64
	seqs := make([]int64, len(inserted))
	for i, c := range inserted {
		amount += c.Amount
		seqs[i] = c.Seq
	}
	require.Equal(t, amount, got.GeneratedAmount)
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		require.EqualValues(t, i+1, s, "sequence numbers are 1..count without gaps or repeats")
	}

	// Every code row is one counted code.
	snap, err := f.s.Snapshot(f.ctx, b.ID)
	require.NoError(t, err)
	require.Len(t, snap.Pool, len(inserted))
	bySeq := make(map[int64]coupon.Code, len(inserted))
	for _, c := range inserted {
		bySeq[c.Seq] = c
	}
	for i, p := range snap.Pool {
		want := bySeq[int64(i+1)]
		require.Equal(t, store.PoolCode{Code: want.Code, Amount: want.Amount}, p, "pool in generation order")
	}
}

// testGetCode: the derived status, claim and issue time of a code.
func testGetCode(t *testing.T, f *fixture) {
	b := f.createBatch()
	cs, err := f.s.AddCodes(f.ctx, b.ID, []coupon.Code{
		{Code: "TAGGED", Amount: 300, Tags: map[string]string{"vip": "yes"}},
		{Code: "PLAIN", Amount: 301},
	})
	require.NoError(t, err)

	c, err := f.s.GetCode(f.ctx, "TAGGED")
	require.NoError(t, err)
	require.Equal(t, coupon.CodeUnclaimed, c.Status)
	require.Empty(t, c.ClaimID)
	require.Nil(t, c.IssuedAt)
	require.Equal(t, map[string]string{"vip": "yes"}, c.Tags)

	w := f.claim(b, cs[0], "u1", 1, "")
	w.Claim.ClaimedAt = time.Date(2031, 6, 1, 12, 0, 0, 555000, time.UTC)
	f.insert(w)

	c, err = f.s.GetCode(f.ctx, "TAGGED")
	require.NoError(t, err)
	require.Equal(t, coupon.CodeClaimed, c.Status)
	require.Equal(t, w.Claim.ID, c.ClaimID)
	require.NotNil(t, c.IssuedAt)
	require.Equal(t, w.Claim.ClaimedAt, *c.IssuedAt)
	requireUTC(t, *c.IssuedAt)
	require.EqualValues(t, 300, c.Amount)
	require.EqualValues(t, 1, c.Seq)

	c, err = f.s.GetCode(f.ctx, "PLAIN")
	require.NoError(t, err)
	require.Equal(t, coupon.CodeUnclaimed, c.Status, "claiming one code leaves the others unclaimed")
	require.Nil(t, c.Tags)

	_, err = f.s.GetCode(f.ctx, "NO-SUCH-CODE")
	require.ErrorIs(t, err, store.ErrNotFound)
}
