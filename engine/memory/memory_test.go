package memory_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/enginetest"
	"github.com/coupond/coupond/engine/memory"
)

func TestEngine(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) engine.Engine {
		e := memory.New()
		t.Cleanup(func() { _ = e.Close() })
		return e
	})
}

// Sizes of the benchmarks: one hot batch, many users, a pool refilled in
// chunks as a replenisher would.
const (
	benchUsers = 10_000
	benchKeys  = 4096 // with benchUsers, 40 million distinct (user, key) pairs
	benchChunk = 4096
)

var benchUserIDs, benchKeyIDs = names("u", benchUsers), names("k", benchKeys)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// benchBatch loads a batch with no effective per-user limit, so that every
// claim takes a code and the benchmark measures the full claim step.
func benchBatch(b *testing.B) (*memory.Engine, []engine.PoolCode) {
	b.Helper()
	chunk := make([]engine.PoolCode, benchChunk)
	for i := range chunk {
		chunk[i] = engine.PoolCode{Code: "B" + strconv.Itoa(i), Amount: 100}
	}
	e := memory.New()
	if err := e.Rebuild(context.Background(), engine.Snapshot{
		Batch: engine.BatchState{BatchID: "hot", Active: true, PerUserLimit: math.MaxInt32},
		Pool:  chunk,
	}); err != nil {
		b.Fatal(err)
	}
	return e, chunk
}

// settleEvery is how many claims a benchmark caller settles at once, as a
// group commit would; without Settle the pending claims would pile up.
const settleEvery = 64

// BenchmarkClaim measures one claim of the hot batch from parallel callers,
// with its share of a Settle; with-key also remembers an idempotency key per
// claim (the keys are made before the timer starts, so their allocations are
// not counted).
func BenchmarkClaim(b *testing.B) {
	for _, withKey := range []bool{false, true} {
		name := "no-key"
		if withKey {
			name = "with-key"
		}
		b.Run(name, func(b *testing.B) {
			e, chunk := benchBatch(b)
			ctx := context.Background()
			var n atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				settle := make([]string, 0, settleEvery)
				for pb.Next() {
					i := n.Add(1)
					p := engine.ClaimParams{BatchID: "hot", UserID: benchUserIDs[i%benchUsers], ClaimID: "c"}
					if withKey {
						p.IdempotencyKey = benchKeyIDs[i/benchUsers%benchKeys]
					}
					for {
						r, err := e.Claim(ctx, p)
						if errors.Is(err, engine.ErrSoldOut) {
							if err := refill(ctx, e, "hot", chunk); err != nil {
								b.Error(err)
								return
							}
							continue
						}
						if err != nil || r.Replayed {
							b.Errorf("claim: %v (replayed %t)", err, r.Replayed)
							return
						}
						settle = append(settle, r.Code)
						break
					}
					if len(settle) == settleEvery {
						if err := e.Settle(ctx, "hot", settle); err != nil {
							b.Error(err)
							return
						}
						settle = settle[:0]
					}
				}
			})
		})
	}
}

// BenchmarkClaimUndo measures a claim and its undo, with an idempotency key,
// from parallel callers: the path of a claim whose store commit failed.
func BenchmarkClaimUndo(b *testing.B) {
	e, _ := benchBatch(b)
	ctx := context.Background()
	var n atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			user, key := benchUserIDs[i%benchUsers], benchKeyIDs[i/benchUsers%benchKeys]
			r, err := e.Claim(ctx, engine.ClaimParams{BatchID: "hot", UserID: user, IdempotencyKey: key, ClaimID: "c"})
			if err != nil || r.Replayed {
				b.Errorf("claim: %v (replayed %t)", err, r.Replayed)
				return
			}
			if err := e.Undo(ctx, engine.UndoParams{
				BatchID: "hot", UserID: user, IdempotencyKey: key, Code: r.Code, Amount: r.Amount, Seq: r.Seq,
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// refill loads more codes after the batch's LoadedSeq; a loader that lost
// the race to another leaves it at that.
func refill(ctx context.Context, e engine.Engine, batchID string, codes []engine.PoolCode) error {
	st, err := e.Stats(ctx, batchID)
	if err != nil {
		return err
	}
	err = e.AddCodes(ctx, batchID, st.LoadedSeq, st.LoadedSeq+int64(len(codes)), codes)
	if errors.Is(err, engine.ErrStaleLoad) {
		return nil
	}
	return err
}
