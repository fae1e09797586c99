package worker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/worker"
)

func distService(t *testing.T) (*service.Service, store.Store, *memory.Engine) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "coupond.db"), Synchronous: "normal"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	eng := memory.New()
	svc := service.New(service.Config{Store: st, Engine: eng})
	t.Cleanup(svc.Close)
	return svc, st, eng
}

func publishBatch(t *testing.T, svc *service.Service, spec coupon.BatchSpec) string {
	t.Helper()
	v, err := svc.CreateBatch(t.Context(), spec)
	require.NoError(t, err)
	_, err = svc.Transition(t.Context(), v.ID, coupon.Publish)
	require.NoError(t, err)
	return v.ID
}

func batchSpec(total int64, limit int) coupon.BatchSpec {
	return coupon.BatchSpec{Name: "grants", TotalQuantity: total, PerUserLimit: limit,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 300}}
}

// TestJobRunnerStoppedMidJobIsResumedByAnother stops the runner of a bulk
// grant job in the middle and starts another (a second instance on the
// same store and engine): the job ends with each user granted exactly once.
func TestJobRunnerStoppedMidJobIsResumedByAnother(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, st, eng := distService(t)
	const users = 3000
	id := publishBatch(t, svc, batchSpec(users, 1))
	var list strings.Builder
	for i := range users {
		fmt.Fprintf(&list, "u%05d\n", i)
	}
	j, err := svc.CreateGrantJob(ctx, service.GrantJobRequest{BatchID: id, Users: strings.NewReader(list.String())})
	require.NoError(t, err)

	first := worker.NewJobRunner(worker.JobRunnerConfig{Service: svc, Locker: eng, Interval: 10 * time.Millisecond})
	require.NoError(t, first.Start(ctx))
	require.Eventually(t, func() bool {
		v, err := svc.GetJob(ctx, j.ID, 0, 0)
		return err == nil && v.Done >= 400
	}, 20*time.Second, time.Millisecond)
	first.Stop()
	mid, err := svc.GetJob(ctx, j.ID, 0, 0)
	require.NoError(t, err)
	require.Equal(t, store.JobPending, mid.Status, "stopped half-way")

	second := worker.NewJobRunner(worker.JobRunnerConfig{Service: svc, Locker: eng, Interval: 10 * time.Millisecond})
	require.NoError(t, second.Start(ctx))
	t.Cleanup(second.Stop)
	require.Eventually(t, func() bool {
		v, err := svc.GetJob(ctx, j.ID, 0, 0)
		return err == nil && v.Status == store.JobDone
	}, 60*time.Second, 10*time.Millisecond)
	v, err := svc.GetJob(ctx, j.ID, 0, 0)
	require.NoError(t, err)
	require.EqualValues(t, users, v.Done)
	require.EqualValues(t, 0, v.Failed)
	require.EqualValues(t, 0, v.Remaining)
	n, err := st.ClaimedCount(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, users, n)
}

// TestJobRunnerWaitsForACrashedRunnersLease: a job whose lease a dead
// instance holds is taken over once the lease expires.
func TestJobRunnerWaitsForACrashedRunnersLease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, _, eng := distService(t)
	id := publishBatch(t, svc, batchSpec(10, 1))
	j, err := svc.CreateGrantJob(ctx, service.GrantJobRequest{BatchID: id, Users: strings.NewReader("a\nb\nc\n")})
	require.NoError(t, err)
	_, ok, err := eng.Lock(ctx, "job:"+j.ID, 300*time.Millisecond) // the dead runner's
	require.NoError(t, err)
	require.True(t, ok)
	taken := time.Now()
	r := worker.NewJobRunner(worker.JobRunnerConfig{Service: svc, Locker: eng, Interval: 10 * time.Millisecond})
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)
	require.Eventually(t, func() bool {
		v, err := svc.GetJob(ctx, j.ID, 0, 0)
		return err == nil && v.Status == store.JobDone && v.Done == 3
	}, 10*time.Second, 5*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(taken), 300*time.Millisecond)
}

// flakyTriggers grants through the service, then, the first time it sees
// an event, answers as if the instance failed before acknowledging it: the
// event is delivered again.
type flakyTriggers struct {
	*service.Service
	mu   sync.Mutex
	seen map[string]bool
}

func (f *flakyTriggers) GrantOnEvent(ctx context.Context, ev service.TriggerEvent) ([]service.TriggerOutcome, error) {
	out, err := f.Service.GrantOnEvent(ctx, ev)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && !f.seen[ev.ID] {
		f.seen[ev.ID] = true
		return out, fmt.Errorf("lost before the ack: %w", coupon.ErrUnavailable)
	}
	return out, err
}

// TestTriggerGrantsOncePerEventUnderRedelivery publishes user.registered
// events — one twice with the same id, each delivered again after its
// grant — and finds one claim per event, recorded with the trigger channel.
func TestTriggerGrantsOncePerEventUnderRedelivery(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, st, _ := distService(t)
	spec := batchSpec(100, 10)
	spec.TriggerSubject = "user.registered"
	id := publishBatch(t, svc, spec)
	other := publishBatch(t, svc, batchSpec(100, 10)) // no trigger: never granted

	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	js := b.JetStream()

	type handled struct {
		id  string
		err error
	}
	events := make(chan handled, 100)
	c := worker.NewTriggerConsumer(worker.TriggerConsumerConfig{JetStream: js,
		Service: &flakyTriggers{Service: svc, seen: map[string]bool{}}, Retry: 10 * time.Millisecond,
		OnEvent: func(_, id string, _ []service.TriggerOutcome, err error) { events <- handled{id, err} }})
	require.NoError(t, c.Start(ctx))
	t.Cleanup(c.Stop)
	require.Eventually(t, func() bool {
		_, err := js.Stream(ctx, worker.DefaultTriggerStream)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)

	pub := func(body string, msgID string) {
		m := nats.NewMsg("user.registered")
		m.Data = []byte(body)
		if msgID != "" {
			m.Header.Set(nats.MsgIdHdr, msgID)
		}
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	pub(`{"id":"reg-1","user_id":"amy"}`, "")
	pub(`{"id":"reg-1","user_id":"amy"}`, "") // the publisher sent it twice
	pub(`{"id":"reg-2","user_id":"amy"}`, "")
	pub(`{"user_id":"bob"}`, "m-7") // the id is in the header
	pub(`{"data":{"user_id":"cid"}}`, "")
	pub(`not json`, "")

	ok := map[string]int{}
	deadline := time.After(20 * time.Second)
	for len(ok) < 4 {
		select {
		case h := <-events:
			if h.err == nil {
				ok[h.id]++
			}
		case <-deadline:
			t.Fatalf("events handled: %v", ok)
		}
	}
	count := func(batch string) int64 {
		n, err := st.ClaimedCount(ctx, batch)
		require.NoError(t, err)
		return n
	}
	require.EqualValues(t, 4, count(id), "reg-1, reg-2, m-7 and the sequence of cid's event, each once")
	require.EqualValues(t, 0, count(other))
	cs, _, err := svc.UserClaims(ctx, service.UserClaimQuery{UserID: "amy"})
	require.NoError(t, err)
	require.Len(t, cs, 2)
	require.Equal(t, service.ChannelTrigger, cs[0].Channel)
}
