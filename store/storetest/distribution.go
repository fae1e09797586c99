package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var distributionTests = []struct {
	name string
	fn   func(t *testing.T, f *fixture)
}{
	{"Distribution/Import", testImportCodes},
	{"Distribution/ImportFull", testImportCodesFull},
	{"Distribution/ImportConcurrent", testImportCodesConcurrent},
	{"Distribution/ImportUnknownBatch", testImportCodesUnknownBatch},
	{"Distribution/ImportVersion", testImportCodesVersion},
	{"Distribution/GrantJob", testGrantJob},
	{"Distribution/GrantJobMoved", testGrantJobMoved},
	{"Distribution/GrantJobStatus", testGrantJobStatus},
}

func importCodes(lines ...string) []store.ImportCode {
	out := make([]store.ImportCode, len(lines))
	for i, c := range lines {
		out[i] = store.ImportCode{Code: c, Amount: int64(100 + i), Line: int64(i + 1)}
	}
	return out
}

func testImportCodes(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Source = coupon.SourceExternal })
	other := f.createBatch()
	generated := f.addCodes(other, 1)[0]

	in := importCodes("P-1", "P-2", "P-1", generated.Code, "P-3")
	in[1].Tags = map[string]string{"partner": "acme", "tier": "gold"}
	out, err := f.s.ImportCodes(f.ctx, b.ID, 0, in)
	require.NoError(t, err)
	require.Equal(t, []store.ImportOutcome{
		{Status: store.ImportInserted, Seq: 1},
		{Status: store.ImportInserted, Seq: 2},
		{Status: store.ImportRepeated, Line: 1},
		{Status: store.ImportExists, BatchID: other.ID},
		{Status: store.ImportInserted, Seq: 3},
	}, out)

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GeneratedCount)
	require.EqualValues(t, 100+101+104, got.GeneratedAmount)
	c, err := f.s.GetCode(f.ctx, "P-2")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"partner": "acme", "tier": "gold"}, c.Tags)
	require.EqualValues(t, 2, c.Seq)
	require.Equal(t, b.ID, c.BatchID)

	// The same file again adds nothing, and says where each code came from.
	out, err = f.s.ImportCodes(f.ctx, b.ID, 0, in)
	require.NoError(t, err)
	require.Equal(t, []store.ImportOutcome{
		{Status: store.ImportExists, BatchID: b.ID, Line: 1},
		{Status: store.ImportExists, BatchID: b.ID, Line: 2},
		{Status: store.ImportExists, BatchID: b.ID, Line: 1},
		{Status: store.ImportExists, BatchID: other.ID},
		{Status: store.ImportExists, BatchID: b.ID, Line: 5},
	}, out)
	got, err = f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GeneratedCount)

	pool, err := f.s.UnclaimedCodes(f.ctx, b.ID, 0, 3)
	require.NoError(t, err)
	require.Equal(t, []store.PoolCode{{Code: "P-1", Amount: 100}, {Code: "P-2", Amount: 101}, {Code: "P-3", Amount: 104}}, pool)

	_, err = f.s.ImportCodes(f.ctx, b.ID, 0, []store.ImportCode{{Code: "P-9", Amount: 0, Line: 1}})
	require.Error(t, err, "an amount below 1")
}

func testImportCodesFull(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Source = coupon.SourceExternal; b.TotalQuantity = 3 })
	_, err := f.s.ImportCodes(f.ctx, b.ID, 0, importCodes("A1", "A2"))
	require.NoError(t, err)
	out, err := f.s.ImportCodes(f.ctx, b.ID, 0, importCodes("A1", "B2", "B3", "B2"))
	require.NoError(t, err)
	require.Equal(t, []store.ImportOutcome{
		{Status: store.ImportExists, BatchID: b.ID, Line: 1},
		{Status: store.ImportInserted, Seq: 3},
		{Status: store.ImportFull},
		{Status: store.ImportRepeated, Line: 2},
	}, out)
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GeneratedCount)
}

