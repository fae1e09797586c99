package service_test

import (
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
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
