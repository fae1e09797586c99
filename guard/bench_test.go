package guard_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/telemetry"
)

// The guard's cost on the claim step of the in-memory engine (no timeout,
// as the app runs it): a breaker check, metrics, no spans.
func BenchmarkEngineGuardOnAClaim(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		guard bool
	}{{"bare", false}, {"guarded", true}} {
		b.Run(c.name, func(b *testing.B) {
			e := memory.New()
			pool := make([]engine.PoolCode, b.N)
			for i := range pool {
				pool[i] = engine.PoolCode{Code: "C" + strconv.Itoa(i), Amount: 1}
			}
			if err := e.Rebuild(ctx, engine.Snapshot{Batch: engine.BatchState{BatchID: "b", Active: true, PerUserLimit: 1}, Pool: pool}); err != nil {
				b.Fatal(err)
			}
			var eng engine.Engine = e
			if c.guard {
				m := telemetry.NewMetrics("bench")
				eng = guard.NewEngine(e, guard.EngineConfig{Metrics: m, Breaker: guard.NewBreaker(guard.BreakerConfig{Name: "engine", Metrics: m})})
			}
			users := make([]string, b.N)
			for i := range users {
				users[i] = "u" + strconv.Itoa(i)
			}
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := eng.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: users[i], ClaimID: users[i], At: now}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