// testImportCodesConcurrent imports overlapping files into two batches at
// once: every code lands in one batch, numbered without holes, and no
// batch passes its total.
func testImportCodesConcurrent(t *testing.T, f *fixture) {
	const n = 200
	b1 := f.createBatch(func(b *coupon.Batch) { b.Source = coupon.SourceExternal; b.TotalQuantity = 1000 })
	b2 := f.createBatch(func(b *coupon.Batch) { b.Source = coupon.SourceExternal; b.TotalQuantity = 150 })
	var wg sync.WaitGroup
	inserted := make([]int, 4)
	for w := range 4 {
		wg.Go(func() {
			batch := []string{b1.ID, b2.ID}[w%2]
			for chunk := 0; chunk < n; chunk += 20 {
				lines := make([]string, 20)
				for i := range lines {
					lines[i] = fmt.Sprintf("C%04d", (chunk+i+w*37)%n)
				}
				out, err := f.s.ImportCodes(f.ctx, batch, 0, importCodes(lines...))
				if !assertNoError(t, err) {
					return
				}
				for _, o := range out {
					if o.Status == store.ImportInserted {
						inserted[w]++
					}
				}
			}
		})
	}
	wg.Wait()
	g1, err := f.s.GetBatch(f.ctx, b1.ID)
	require.NoError(t, err)
	g2, err := f.s.GetBatch(f.ctx, b2.ID)
	require.NoError(t, err)
	require.LessOrEqual(t, g2.GeneratedCount, int64(150))
	require.EqualValues(t, n, g1.GeneratedCount+g2.GeneratedCount, "each code in exactly one batch")
	require.EqualValues(t, n, inserted[0]+inserted[1]+inserted[2]+inserted[3])
	for _, g := range []*coupon.Batch{g1, g2} {
		pool, err := f.s.UnclaimedCodes(f.ctx, g.ID, 0, g.GeneratedCount)
		require.NoError(t, err)
		require.Len(t, pool, int(g.GeneratedCount), "sequence numbers without holes")
	}
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// testImportCodesVersion: an import made for a version of a draft that an
// edit has moved on is refused and adds nothing; for the version the batch
// is at, or for any (0), it goes in.
func testImportCodesVersion(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Source, b.Status = coupon.SourceExternal, coupon.StatusDraft })
	_, err := f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: b.ID, Spec: b.BatchSpec, Version: 1, At: base.Add(time.Minute)})
	require.NoError(t, err)
	_, err = f.s.ImportCodes(f.ctx, b.ID, 1, importCodes("V-1", "V-2"))
	require.ErrorIs(t, err, store.ErrVersion)
	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 0, got.GeneratedCount, "a refused import adds nothing")
	require.EqualValues(t, 2, got.Version)

	out, err := f.s.ImportCodes(f.ctx, b.ID, 2, importCodes("V-1"))
	require.NoError(t, err)
	require.Equal(t, store.ImportInserted, out[0].Status)
	out, err = f.s.ImportCodes(f.ctx, b.ID, 0, importCodes("V-2"))
	require.NoError(t, err)
	require.Equal(t, store.ImportInserted, out[0].Status)
}

