package enginetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// delayTests cover engine.DelayQueue. Times come from a clock of the test's
// own: the queue never reads the wall clock.
var delayTests = []struct {
	name string
	fn   func(t *testing.T, e engine.Engine)
}{
	{"Delay/FiresAtTime", testDelayFiresAtTime},
	{"Delay/Reschedule", testDelayReschedule},
	{"Delay/LeaseExpires", testDelayLeaseExpires},
	{"Delay/ConcurrentTakers", testDelayConcurrentTakers},
}

var delayBase = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func testDelayFiresAtTime(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	q := "q-" + newBatchID()
	at := delayBase.Add(time.Hour)
	require.NoError(t, e.Schedule(ctx, q, "b", at.Add(time.Second)))
	require.NoError(t, e.Schedule(ctx, q, "a", at))

	jobs, err := e.Take(ctx, q, at.Add(-time.Millisecond), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs, "not due a millisecond early")

	jobs, err = e.Take(ctx, q, at, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, "a", jobs[0].ID)
	require.True(t, at.Equal(jobs[0].At))
	require.True(t, at.Add(time.Minute).Equal(jobs[0].Lease))

	again, err := e.Take(ctx, q, at.Add(time.Second), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, again, 1, "a taken job is not handed out again during its lease")
	require.Equal(t, "b", again[0].ID)

	require.NoError(t, e.Done(ctx, q, jobs[0]))
	require.NoError(t, e.Done(ctx, q, again[0]))
	left, err := e.Take(ctx, q, at.Add(24*time.Hour), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, left, "done jobs are gone")
	require.NoError(t, e.Unschedule(ctx, q, "missing"))
}

func testDelayReschedule(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	q := "q-" + newBatchID()
	require.NoError(t, e.Schedule(ctx, q, "j", delayBase))
	require.NoError(t, e.Schedule(ctx, q, "j", delayBase.Add(time.Hour)), "moved, not added")
	jobs, err := e.Take(ctx, q, delayBase, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs)

	jobs, err = e.Take(ctx, q, delayBase.Add(time.Hour), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	// Scheduled again while taken: Done leaves the new schedule alone.
	require.NoError(t, e.Schedule(ctx, q, "j", delayBase.Add(2*time.Hour)))
	require.NoError(t, e.Done(ctx, q, jobs[0]))
	jobs, err = e.Take(ctx, q, delayBase.Add(2*time.Hour), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, "j", jobs[0].ID)

	require.NoError(t, e.Unschedule(ctx, q, "j"))
	jobs, err = e.Take(ctx, q, delayBase.Add(48*time.Hour), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs)
}

// testDelayLeaseExpires: a job taken and never done (its taker died) fires
// again once its lease has ended.
func testDelayLeaseExpires(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	q := "q-" + newBatchID()
	require.NoError(t, e.Schedule(ctx, q, "j", delayBase))
	jobs, err := e.Take(ctx, q, delayBase, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	jobs, err = e.Take(ctx, q, delayBase.Add(time.Minute-time.Millisecond), 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, jobs)
	jobs, err = e.Take(ctx, q, delayBase.Add(time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.True(t, delayBase.Add(time.Minute).Equal(jobs[0].At), "due at the end of the first lease")
}

// testDelayConcurrentTakers: of many takers polling at once, each job goes
// to exactly one.
func testDelayConcurrentTakers(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	q := "q-" + newBatchID()
	const n = 300
	for i := range n {
		require.NoError(t, e.Schedule(ctx, q, "j"+time.Duration(i).String(), delayBase.Add(time.Duration(i)*time.Millisecond)))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step := range 40 {
				now := delayBase.Add(time.Duration(step*10+w) * time.Millisecond)
				jobs, err := e.Take(ctx, q, now, 7, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, j := range jobs {
					seen[j.ID]++
				}
				mu.Unlock()
				for _, j := range jobs {
					if err := e.Done(ctx, q, j); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	jobs, err := e.Take(ctx, q, delayBase.Add(time.Hour), n, time.Hour)
	require.NoError(t, err)
	for _, j := range jobs {
		seen[j.ID]++
	}
	require.Len(t, seen, n)
	for id, c := range seen {
		require.Equal(t, 1, c, "job %s fired %d times", id, c)
	}
}
