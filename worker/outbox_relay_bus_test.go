package worker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
)

// The relay against an embedded bus: a failed mark republishes a batch, and
// the stream still holds each event once, in id order.
func TestRelayIntoEmbeddedBus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })

	st := newOutbox()
	st.add(1200)
	st.failMark = 1
	r, passes := newRelay(t, st, b, nil) // the default batch of 500
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)
	waitFor(t, passes, func() bool { return st.pending() == 0 })

	s, err := b.JetStream().Stream(ctx, b.StreamName())
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1200, info.State.Msgs)

	c, err := b.JetStream().OrderedConsumer(ctx, b.StreamName(), jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	next := int64(1)
	for next <= 1200 {
		batch, err := c.Fetch(int(min(500, 1201-next)), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		got := 0
		for msg := range batch.Messages() {
			require.Equal(t, strconv.FormatInt(next, 10), msg.Headers().Get(jetstream.MsgIDHeader))
			require.Equal(t, b.Subject(bus.TypeClaimCreated), msg.Subject())
			next++
			got++
		}
		require.NoError(t, batch.Error())
		require.NotZero(t, got, "stream ended at id %d", next-1)
	}
}
