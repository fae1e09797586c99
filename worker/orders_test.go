package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/worker"
)

// orderService records the messages applied and fails as told.
type orderService struct {
	mu      sync.Mutex
	applied []string         // kind:order, in order
	fail    map[string]int   // order → failures (unavailable) left
	answer  map[string]error // order → the error to return after the failures
}

func (s *orderService) ApplyOrderMessage(_ context.Context, kind string, m ordersys.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail[m.OrderID] > 0 {
		s.fail[m.OrderID]--
		return coupon.ErrUnavailable
	}
	s.applied = append(s.applied, kind+":"+m.OrderID)
	return s.answer[m.OrderID]
}

func (s *orderService) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.applied...)
}

type outcome struct {
	kind, order string
	err         error
}

func startConsumer(t *testing.T, js jetstream.JetStream, svc worker.OrderMessages, mods ...func(*worker.OrderConsumerConfig)) (*worker.OrderConsumer, <-chan outcome) {
	t.Helper()
	outcomes := make(chan outcome, 100)
	cfg := worker.OrderConsumerConfig{JetStream: js, Service: svc, Retry: 20 * time.Millisecond,
		OnMessage: func(kind, order string, err error) { outcomes <- outcome{kind, order, err} }}
	for _, m := range mods {
		m(&cfg)
	}
	c := worker.NewOrderConsumer(cfg)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(c.Stop)
	return c, outcomes
}

func next(t *testing.T, outcomes <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-outcomes:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no message handled within 10s")
	}
	return outcome{}
}

// The consumer creates the order stream, applies each message, acknowledges
// it after the effect, has a failed one delivered again, and drops a body
// that is not a message.
func TestOrderConsumer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	js := b.JetStream()
	svc := &orderService{fail: map[string]int{"o-2": 2}, answer: map[string]error{"o-3": coupon.ErrNotFound}}
	_, outcomes := startConsumer(t, js, svc)

	// The stream appears once the consumer is set up.
	require.Eventually(t, func() bool {
		_, err := js.Stream(ctx, worker.DefaultOrdersStream)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	publish := func(subject, body string) {
		_, err := js.Publish(ctx, subject, []byte(body))
		require.NoError(t, err)
	}
	publish("orders.paid", `{"order_id":"o-1","paid_at":"2031-01-01T00:00:00Z"}`)
	require.Equal(t, outcome{service.OrderPaid, "o-1", nil}, next(t, outcomes))

	// The store is unavailable twice: delivered again until it is applied.
	publish("orders.cancelled", `{"order_id":"o-2"}`)
	for range 2 {
		o := next(t, outcomes)
		require.Equal(t, "o-2", o.order)
		require.ErrorIs(t, o.err, coupon.ErrUnavailable)
	}
	require.Equal(t, outcome{service.OrderCancelled, "o-2", nil}, next(t, outcomes))

	// An order without coupons: acknowledged, not delivered again.
	publish("orders.refunded", `{"order_id":"o-3","refund_id":"r1","items":[{"id":"l1","quantity":1}]}`)
	o := next(t, outcomes)
	require.Equal(t, service.OrderRefunded, o.kind)
	require.ErrorIs(t, o.err, coupon.ErrNotFound)

	// Not a message: dropped.
	publish("orders.paid", `not json`)
	o = next(t, outcomes)
	require.Error(t, o.err)

	publish("orders.paid", `{"order_id":"o-4"}`)
	require.Equal(t, outcome{service.OrderPaid, "o-4", nil}, next(t, outcomes))
	require.Equal(t, []string{"paid:o-1", "cancelled:o-2", "refunded:o-3", "paid:o-4"}, svc.seen())

	// Everything is acknowledged: nothing waits or comes again.
	for _, kind := range []string{"paid", "cancelled", "refunded"} {
		cons, err := js.Consumer(ctx, worker.DefaultOrdersStream, worker.DefaultOrdersDurable+"-"+kind)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			info, err := cons.Info(ctx)
			return err == nil && info.NumAckPending == 0 && info.NumPending == 0
		}, 10*time.Second, 20*time.Millisecond)
	}
	select {
	case o := <-outcomes:
		t.Fatalf("a handled message came again: %+v", o)
	case <-time.After(300 * time.Millisecond):
	}
}

// A message that came while the consumer was stopped is applied when it
// starts again, and two consumers (two instances) share the durable one:
// each message is applied once.
func TestOrderConsumerDurableAndShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	js := b.JetStream()
	// The order system's own stream captures the subjects: it is used as is.
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "SHOP", Subjects: []string{"shop.orders.>"}})
	require.NoError(t, err)
	subjects := func(c *worker.OrderConsumerConfig) {
		c.PaidSubject, c.CancelledSubject, c.RefundedSubject = "shop.orders.paid", "shop.orders.cancelled", "shop.orders.refunded"
	}

	first := &orderService{}
	c1, out1 := startConsumer(t, js, first, subjects)
	_, err = js.Publish(ctx, "shop.orders.paid", []byte(`{"order_id":"before-stop"}`))
	require.NoError(t, err)
	require.Equal(t, "before-stop", next(t, out1).order)
	c1.Stop()
	_, err = js.Publish(ctx, "shop.orders.paid", []byte(`{"order_id":"while-stopped"}`))
	require.NoError(t, err)
	_, err = js.Stream(ctx, worker.DefaultOrdersStream)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "no stream of its own when one captures the subjects")

	second := &orderService{}
	_, out2 := startConsumer(t, js, second, subjects)
	third := &orderService{}
	_, out3 := startConsumer(t, js, third, subjects)
	for i := range 40 {
		_, err = js.Publish(ctx, "shop.orders.cancelled", []byte(`{"order_id":"o-`+string(rune('A'+i))+`"}`))
		require.NoError(t, err)
	}
	handled := map[string]int{}
	for len(handled) < 41 {
		select {
		case o := <-out2:
			handled[o.order]++
		case o := <-out3:
			handled[o.order]++
		case <-time.After(10 * time.Second):
			t.Fatalf("handled %d of 41", len(handled))
		}
	}
	require.Equal(t, 1, handled["while-stopped"], "the message sent while stopped")
	for order, n := range handled {
		require.Equal(t, 1, n, "order %s handled %d times", order, n)
	}
	require.Empty(t, first.seen()[1:], "the stopped consumer handled nothing more")
}
