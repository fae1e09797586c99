package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/worker"
)

// waitTimeout bounds every wait of these tests; a pass normally takes
// microseconds.
const waitTimeout = 10 * time.Second

func TestRelayPublishesAllEventsOnceInOrder(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(1234)
	pub := &recordingPublisher{store: st}
	r, passes := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.BatchSize = 100 })

	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(r.Stop)
	waitFor(t, passes, func() bool { return st.pending() == 0 })

	require.Equal(t, ids(1, 1234), pub.ids())
	require.Empty(t, pub.markedBeforeAck, "events marked published before their ack")
	require.Equal(t, ids(1, 1234), st.markedIDs())
}

func TestRelayConvertsEvents(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	shanghai := time.FixedZone("CST", 8*3600)
	created := time.Date(2026, 3, 14, 17, 30, 0, 0, shanghai)
	payload := json.RawMessage(`{"claim_id":"c1","batch_id":"b1","user_id":"u1","code":"X","amount":500}`)
	st.addEvent(store.Event{Type: bus.TypeClaimCreated, AggregateID: "c1", Payload: payload, CreatedAt: created})
	pub := &recordingPublisher{store: st}
	now := time.Date(2026, 3, 14, 9, 31, 0, 0, time.UTC)
	r, _ := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.Now = func() time.Time { return now } })

	require.NoError(t, r.Flush(context.Background()))

	require.Len(t, pub.published, 1)
	env := pub.published[0]
	require.Equal(t, int64(1), env.ID)
	require.Equal(t, bus.TypeClaimCreated, env.Type)
	require.Equal(t, "c1", env.AggregateID)
	require.Equal(t, time.UTC, env.OccurredAt.Location())
	require.True(t, env.OccurredAt.Equal(created))
	require.JSONEq(t, string(payload), string(env.Data))
	require.Equal(t, now, st.markedAt(1))
}

func TestRelayLosesNothingWhenPublishFails(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(250)
	pub := &recordingPublisher{store: st, failures: 3}
	r, passes := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.BatchSize = 100 })

	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(r.Stop)
	waitFor(t, passes, func() bool { return st.pending() == 0 })

	require.Equal(t, ids(1, 250), pub.ids(), "each event published exactly once by the successful attempts")
	require.Equal(t, 4, pub.calls(1), "three failures, then success")
	require.Empty(t, pub.markedBeforeAck)
}

// A publisher that stores the messages but loses the ack: the relay must
// publish them again (the bus drops the copies by id) and mark them only then.
func TestRelayRepublishesAfterLostAck(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(10)
	pub := &recordingPublisher{store: st, failures: 1, recordFailed: true}
	r, _ := newRelay(t, st, pub, nil)

	require.Error(t, r.Flush(context.Background()))
	require.Equal(t, 10, st.pending(), "nothing marked without an ack")
	require.NoError(t, r.Flush(context.Background()))
	require.Zero(t, st.pending())

	require.Equal(t, append(ids(1, 10), ids(1, 10)...), pub.ids(), "at least once: the second attempt repeats the ids")
	require.Empty(t, pub.markedBeforeAck)
}

func TestRelayRetriesStoreErrors(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(20)
	st.failPending, st.failMark = 2, 2
	pub := &recordingPublisher{store: st}
	r, passes := newRelay(t, st, pub, nil)

	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(r.Stop)
	waitFor(t, passes, func() bool { return st.pending() == 0 })

	// Two failed marks republished the batch twice; every id went out.
	require.Equal(t, slices.Concat(ids(1, 20), ids(1, 20), ids(1, 20)), pub.ids())
	require.Equal(t, ids(1, 20), st.markedIDs())
}

func TestRelayNotifyWakesPromptly(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	pub := &recordingPublisher{store: st}
	// With an hour between polls, only Notify can bring the events out.
	r, passes := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.Interval = time.Hour })

	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(r.Stop)
	waitFor(t, passes, func() bool { return true }) // the first pass, over an empty outbox

	for round := 1; round <= 3; round++ {
		st.add(5)
		r.Notify()
		waitFor(t, passes, func() bool { return st.pending() == 0 })
	}
	require.Equal(t, ids(1, 15), pub.ids())
}

