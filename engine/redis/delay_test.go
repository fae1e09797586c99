package redis_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/engine/redis/redistest"
)

// TestDelayQueueTwoInstances: two engines on connections of their own (two
// coupond instances) poll one queue at the same moments of an injected
// clock; every entry fires at its time, and on one of them only.
func TestDelayQueueTwoInstances(t *testing.T) {
	// One prefix: the two instances share the queue.
	cfg := redis.Config{URL: redistest.URL(t), Prefix: "cptest-" + coupon.NewID(time.Now())}
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()
	q := "two-" + coupon.NewID(time.Now())
	base := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 200
	for i := range n {
		require.NoError(t, a.Schedule(ctx, q, strconv.Itoa(i), base.Add(time.Duration(i)*time.Second)))
	}
	var mu sync.Mutex
	fired := map[string][]string{}
	var wg sync.WaitGroup
	for name, e := range map[string]*redis.Engine{"a": a, "b": b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < n; s++ {
				now := base.Add(time.Duration(s) * time.Second)
				jobs, err := e.Take(ctx, q, now, 100, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				for _, j := range jobs {
					if j.At.After(now) {
						t.Errorf("job %s due %s fired at %s", j.ID, j.At, now)
					}
					mu.Lock()
					fired[j.ID] = append(fired[j.ID], name)
					mu.Unlock()
					if err := e.Done(ctx, q, j); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, fired, n)
	on := map[string]int{}
	for id, by := range fired {
		require.Len(t, by, 1, "job %s fired on %v", id, by)
		on[by[0]]++
	}
	t.Logf("jobs fired per instance: %v", on)
}
