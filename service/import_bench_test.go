package service_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

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

// BenchmarkImport measures partner code lines imported per second: a CSV
// of COUPOND_BENCH_LINES lines (default 1,000,000; every tenth with a tag,
// every fifth with an amount) streamed through Service.ImportCodes into a
// live external batch, so each chunk of 5,000 is written to the store and
// loaded into the engine's pool. The file is produced as it is read (a
// pipe), never held whole; peak-heap-MB shows that memory stays flat.
// Run it with -benchtime=1x.
func BenchmarkImport(b *testing.B) {
	lines := int64(1_000_000)
	if s := os.Getenv("COUPOND_BENCH_LINES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			b.Fatalf("COUPOND_BENCH_LINES=%q: want a positive number", s)
		}
		lines = n
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
		b.Run("store="+be.name+"/lines="+strconv.FormatInt(lines, 10), func(b *testing.B) {
			st, eng := be.open(b)
			svc := service.New(service.Config{Store: st, Engine: eng})
			b.Cleanup(svc.Close)
			ctx := context.Background()
			s := spec(lines, 1)
			s.Source = coupon.SourceExternal
			for b.Loop() {
				v, err := svc.CreateBatch(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := svc.Transition(ctx, v.ID, coupon.Publish); err != nil {
					b.Fatal(err)
				}
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(writeCSV(pw, v.ID[20:], lines)) }()
				var peak uint64
				var ms runtime.MemStats
				t0 := time.Now()
				res, err := svc.ImportCodes(ctx, service.ImportRequest{BatchID: v.ID, Body: pr, Progress: func(service.ImportResult) {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}})
				if err != nil {
					b.Fatal(err)
				}
				el := time.Since(t0)
				if res.Imported != lines || res.Rejected != 0 {
					b.Fatalf("imported %d, rejected %d of %d", res.Imported, res.Rejected, lines)
				}
				stats, err := eng.Stats(ctx, v.ID)
				if err != nil || stats.PoolDepth != lines {
					b.Fatalf("pool %d of %d (%v)", stats.PoolDepth, lines, err)
				}
				b.ReportMetric(float64(lines)/el.Seconds(), "lines/s")
				b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
			}
		})
	}
}

// writeCSV writes n lines of partner codes unique to tag.
func writeCSV(w io.Writer, tag string, n int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := range n {
		var err error
		switch {
		case i%10 == 0:
			_, err = fmt.Fprintf(bw, "P%s-%08d,%d,src=partner\n", tag, i, 100+i%900)
		case i%5 == 0:
			_, err = fmt.Fprintf(bw, "P%s-%08d,%d\n", tag, i, 100+i%900)
		default:
			_, err = fmt.Fprintf(bw, "P%s-%08d\n", tag, i)
		}
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}