func TestRelayNotifyNeverBlocksNorAllocates(t *testing.T) {
	st := newOutbox()
	r, _ := newRelay(t, st, &recordingPublisher{store: st}, nil)
	// Not running: nobody takes the wake-ups, and still no call blocks.
	for range 1000 {
		r.Notify()
	}
	require.Zero(t, testing.AllocsPerRun(1000, r.Notify))
}

func TestRelayStopFinishesTheBatchInFlight(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(30)
	pub := &recordingPublisher{store: st, entered: make(chan struct{}, 1), release: make(chan struct{})}
	r, _ := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.BatchSize = 10 })

	require.NoError(t, r.Start(context.Background()))
	receive(t, pub.entered) // the first batch is being published

	stopped := make(chan struct{})
	go func() {
		r.Stop()
		close(stopped)
	}()
	poll(t, func() bool { return worker.StopRequested(r) })
	close(pub.release)
	receive(t, stopped)

	// The batch in flight was published and marked; the relay took no other.
	require.Equal(t, ids(1, 10), pub.ids())
	require.Equal(t, ids(1, 10), st.markedIDs())
	require.Equal(t, 20, st.pending())
}

func TestRelayStartStop(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	pub := &recordingPublisher{store: st}
	r, passes := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.Interval = time.Hour })

	r.Stop() // before Start
	require.NoError(t, r.Start(context.Background()))
	require.NoError(t, r.Start(context.Background()), "starting a running relay does nothing")
	waitFor(t, passes, func() bool { return true })
	r.Stop()
	r.Stop()

	// Started again, it relays what came meanwhile.
	st.add(3)
	require.NoError(t, r.Start(context.Background()))
	waitFor(t, passes, func() bool { return st.pending() == 0 })
	r.Stop()
	require.Equal(t, ids(1, 3), pub.ids())

	// Stops running in parallel all return.
	require.NoError(t, r.Start(context.Background()))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(r.Stop)
	}
	wg.Wait()
}

func TestRelayStopsWithItsContext(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	r, passes := newRelay(t, st, &recordingPublisher{store: st}, func(c *worker.OutboxRelayConfig) { c.Interval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, r.Start(ctx))
	waitFor(t, passes, func() bool { return true })
	cancel()
	r.Stop() // returns: the loop has ended with its context

	require.ErrorIs(t, r.Start(ctx), context.Canceled)
}

func TestRelayNeedsStoreAndPublisher(t *testing.T) {
	t.Parallel()
	r := worker.NewOutboxRelay(worker.OutboxRelayConfig{})
	require.Error(t, r.Start(context.Background()))
	require.Error(t, r.Flush(context.Background()))
	r.Stop()
}

func TestRelayFlush(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	st.add(1050)
	pub := &recordingPublisher{store: st}
	r, _ := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.BatchSize = 100 })

	require.NoError(t, r.Flush(context.Background()))
	require.Zero(t, st.pending())
	require.Equal(t, ids(1, 1050), pub.ids())

	// Flush returns the failure, having marked nothing of the failed batch.
	st.add(5)
	pub.mu.Lock()
	pub.failures = 1
	pub.mu.Unlock()
	require.Error(t, r.Flush(context.Background()))
	require.Equal(t, 5, st.pending())
}

// Claims commit while the relay runs; each commit notifies. Every event is
// published exactly once, in id order.
func TestRelayConcurrentWriters(t *testing.T) {
	t.Parallel()
	st := newOutbox()
	pub := &recordingPublisher{store: st}
	r, _ := newRelay(t, st, pub, func(c *worker.OutboxRelayConfig) { c.BatchSize = 50; c.Interval = time.Hour })
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(r.Stop)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				st.add(1)
				r.Notify()
			}
		})
	}
	wg.Wait()
	r.Stop()
	require.NoError(t, r.Flush(context.Background()))
	require.Equal(t, ids(1, 800), pub.ids())
}

// newRelay returns a relay over st and pub with fast retries, and a channel
// that receives a value after each of its passes.
func newRelay(t *testing.T, st *outbox, pub worker.Publisher, configure func(*worker.OutboxRelayConfig)) (*worker.OutboxRelay, <-chan struct{}) {
	t.Helper()
	passes := make(chan struct{}, 1)
	cfg := worker.OutboxRelayConfig{
		Store:      st,
		Publisher:  pub,
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		OnBatch: func(int, error) {
			select {
			case passes <- struct{}{}:
			default: // the test has a signal pending already
			}
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	return worker.NewOutboxRelay(cfg), passes
}

// waitFor waits for passes of the relay until done holds.
func waitFor(t *testing.T, passes <-chan struct{}, done func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case <-passes:
			if done() {
				return
			}
		case <-deadline.C:
			t.Fatalf("condition not met after %s", waitTimeout)
		}
	}
}

