package service_test

import (
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
)

// pageWriter records the size of each write an export makes.
type pageWriter struct {
	strings.Builder
	writes int
}

func (w *pageWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Builder.Write(p)
}

// TestExportStreamsEveryPage: an export of more claims than one store page
// (5,000) writes each page as it reads it, every claim once, newest first,
// and the same filters as the search apply; a client gone mid-export ends it.
func TestExportStreamsEveryPage(t *testing.T) {
	q := querySetup(t, memory.New())
	const n = 11_003
	b := q.batch(t, n, func(s *coupon.BatchSpec) { s.PerUserLimit = 50 })
	other := q.batch(t, 10)
	q.claim(t, other, "someone-else")
	work := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				_, _, err := q.svc.Claim(q.ctx, claimReq(b.ID, fmt.Sprint("ex-", i%250)))
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()

	var w pageWriter
	got, err := q.svc.ExportClaims(q.ctx, service.ClaimSearch{BatchID: b.ID}, &w)
	require.NoError(t, err)
	require.Equal(t, int64(n), got)
	require.GreaterOrEqual(t, w.writes, 3, "written page by page, not at the end")
	rows, err := csv.NewReader(strings.NewReader(w.String())).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, n+1)
	require.Equal(t, service.ClaimCSVHeader, rows[0])
	seen := map[string]bool{}
	for i, r := range rows[1:] {
		require.False(t, seen[r[0]], "claim %s twice", r[0])
		seen[r[0]] = true
		require.Equal(t, b.ID, r[1])
		if i > 0 {
			require.Less(t, r[0], rows[i][0], "newest first")
		}
	}

	// The filters of the search apply: one user's claims only.
	w = pageWriter{}
	got, err = q.svc.ExportClaims(q.ctx, service.ClaimSearch{UserID: "ex-7", Status: "available"}, &w)
	require.NoError(t, err)
	require.Equal(t, int64(44), got) // 11,003 claims over 250 users: users 0…2 have 45, the rest 44
	// A client gone: the write error ends the export.
	_, err = q.svc.ExportClaims(q.ctx, service.ClaimSearch{BatchID: b.ID}, failingWriter{})
	require.ErrorIs(t, err, io.ErrClosedPipe)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// archivingWriter archives a chunk of claims on every write of an export,
// so that archival runs between (and during) its pages.
type archivingWriter struct {
	strings.Builder
	t      *testing.T
	q      *qEnv
	before time.Time
	moved  int
}

func (w *archivingWriter) Write(p []byte) (int, error) {
	res, err := w.q.svc.ArchiveClaims(w.q.ctx, w.before, 5)
	require.NoError(w.t, err)
	w.moved += res.Moved
	return w.Builder.Write(p)
}

// TestExportReachesTheArchive: an export reads hot and archived claims as
// one list; while the archiver moves claims between (and during) its pages,
// every claim is written once, newest first.
func TestExportReachesTheArchive(t *testing.T) {
	q := querySetup(t, memory.New())
	const n, perUser = 10_500, 50
	b := q.batch(t, n, func(s *coupon.BatchSpec) { s.PerUserLimit = perUser })
	pool, err := q.store.UnclaimedCodes(q.ctx, b.ID, 0, n)
	require.NoError(t, err)
	require.Len(t, pool, n)
	start := q.clock.Now().Add(-100 * 24 * time.Hour)
	var writes []store.ClaimWrite
	for i, code := range pool {
		at := start.Add(time.Duration(i) * time.Second)
		c := coupon.NewClaim(b, coupon.NewID(at), coupon.Claimant{UserID: fmt.Sprint("arc-", i/perUser)}, code.Code, code.Amount, i%perUser+1, "", at)
		c.Status = coupon.ClaimUsed
		writes = append(writes, store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: []byte(`{}`)}})
	}
	for i := 0; i < n; i += 500 {
		for _, err := range q.store.InsertClaims(q.ctx, writes[i:min(i+500, n)]) {
			require.NoError(t, err)
		}
	}
	// A first part is archived before the export starts.
	res, err := q.svc.ArchiveClaims(q.ctx, q.clock.Now(), 1000)
	require.NoError(t, err)
	require.Equal(t, 1000, res.Moved)

	w := &archivingWriter{t: t, q: q, before: q.clock.Now()}
	got, err := q.svc.ExportClaims(q.ctx, service.ClaimSearch{BatchID: b.ID}, w)
	require.NoError(t, err)
	require.Equal(t, int64(n), got)
	require.Positive(t, w.moved, "claims moved while the export ran")
	require.Less(t, w.moved, n-1000, "the boundary moved across the export, it did not finish first")
	rows, err := csv.NewReader(strings.NewReader(w.String())).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, n+1)
	for i, r := range rows[1:] {
		if i > 0 {
			require.Less(t, r[0], rows[i][0], "newest first, each once")
		}
		require.Equal(t, "used", r[6])
	}
	// The search's pages agree.
	var paged []string
	q2 := service.ClaimSearch{BatchID: b.ID, Limit: 100}
	for {
		cs, next, err := q.svc.SearchClaims(q.ctx, q2)
		require.NoError(t, err)
		for _, c := range cs {
			paged = append(paged, c.ID)
		}
		if next == "" {
			break
		}
		q2.Cursor = next
		_, err = q.svc.ArchiveClaims(q.ctx, q.clock.Now(), 150)
		require.NoError(t, err)
	}
	require.Len(t, paged, n)
}
