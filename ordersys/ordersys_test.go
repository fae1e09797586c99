package ordersys_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/ordersys"
)

// fake is an order system: a real HTTP server on 127.0.0.1.
type fake struct {
	mu       sync.Mutex
	statuses map[string]string // order → status; missing: 404
	fail     int               // answer 503 to this many requests first
	down     bool              // answer 503 to every request
	requests atomic.Int64
	srv      *httptest.Server
}

func newFake(t *testing.T) *fake {
	f := &fake{statuses: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down || f.fail > 0 {
			f.fail--
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		id := r.PathValue("id")
		st, ok := f.statuses[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"order_id":%q,"status":%q,"total":1234}`, id, st)
	}))
	mux := http.NewServeMux()
	handler := f.srv.Config.Handler
	mux.Handle("GET /api/orders/{id}", handler)
	f.srv.Config.Handler = mux
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) set(order, status string) {
	f.mu.Lock()
	f.statuses[order] = status
	f.mu.Unlock()
}

func TestOrderStateAnswers(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := ordersys.New(ordersys.Config{Backoff: time.Millisecond})
	for status, want := range map[string]ordersys.State{
		"paid": ordersys.StatePaid, "COMPLETED": ordersys.StatePaid, "cancelled": ordersys.StateCancelled,
		"closed": ordersys.StateCancelled, "pending": ordersys.StatePending, "refunded": ordersys.StateRefunded,
	} {
		f.set("o-"+status, status)
		o, err := c.OrderState(t.Context(), f.srv.URL+"/api/orders/{order_id}", "o-"+status)
		require.NoError(t, err, status)
		require.Equal(t, want, o.State, status)
	}
	// Appended as a path segment without the placeholder.
	o, err := c.OrderState(t.Context(), f.srv.URL+"/api/orders/", "o-paid")
	require.NoError(t, err)
	require.Equal(t, ordersys.StatePaid, o.State)

	o, err = c.OrderState(t.Context(), f.srv.URL+"/api/orders/{order_id}", "never-placed")
	require.NoError(t, err)
	require.Equal(t, ordersys.StateNotFound, o.State)

	f.set("odd", "teleported")
	before := f.requests.Load()
	_, err = c.OrderState(t.Context(), f.srv.URL+"/api/orders/{order_id}", "odd")
	require.ErrorIs(t, err, ordersys.ErrBadAnswer)
	require.Equal(t, before+1, f.requests.Load(), "an answer it cannot use is not retried")

	require.Equal(t, "http://x/o/a%2Fb%20c", ordersys.URL("http://x/o/{order_id}", "a/b c"))
	require.Equal(t, "http://x/o/a", ordersys.URL("http://x/o", "a"))
}

func TestRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.set("o1", "paid")
	f.fail = 2
	c := ordersys.New(ordersys.Config{Backoff: 5 * time.Millisecond, Attempts: 3})
	start := time.Now()
	o, err := c.OrderState(t.Context(), f.srv.URL+"/api/orders/{order_id}", "o1")
	require.NoError(t, err)
	require.Equal(t, ordersys.StatePaid, o.State)
	require.EqualValues(t, 3, f.requests.Load(), "two failures, then the answer")
	require.GreaterOrEqual(t, time.Since(start), 15*time.Millisecond, "5ms, then 10ms between attempts")

	f.fail = 3
	_, err = c.OrderState(t.Context(), f.srv.URL+"/api/orders/{order_id}", "o1")
	require.Error(t, err, "three failures exhaust three attempts")
	require.EqualValues(t, 6, f.requests.Load())
}

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.set("o1", "paid")
	f.down = true
	var now atomic.Int64
	now.Store(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	c := ordersys.New(ordersys.Config{Backoff: time.Millisecond, Attempts: 2, FailureThreshold: 2, Cooldown: time.Minute, Now: clock})
	endpoint := f.srv.URL + "/api/orders/{order_id}"
	ctx := context.Background()

	for range 2 {
		_, err := c.OrderState(ctx, endpoint, "o1")
		require.Error(t, err)
		require.NotErrorIs(t, err, ordersys.ErrCircuitOpen)
	}
	require.EqualValues(t, 4, f.requests.Load())
	require.Equal(t, "open", c.BreakerState(endpoint))
	_, err := c.OrderState(ctx, endpoint, "o1")
	require.ErrorIs(t, err, ordersys.ErrCircuitOpen)
	require.EqualValues(t, 4, f.requests.Load(), "an open circuit makes no request")

	// After the cool-down one probe goes through; it fails: open again.
	now.Add(int64(time.Minute))
	require.Equal(t, "half-open", c.BreakerState(endpoint))
	_, err = c.OrderState(ctx, endpoint, "o1")
	require.Error(t, err)
	require.EqualValues(t, 6, f.requests.Load())
	_, err = c.OrderState(ctx, endpoint, "o1")
	require.ErrorIs(t, err, ordersys.ErrCircuitOpen)

	// The order system recovers: the next probe closes the circuit.
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	now.Add(int64(time.Minute))
	o, err := c.OrderState(ctx, endpoint, "o1")
	require.NoError(t, err)
	require.Equal(t, ordersys.StatePaid, o.State)
	require.Equal(t, "closed", c.BreakerState(endpoint))

	// Another endpoint has its own circuit.
	require.Equal(t, "closed", c.BreakerState(f.srv.URL+"/other/{order_id}"))
}

func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	m, err := ordersys.DecodeMessage([]byte(`{"order_id":"o1","refund_id":"r1","items":[{"id":"l1","quantity":2}],"extra":true}`))
	require.NoError(t, err)
	require.Equal(t, "o1", m.OrderID)
	require.Equal(t, "r1", m.RefundID)
	require.EqualValues(t, 2, m.Items[0].Quantity)
	for _, bad := range []string{``, `[]`, `{}`, `{"order_id":""}`, `{"order_id":"` + string(make([]byte, 200)) + `"}`} {
		_, err := ordersys.DecodeMessage([]byte(bad))
		require.Error(t, err, bad)
	}
}