func testImportCodesUnknownBatch(t *testing.T, f *fixture) {
	_, err := f.s.ImportCodes(f.ctx, f.id(), 0, importCodes("X1"))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func (f *fixture) grantJob(b *coupon.Batch, users ...string) *store.GrantJob {
	f.t.Helper()
	j := &store.GrantJob{ID: f.id(), BatchID: b.ID, Channel: "crm", CreatedAt: base}
	require.NoError(f.t, f.s.CreateGrantJob(f.ctx, j))
	gu := make([]store.GrantUser, len(users))
	for i, u := range users {
		gu[i] = store.GrantUser{Line: int64(i + 1), UserID: u}
	}
	require.NoError(f.t, f.s.AddGrantUsers(f.ctx, j.ID, gu))
	return j
}

func testGrantJob(t *testing.T, f *fixture) {
	b := f.createBatch()
	j := f.grantJob(b, "u1", "u2", "u3")
	require.Equal(t, store.JobUploading, j.Status)
	require.Equal(t, "m1", j.MerchantID)
	// An upload retried from line 2 keeps what is stored.
	require.NoError(t, f.s.AddGrantUsers(f.ctx, j.ID, []store.GrantUser{{Line: 2, UserID: "other"}, {Line: 3, UserID: "u3"}, {Line: 4, UserID: "u4"}}))
	pending, err := f.s.PendingGrantJobs(f.ctx, 0)
	require.NoError(t, err)
	require.Empty(t, pending, "an uploading job is not ready")

	sealed, err := f.s.SealGrantJob(f.ctx, j.ID, base.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, store.JobPending, sealed.Status)
	require.EqualValues(t, 4, sealed.Total)
	require.EqualValues(t, 4, sealed.LastLine)
	pending, err = f.s.PendingGrantJobs(f.ctx, 0)
	require.NoError(t, err)
	require.Equal(t, []string{j.ID}, pending)

	users, err := f.s.GrantUsers(f.ctx, j.ID, 1, 2)
	require.NoError(t, err)
	require.Equal(t, []store.GrantUser{{Line: 2, UserID: "u2"}, {Line: 3, UserID: "u3"}}, users)

	got, err := f.s.AdvanceGrantJob(f.ctx, store.AdvanceGrantJob{JobID: j.ID, From: 0, To: 2, Done: 1,
		Failures: []store.GrantFailure{{Line: 2, UserID: "u2", Code: "limit_reached", Reason: "the user holds the limit"}},
		At:       base.Add(2 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, store.JobPending, got.Status)
	require.EqualValues(t, 2, got.Position)
	require.EqualValues(t, 1, got.Done)
	require.EqualValues(t, 1, got.Failed)

	got, err = f.s.AdvanceGrantJob(f.ctx, store.AdvanceGrantJob{JobID: j.ID, From: 2, To: 4, Done: 2, At: base.Add(3 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, store.JobDone, got.Status)
	require.Equal(t, base.Add(3*time.Second), got.FinishedAt)
	require.EqualValues(t, 3, got.Done)
	pending, err = f.s.PendingGrantJobs(f.ctx, 0)
	require.NoError(t, err)
	require.Empty(t, pending)

	fails, err := f.s.GrantFailures(f.ctx, j.ID, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []store.GrantFailure{{Line: 2, UserID: "u2", Code: "limit_reached", Reason: "the user holds the limit"}}, fails)

	again, err := f.s.GetGrantJob(f.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, got, again)
}

func testGrantJobMoved(t *testing.T, f *fixture) {
	b := f.createBatch()
	j := f.grantJob(b, "u1", "u2")
	_, err := f.s.SealGrantJob(f.ctx, j.ID, base)
	require.NoError(t, err)
	_, err = f.s.AdvanceGrantJob(f.ctx, store.AdvanceGrantJob{JobID: j.ID, From: 0, To: 1, Done: 1, At: base})
	require.NoError(t, err)
	// A worker that read position 0 before: refused, nothing counted.
	_, err = f.s.AdvanceGrantJob(f.ctx, store.AdvanceGrantJob{JobID: j.ID, From: 0, To: 1, Done: 1,
		Failures: []store.GrantFailure{{Line: 1, UserID: "u1", Code: "x", Reason: "y"}}, At: base})
	require.ErrorIs(t, err, store.ErrJobMoved)
	got, err := f.s.GetGrantJob(f.ctx, j.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Done)
	require.EqualValues(t, 0, got.Failed)
	_, err = f.s.AdvanceGrantJob(f.ctx, store.AdvanceGrantJob{JobID: f.id(), From: 0, To: 1, At: base})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testGrantJobStatus(t *testing.T, f *fixture) {
	b := f.createBatch()
	err := f.s.CreateGrantJob(f.ctx, &store.GrantJob{ID: f.id(), BatchID: f.id(), CreatedAt: base})
	require.ErrorIs(t, err, store.ErrNotFound)
	j := f.grantJob(b, "u1")
	require.ErrorIs(t, f.s.CreateGrantJob(f.ctx, &store.GrantJob{ID: j.ID, BatchID: b.ID, CreatedAt: base}), coupon.ErrConflict)
	_, err = f.s.SealGrantJob(f.ctx, j.ID, base)
	require.NoError(t, err)
	_, err = f.s.SealGrantJob(f.ctx, j.ID, base)
	require.ErrorIs(t, err, store.ErrStatus)
	require.ErrorIs(t, f.s.AddGrantUsers(f.ctx, j.ID, []store.GrantUser{{Line: 2, UserID: "late"}}), store.ErrStatus)
	_, err = f.s.GetGrantJob(f.ctx, f.id())
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, f.s.AddGrantUsers(f.ctx, f.id(), nil), store.ErrNotFound)
}
