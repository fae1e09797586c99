package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
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

// TestTaggerFollowsBatchEventsAndPushesWebhook: the tagger, fed by the
// outbox relay through an embedded NATS, tags a batch's products when it is
// published, untags them on pause and end, retags on resume, and pushes
// every product.tags_changed to the webhook in order; a webhook that fails
// at first gets the event again.
func TestTaggerFollowsBatchEventsAndPushesWebhook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "t.db"), Synchronous: "normal"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	relay := worker.NewOutboxRelay(worker.OutboxRelayConfig{Store: st, Publisher: b, Interval: 20 * time.Millisecond})
	svc := service.New(service.Config{Store: st, Engine: memory.New(), OnCommit: relay.Notify})
	t.Cleanup(svc.Close)
	require.NoError(t, relay.Start(ctx))
	t.Cleanup(relay.Stop)

	var mu sync.Mutex
	var pushed []bus.ProductTagsChanged
	failures := 2
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		var env bus.Envelope
		var d bus.ProductTagsChanged
		if json.Unmarshal(body, &env) != nil || env.Type != bus.TypeProductTagsChanged || json.Unmarshal(env.Data, &d) != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		pushed = append(pushed, d)
	}))
	t.Cleanup(hook.Close)
	tagger := worker.NewTagger(worker.TaggerConfig{
		JetStream: b.JetStream(), Stream: b.StreamName(), SubjectPrefix: b.Subject(""), Service: svc,
		Poll: 20 * time.Millisecond, Retry: 20 * time.Millisecond, Webhook: hook.URL,
	})
	require.NoError(t, tagger.Start(ctx))
	t.Cleanup(tagger.Stop)

	batch, err := svc.CreateBatch(ctx, coupon.BatchSpec{Name: "badge", TotalQuantity: 10, PerUserLimit: 1, MerchantID: "m-7",
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 300},
		Rules: []coupon.Rule{{RefType: "product", RefID: "sku-1", UseType: "include"}}})
	require.NoError(t, err)
	tagged := func() bool {
		tags, err := svc.ProductTags(ctx, []string{"sku-1"})
		require.NoError(t, err)
		return len(tags[0]) == 1 && tags[0][0].BatchID == batch.ID
	}
	pushes := func() []bool {
		mu.Lock()
		defer mu.Unlock()
		out := []bool{}
		for _, d := range pushed {
			require.Equal(t, batch.ID, d.BatchID)
			require.Equal(t, []string{"sku-1"}, d.Products)
			out = append(out, d.Tagged)
		}
		return out
	}
	step := func(a coupon.Transition, want bool, wantPushes ...bool) {
		t.Helper()
		_, err := svc.Transition(ctx, batch.ID, a)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return tagged() == want }, 10*time.Second, 10*time.Millisecond, "after %s", a)
		require.Eventually(t, func() bool { return len(pushes()) == len(wantPushes) }, 10*time.Second, 10*time.Millisecond, "pushed after %s", a)
		require.Equal(t, wantPushes, pushes())
	}
	step(coupon.Publish, true, true)
	step(coupon.Pause, false, true, false)
	step(coupon.Resume, true, true, false, true)
	step(coupon.End, false, true, false, true, false)
}
