package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

func TestMain(m *testing.M) {
	code := m.Run()
	loaded.remove()
	os.Exit(code)
}

var benchGroups = []int{1, 16, 256}

// BenchmarkInsertClaims measures the group commit of claims with their
// events, at three group sizes, into an empty database.
func BenchmarkInsertClaims(b *testing.B) {
	for _, group := range benchGroups {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			s := open(b, sqlite.Config{})
			batch := benchBatch()
			require.NoError(b, s.CreateBatch(context.Background(), batch))
			// Codes for every claim the benchmark will make, added up front.
			pool := addBenchCodes(b, s, batch, b.N*group)
			benchInsertClaims(b, s, batch, pool, group)
		})
	}
}

// BenchmarkInsertClaimsLoaded is BenchmarkInsertClaims into a database that
// holds 300,000 codes and 50,000 claims already, as in a sale under way, so
// that the indexes are deep and far larger than the writer's page cache.
// The database is built once per process and copied for each run.
func BenchmarkInsertClaimsLoaded(b *testing.B) {
	fx := loaded.get(b)
	for _, group := range benchGroups {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			if n := b.N * group; n > len(fx.pool) {
				b.Fatalf("%d claims asked for; the fixture has %d unclaimed codes: lower -benchtime", n, len(fx.pool))
			}
			path := filepath.Join(b.TempDir(), "coupond.db")
			copyFile(b, fx.path, path)
			s := open(b, sqlite.Config{Path: path})
			benchInsertClaims(b, s, fx.batch, fx.pool, group)
		})
	}
}

var benchNow = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

func benchBatch() *coupon.Batch {
	return &coupon.Batch{
		ID: coupon.NewID(benchNow),
		BatchSpec: coupon.BatchSpec{
			Name: "bench", Type: coupon.TypeCash, TotalQuantity: coupon.MaxTotalQuantity, PerUserLimit: 1,
			Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
			UsagePlatforms: []string{"ios", "android"},
		},
		Status: coupon.StatusActive, CreatedAt: benchNow, UpdatedAt: benchNow,
	}
}

// addBenchCodes adds n fresh codes to batch and returns them.
func addBenchCodes(b *testing.B, s *sqlite.Store, batch *coupon.Batch, n int) []store.PoolCode {
	ctx := context.Background()
	for added := 0; added < n; {
		chunk := make([]coupon.Code, min(10_000, n-added))
		for i := range chunk {
			chunk[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 500}
		}
		out, err := s.AddCodes(ctx, batch.ID, chunk)
		require.NoError(b, err)
		added += len(out)
	}
	snap, err := s.Snapshot(ctx, batch.ID)
	require.NoError(b, err)
	return snap.Pool
}

// benchInsertClaims times b.N calls of InsertClaims with group claims each,
// on the codes of pool in order. Besides the wall time it reports the CPU
// time of the process per call, which other work on a shared machine
// disturbs much less.
func benchInsertClaims(b *testing.B, s *sqlite.Store, batch *coupon.Batch, pool []store.PoolCode, group int) {
	ctx := context.Background()
	writes := make([]store.ClaimWrite, group)
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range writes {
			p := pool[i*group+j]
			id := coupon.NewID(benchNow)
			c := coupon.NewClaim(batch, id, coupon.Claimant{UserID: "user-" + id, Platform: "ios"}, p.Code, p.Amount, 1, "", benchNow)
			payload, _ := json.Marshal(struct {
				ClaimID string `json:"claim_id"`
				Code    string `json:"code"`
			}{id, p.Code})
			writes[j] = store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: id, Payload: payload, CreatedAt: benchNow}}
		}
		for _, err := range s.InsertClaims(ctx, writes) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if cpu >= 0 {
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	}
	b.ReportMetric(float64(b.N*group)/b.Elapsed().Seconds(), "claims/s")
}

// loaded is the fixture of BenchmarkInsertClaimsLoaded.
var loaded loadedFixture

type loadedFixture struct {
	once  sync.Once
	dir   string
	path  string
	batch *coupon.Batch
	pool  []store.PoolCode // the unclaimed codes, in generation order
	err   error
}

const (
	loadedCodes  = 300_000
	loadedClaims = 50_000
)

func (f *loadedFixture) get(b *testing.B) *loadedFixture {
	f.once.Do(func() { f.err = f.build() })
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f
}

// build writes the fixture's database with the store itself: the codes,
// then claims of the first of them in groups of 256, their events
// published, as the relay would have.
func (f *loadedFixture) build() error {
	ctx := context.Background()
	var err error
	if f.dir, err = os.MkdirTemp("", "coupond-bench-"); err != nil {
		return err
	}
	f.path = filepath.Join(f.dir, "coupond.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: f.path, Synchronous: "normal"})
	if err != nil {
		return err
	}
	defer s.Close()
	f.batch = benchBatch()
	if err := s.CreateBatch(ctx, f.batch); err != nil {
		return err
	}
	for added := 0; added < loadedCodes; {
		chunk := make([]coupon.Code, min(10_000, loadedCodes-added))
		for i := range chunk {
			chunk[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 500}
		}
		out, err := s.AddCodes(ctx, f.batch.ID, chunk)
		if err != nil {
			return err
		}
		added += len(out)
	}
	snap, err := s.Snapshot(ctx, f.batch.ID)
	if err != nil {
		return err
	}
	at := benchNow.Add(-time.Hour)
	for start := 0; start < loadedClaims; start += 256 {
		writes := make([]store.ClaimWrite, 0, 256)
		for _, p := range snap.Pool[start:min(start+256, loadedClaims)] {
			id := coupon.NewID(at)
			c := coupon.NewClaim(f.batch, id, coupon.Claimant{UserID: "user-" + id, Platform: "ios"}, p.Code, p.Amount, 1, "", at)
			writes = append(writes, store.ClaimWrite{Claim: c, Event: store.Event{
				Type: "claim.created", AggregateID: id, Payload: json.RawMessage(`{}`), CreatedAt: at,
			}})
		}
		for _, err := range s.InsertClaims(ctx, writes) {
			if err != nil {
				return err
			}
		}
	}
	for {
		events, err := s.PendingEvents(ctx, 1000)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			break
		}
		ids := make([]int64, len(events))
		for i, e := range events {
			ids[i] = e.ID
		}
		if err := s.MarkPublished(ctx, ids, at); err != nil {
			return err
		}
	}
	f.pool = snap.Pool[loadedClaims:]
	return s.Close() // checkpoints the WAL into the file that is copied
}

func (f *loadedFixture) remove() {
	if f.dir != "" {
		_ = os.RemoveAll(f.dir)
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	in, err := os.Open(from)
	require.NoError(tb, err)
	defer in.Close()
	out, err := os.Create(to)
	require.NoError(tb, err)
	_, err = io.Copy(out, in)
	require.NoError(tb, err)
	require.NoError(tb, out.Close())
}
