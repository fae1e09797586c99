package worker_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/worker"
)

// TestStatsConsumerCountsDuplicatesOnce: every event reaches the stream
// twice (a relay that published, crashed before marking, and published
// again after JetStream's duplicate window), and a consumer is restarted
// midway; the statistics count each event once.
func TestStatsConsumerCountsDuplicatesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db"), Synchronous: "normal"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	svc := service.New(service.Config{Store: st, Engine: memory.New()})
	t.Cleanup(svc.Close)

	batch, err := svc.CreateBatch(ctx, coupon.BatchSpec{Name: "stats", TotalQuantity: 50, PerUserLimit: 1,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 300}})
	require.NoError(t, err)
	_, err = svc.Transition(ctx, batch.ID, coupon.Publish)
	require.NoError(t, err)
	const claims = 20
	for i := range claims {
		_, _, err := svc.Claim(ctx, service.ClaimRequest{BatchID: batch.ID,
			Claimant: coupon.Claimant{UserID: "u" + string(rune('a'+i)), Platform: "ios"}})
		require.NoError(t, err)
	}
	events, err := st.PendingEvents(ctx, 1000)
	require.NoError(t, err)
	publish := func() {
		for _, e := range events {
			data, err := json.Marshal(bus.Envelope{ID: e.ID, Type: e.Type, AggregateID: e.AggregateID, OccurredAt: e.CreatedAt, Data: e.Payload})
			require.NoError(t, err)
			_, err = b.JetStream().Publish(ctx, b.Subject(e.Type), data) // no message id: JetStream keeps both
			require.NoError(t, err)
		}
	}
	var applied atomic.Int64
	newConsumer := func() *worker.StatsConsumer {
		c := worker.NewStatsConsumer(worker.StatsConsumerConfig{
			JetStream: b.JetStream(), Stream: b.StreamName(), Subjects: b.Subject(">"), Service: svc, Batch: 7,
			OnApply: func(n int, err error) {
				if err == nil {
					applied.Add(int64(n))
				}
			},
		})
		require.NoError(t, c.Start(ctx))
		t.Cleanup(c.Stop)
		return c
	}
	publish()
	first := newConsumer()
	require.Eventually(t, func() bool { return applied.Load() >= int64(len(events)) }, 10*time.Second, 10*time.Millisecond)
	first.Stop()
	publish()
	newConsumer()
	require.Eventually(t, func() bool { return applied.Load() >= 2*int64(len(events)) }, 10*time.Second, 10*time.Millisecond)

	v, err := svc.BatchStats(ctx, batch.ID)
	require.NoError(t, err)
	require.Equal(t, int64(claims), v.Totals.Claimed, "each claim counted once")
	require.Equal(t, int64(claims*300), v.Totals.ClaimedAmount)
	require.Equal(t, []service.StatsBucket{{Key: "ios", StatsCounts: v.Totals, ClaimRate: float64(claims) / 50}}, v.ByPlatform)
}
