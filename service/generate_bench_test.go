package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/postgres"
	"github.com/coupond/coupond/store/sqlite"
)

// BenchmarkGenerate measures codes generated, persisted and loaded into the
// engine per second: SQLite with the memory engine (the embedded default),
// PostgreSQL with Redis (production). Each iteration generates a fresh
// batch of COUPOND_BENCH_CODES codes (default 1,000,000) with a split
// budget:
//
//   - full: publishing writes every code, 10,000 a transaction, then the
//     engine loads the pool in one rebuild;
//   - incremental: publishing writes a first chunk of 10,000, then
//     Replenish writes and loads the rest chunk by chunk, as the replenisher
//     does when claims keep the pool below its low-water mark (an engine
//     that reports the pool empty stands in for the claims).
//
// Run it with -benchtime=1x: one batch is the measure.
func BenchmarkGenerate(b *testing.B) {
	codes := int64(1_000_000)
	if s := os.Getenv("COUPOND_BENCH_CODES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > coupon.MaxFullTotalQuantity {
			b.Fatalf("COUPOND_BENCH_CODES=%q: want 1 to %d", s, coupon.MaxFullTotalQuantity)
		}
		codes = n
	}
	backends := []struct {
		name string
		open func(b *testing.B) (store.Store, engine.Engine)
	}{
		{"sqlite+memory", func(b *testing.B) (store.Store, engine.Engine) {
			st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "c.db")})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			return st, memory.New()
		}},
		{"postgres+redis", func(b *testing.B) (store.Store, engine.Engine) {
			ctx := context.Background()
			st, err := postgres.Open(ctx, postgres.Config{URL: backendtest.PostgresSchema(b)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			srv := backendtest.RedisServer(b)
			eng, err := redis.Open(ctx, redis.Config{URL: "redis://" + srv.Addr() + "/0"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = eng.Close() })
			return st, eng
		}},
	}
	for _, be := range backends {
		for _, mode := range []coupon.GenerationMode{coupon.GenerationFull, coupon.GenerationIncremental} {
			b.Run("store="+be.name+"/mode="+string(mode)+"/codes="+strconv.FormatInt(codes, 10), func(b *testing.B) {
				st, eng := be.open(b)
				svc := service.New(service.Config{Store: st, Engine: emptyPool{eng}})
				b.Cleanup(svc.Close)
				ctx := context.Background()
				s := spec(codes, 1)
				s.Amount = coupon.AmountSpec{Type: coupon.AmountSplit, Budget: 500 * codes, Min: 1}
				s.Generation = coupon.Generation{Mode: mode}
				if mode == coupon.GenerationIncremental {
					s.Generation.Chunk, s.Generation.LowWater = coupon.DefaultChunk, 1000
				}
				b.ResetTimer()
				for range b.N {
					v, err := svc.CreateBatch(ctx, s)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := svc.Transition(ctx, v.ID, coupon.Publish); err != nil {
						b.Fatal(err)
					}
					if _, err := svc.Replenish(ctx, v.ID); err != nil {
						b.Fatal(err)
					}
					got, err := st.GetBatch(ctx, v.ID)
					if err != nil {
						b.Fatal(err)
					}
					if got.GeneratedCount != codes || got.GeneratedAmount != s.Amount.Budget {
						b.Fatalf("generated %d codes worth %d, want %d worth %d", got.GeneratedCount, got.GeneratedAmount, codes, s.Amount.Budget)
					}
				}
				b.ReportMetric(float64(codes)*float64(b.N)/b.Elapsed().Seconds(), "codes/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// emptyPool is an engine whose Stats report an empty pool, as when claims
// take every code as soon as it is loaded.
type emptyPool struct{ engine.Engine }

func (e emptyPool) Stats(ctx context.Context, batchID string) (engine.BatchStats, error) {
	st, err := e.Engine.Stats(ctx, batchID)
	st.PoolDepth = 0
	return st, err
}