// poll checks cond until it holds, for states no signal announces.
func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s", waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive[T any](t *testing.T, c <-chan T) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(waitTimeout):
		t.Fatalf("nothing received after %s", waitTimeout)
	}
}

func ids(from, to int64) []int64 {
	var out []int64
	for id := from; id <= to; id++ {
		out = append(out, id)
	}
	return out
}

// outbox is an in-memory OutboxStore with injectable failures.
type outbox struct {
	mu          sync.Mutex
	events      []store.Event // in id order
	marked      map[int64]time.Time
	marks       []int64 // ids in the order they were marked
	failPending int     // fail this many PendingEvents calls
	failMark    int     // fail this many MarkPublished calls
}

func newOutbox() *outbox { return &outbox{marked: map[int64]time.Time{}} }

// add writes n events, as committed claims do.
func (o *outbox) add(n int) {
	for range n {
		o.addEvent(store.Event{Type: bus.TypeClaimCreated, Payload: json.RawMessage(`{}`), CreatedAt: time.Now()})
	}
}

func (o *outbox) addEvent(e store.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e.ID = int64(len(o.events) + 1)
	if e.AggregateID == "" {
		e.AggregateID = fmt.Sprintf("c%d", e.ID)
	}
	o.events = append(o.events, e)
}

func (o *outbox) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failPending > 0 {
		o.failPending--
		return nil, errors.New("outbox: database is locked")
	}
	var out []store.Event
	for _, e := range o.events {
		if _, ok := o.marked[e.ID]; !ok && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (o *outbox) MarkPublished(ctx context.Context, ids []int64, at time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failMark > 0 {
		o.failMark--
		return errors.New("outbox: database is locked")
	}
	for _, id := range ids {
		if _, ok := o.marked[id]; !ok {
			o.marked[id] = at
			o.marks = append(o.marks, id)
		}
	}
	return nil
}

func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.events) - len(o.marked)
}

func (o *outbox) isMarked(id int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.marked[id]
	return ok
}

func (o *outbox) markedAt(id int64) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marked[id]
}

func (o *outbox) markedIDs() []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.marks)
}

// recordingPublisher records what it publishes, checks that nothing it is
// given is marked published before it has acknowledged it, and can fail.
type recordingPublisher struct {
	store *outbox

	mu              sync.Mutex
	published       []bus.Envelope
	markedBeforeAck []int64
	failures        int  // fail this many calls
	recordFailed    bool // a failed call still stores its envelopes (a lost ack)
	callsByID       map[int64]int

	entered chan struct{} // if set, receives a value as a call starts
	release chan struct{} // if set, a call waits for it to close
}

func (p *recordingPublisher) Publish(ctx context.Context, envs []bus.Envelope) error {
	for _, env := range envs {
		if p.store.isMarked(env.ID) {
			p.mu.Lock()
			p.markedBeforeAck = append(p.markedBeforeAck, env.ID)
			p.mu.Unlock()
		}
	}
	if p.entered != nil {
		select {
		case p.entered <- struct{}{}:
		default:
		}
	}
	if p.release != nil {
		select {
		case <-p.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.callsByID == nil {
		p.callsByID = map[int64]int{}
	}
	for _, env := range envs {
		p.callsByID[env.ID]++
	}
	if p.failures > 0 {
		p.failures--
		if p.recordFailed {
			p.published = append(p.published, envs...)
		}
		return errors.New("nats: timeout")
	}
	p.published = append(p.published, envs...)
	// Nothing of this call may be marked until it returns.
	for _, env := range envs {
		if p.store.isMarked(env.ID) {
			p.markedBeforeAck = append(p.markedBeforeAck, env.ID)
		}
	}
	return nil
}

func (p *recordingPublisher) ids() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int64, len(p.published))
	for i, env := range p.published {
		out[i] = env.ID
	}
	return out
}

// calls counts the calls that were given the event id.
func (p *recordingPublisher) calls(id int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callsByID[id]
}
