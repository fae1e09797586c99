package app_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// An incremental batch of 200,000 codes, chunks of 5,000 generated when the
// pool falls below 1,000, with a split budget, claimed by three instances on
// PostgreSQL, Redis and NATS: exactly the total is claimed, none is refused
// as sold out before the last code, the generated count never passes the
// total, and the amounts sum to the budget.
func TestIncrementalBatchAcrossInstances(t *testing.T) {
	t.Parallel()
	d := deploy(t, 3)
	incrementalSale(t, d.apps, saleSize(20_000))
}

// The same on the embedded default: SQLite, the memory engine, one instance.
func TestIncrementalBatchEmbedded(t *testing.T) {
	t.Parallel()
	incrementalSale(t, []*app.App{boot(t, t.TempDir())}, saleSize(10_000))
}

// sale is the size of an incremental batch and of its generation.
type sale struct {
	total, chunk, lowWater, users int
}

// saleSize is 200,000 codes in chunks of 5,000 with a low-water mark of
// 1,000, claimed 100 per user. Under the race detector, which makes 200,000
// claims take many minutes on a small machine (SQLite, pure Go here, most
// of all), it is raceTotal codes with the same proportions — 40 chunks, a
// low-water mark of a fifth of a chunk — unless COUPOND_TEST_FULL_SALE=1.
func saleSize(raceTotal int) sale {
	if raceDetector && os.Getenv("COUPOND_TEST_FULL_SALE") != "1" {
		return sale{total: raceTotal, chunk: raceTotal / 40, lowWater: raceTotal / 200, users: raceTotal / 100}
	}
	return sale{total: 200_000, chunk: 5000, lowWater: 1000, users: 2000}
}

func incrementalSale(t *testing.T, apps []*app.App, size sale) {
	const parallel = 192
	var (
		total   = size.total
		users   = size.users
		perUser = total / users
		budget  = int64(7*total + 13)
	)
	c := newClient(t, apps[0])
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "incremental", "total_quantity": total, "per_user_limit": perUser,
		"validity":   map[string]any{"days": 7},
		"amount":     map[string]any{"type": "split", "budget": budget, "min": 1},
		"generation": map[string]any{"mode": "incremental", "chunk": size.chunk, "low_water": size.lowWater},
	})
	id := b["id"].(string)
	published := c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)
	first := float64(size.chunk)
	if published["generated_count"] != first || published["pool_depth"] != first || published["loaded_seq"] != first {
		t.Fatalf("published: generated %v, pool %v, loaded %v; want a first chunk of %d",
			published["generated_count"], published["pool_depth"], published["loaded_seq"], size.chunk)
	}

	// Watch the generated count while the claims run.
	ctx := context.Background()
	stop := make(chan struct{})
	var polls, highest atomic.Int64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			got, err := apps[len(apps)-1].Store.GetBatch(ctx, id)
			if err != nil {
				t.Errorf("poll: %v", err)
				return
			}
			polls.Add(1)
			if got.GeneratedCount > highest.Load() {
				highest.Store(got.GeneratedCount)
			}
			if got.GeneratedCount > int64(total) || got.GeneratedAmount > budget {
				t.Errorf("generated %d codes worth %d; the total is %d, the budget %d", got.GeneratedCount, got.GeneratedAmount, total, budget)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Exactly total claims, perUser from each user: every one must succeed.
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		amounts = make(map[string]int64, total)
		refused atomic.Int64
	)
	began := time.Now()
	for range parallel {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(total) || refused.Load() > 10 {
					return
				}
				a := apps[int(i)%len(apps)]
				cl, _, err := a.Service.Claim(ctx, service.ClaimRequest{
					BatchID: id, Claimant: coupon.Claimant{UserID: fmt.Sprintf("u%d", i%int64(users))},
				})
				if err != nil {
					refused.Add(1)
					t.Errorf("claim %d of %d refused: %v", i+1, total, err)
					continue
				}
				mu.Lock()
				if _, dup := amounts[cl.Code]; dup {
					t.Errorf("code %s handed out twice", cl.Code)
				}
				amounts[cl.Code] = cl.Amount
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	close(stop)
	<-watched
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d claims on %d instance(s) in %v (%.0f/s); generated count polled %d times",
		total, len(apps), took.Round(time.Millisecond), float64(total)/took.Seconds(), polls.Load())

	if len(amounts) != total {
		t.Fatalf("%d codes claimed, want %d", len(amounts), total)
	}
	var sum int64
	for _, a := range amounts {
		sum += a
	}
	if sum != budget {
		t.Fatalf("the claimed codes are worth %d, the budget is %d", sum, budget)
	}
	got, err := apps[0].Store.GetBatch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.GeneratedCount != int64(total) || got.GeneratedAmount != budget || highest.Load() > int64(total) {
		t.Fatalf("generated %d worth %d (highest seen %d); want %d worth %d", got.GeneratedCount, got.GeneratedAmount, highest.Load(), total, budget)
	}

	// Now, and only now, the batch is sold out, on every instance.
	for i, a := range apps {
		r := newClient(t, a).do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprintf("late-%d", i)})
		if r.status != 409 || r.body["code"] != "sold_out" {
			t.Fatalf("claim after the last code on instance %d: %d %s", i, r.status, r.raw)
		}
	}
	view := c.must(200, "GET", "/v1/batches/"+id, nil)
	for field, want := range map[string]float64{
		"generated_count": float64(total), "claimed_count": float64(total), "remaining_count": 0, "pool_depth": 0, "loaded_seq": float64(total),
	} {
		if view[field] != want {
			t.Errorf("batch view %s = %v, want %v", field, view[field], want)
		}
	}
	snap, err := apps[0].Store.Snapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for user, seqs := range snap.Users {
		if len(seqs) > perUser {
			t.Fatalf("user %s holds %d claims, limit %d", user, len(seqs), perUser)
		}
		held += len(seqs)
	}
	if held != total || len(snap.Pool) != 0 {
		t.Fatalf("the store holds %d claims and %d unclaimed codes; want %d and none", held, len(snap.Pool), total)
	}
}
