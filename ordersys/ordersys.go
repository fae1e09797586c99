// Package ordersys is coupond's side of the order system's contract: the
// messages the order system publishes when an order is paid, cancelled or
// refunded, and a client of its order-state endpoint, which the
// reconciler asks when a reservation's confirmation is late. The client
// retries with backoff and stops calling an endpoint that keeps failing
// (a circuit breaker), so that a down order system is not hammered.
package ordersys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coupond/coupond/coupon"
)

// State is what the order system says of an order.
type State string

const (
	StatePaid      State = "paid"      // paid (or completed): the coupons are used
	StateCancelled State = "cancelled" // cancelled, closed, failed or expired unpaid: release the coupons
	StatePending   State = "pending"   // placed, not paid yet: ask again later
	StateRefunded  State = "refunded"  // paid and refunded in full
	StateNotFound  State = "not_found" // the endpoint answered 404: the order was never placed
)

// states maps the statuses an endpoint may answer to a State.
var states = map[string]State{
	"paid": StatePaid, "completed": StatePaid, "confirmed": StatePaid, "shipped": StatePaid, "delivered": StatePaid,
	"cancelled": StateCancelled, "canceled": StateCancelled, "closed": StateCancelled, "failed": StateCancelled, "expired": StateCancelled,
	"pending": StatePending, "created": StatePending, "unpaid": StatePending, "placed": StatePending,
	"refunded": StateRefunded,
}

// Order is the answer of the order-state endpoint.
type Order struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	State   State  `json:"-"`
}

// Errors of the client.
var (
	// ErrCircuitOpen: the endpoint failed too often lately; it is not
	// called until its cool-down has passed.
	ErrCircuitOpen = errors.New("ordersys: circuit open: the order system failed too often lately")
	// ErrBadAnswer: the endpoint answered something the client does not
	// understand (a status it does not know, a body that is not JSON, an
	// unexpected HTTP status).
	ErrBadAnswer = errors.New("ordersys: unexpected answer from the order system")
)

// Config configures a Client. The zero value works.
type Config struct {
	HTTP *http.Client // default: a client with Timeout
	// Timeout bounds one attempt; default 5s.
	Timeout time.Duration
	// Attempts is how many times one call tries; default 3.
	Attempts int
	// Backoff is the wait before the second attempt, doubled each time up
	// to MaxBackoff, with up to 20% of random jitter; defaults 200ms, 2s.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// FailureThreshold consecutive failed calls of an endpoint open its
	// circuit for Cooldown; then one call probes it (half-open): success
	// closes it, failure opens it again. Defaults 5 and 30s.
	FailureThreshold int
	Cooldown         time.Duration
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	Now    func() time.Time
}

// Client asks order systems for the state of orders. It is safe for
// concurrent use; each endpoint (its URL template) has its own breaker.
type Client struct {
	cfg      Config
	mu       sync.Mutex
	breakers map[string]*breaker
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, breakers: map[string]*breaker{}}
}

// URL returns the order-state URL of orderID for an endpoint template: the
// template with {order_id} replaced, or with the id appended as a path
// segment. The id is path-escaped.
func URL(template, orderID string) string {
	id := url.PathEscape(orderID)
	if strings.Contains(template, "{order_id}") {
		return strings.ReplaceAll(template, "{order_id}", id)
	}
	return strings.TrimSuffix(template, "/") + "/" + id
}

// OrderState asks the endpoint for an order's state: GET on URL(endpoint,
// orderID), expecting 200 with {"order_id": …, "status": …} or 404. A
// failure (no answer, a 5xx, a timeout) is retried with backoff within the
// call; 4xx answers other than 404 and answers it cannot read are not
// retried. While the endpoint's circuit is open the call fails at once with
// ErrCircuitOpen.
func (c *Client) OrderState(ctx context.Context, endpoint, orderID string) (Order, error) {
	b := c.breaker(endpoint)
	if !b.allow(c.cfg.Now()) {
		return Order{}, ErrCircuitOpen
	}
	var err error
	for attempt := 1; attempt <= c.cfg.Attempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, c.backoff(attempt-1)); err != nil {
				b.done(c.cfg.Now(), false)
				return Order{}, err
			}
		}
		var o Order
		var retry bool
		o, retry, err = c.get(ctx, URL(endpoint, orderID), orderID)
		if err == nil {
			b.done(c.cfg.Now(), true)
			return o, nil
		}
		if !retry || ctx.Err() != nil {
			break
		}
	}
	b.done(c.cfg.Now(), false)
	return Order{}, err
}

// get makes one attempt; retry says whether another may succeed.
func (c *Client) get(ctx context.Context, u, orderID string) (o Order, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return o, false, fmt.Errorf("ordersys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range c.cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return o, true, fmt.Errorf("ordersys: order %s: %w", orderID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil:
		return o, true, fmt.Errorf("ordersys: order %s: read answer: %w", orderID, err)
	case resp.StatusCode == http.StatusNotFound:
		return Order{OrderID: orderID, State: StateNotFound}, false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return o, true, fmt.Errorf("ordersys: order %s: HTTP %d", orderID, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return o, false, fmt.Errorf("ordersys: order %s: HTTP %d: %w", orderID, resp.StatusCode, ErrBadAnswer)
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return o, false, fmt.Errorf("ordersys: order %s: %w: %w", orderID, ErrBadAnswer, err)
	}
	if o.OrderID != "" && o.OrderID != orderID {
		return o, false, fmt.Errorf("ordersys: asked for order %s, the answer is about %s: %w", orderID, o.OrderID, ErrBadAnswer)
	}
	st, ok := states[strings.ToLower(o.Status)]
	if !ok {
		return o, false, fmt.Errorf("ordersys: order %s has status %q: %w", orderID, o.Status, ErrBadAnswer)
	}
	o.OrderID, o.State = orderID, st
	return o, false, nil
}

func (c *Client) backoff(retry int) time.Duration {
	d := c.cfg.Backoff
	for i := 1; i < retry && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

func (c *Client) breaker(endpoint string) *breaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.breakers[endpoint]
	if !ok {
		b = &breaker{threshold: c.cfg.FailureThreshold, cooldown: c.cfg.Cooldown}
		c.breakers[endpoint] = b
	}
	return b
}

// BreakerState names the state of an endpoint's circuit: closed, open or
// half-open.
func (c *Client) BreakerState(endpoint string) string {
	b := c.breaker(endpoint)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.threshold:
		return "closed"
	case b.probing || !c.cfg.Now().Before(b.openUntil):
		return "half-open"
	}
	return "open"
}

// breaker is one endpoint's circuit: closed while calls succeed; open for
// a cool-down after threshold consecutive failures; then half-open, letting
// one call through to probe.
type breaker struct {
	mu        sync.Mutex
	threshold int
	cooldown  time.Duration
	failures  int
	openUntil time.Time
	probing   bool
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true
	}
	if now.Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true
	return true
}

func (b *breaker) done(now time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = now.Add(b.cooldown)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Message is the body of the order system's messages on NATS: orders.paid,
// orders.cancelled and orders.refunded (the subjects are configurable).
//
//	{"order_id": "o-1001"}                                  paid, cancelled
//	{"order_id": "o-1001", "refund_id": "rf-1"}             refunded in full
//	{"order_id": "o-1001", "refund_id": "rf-2",
//	 "items": [{"id": "line-1", "quantity": 1}]}            refunded in part
//
// Other members are ignored, so the order system may send its own order
// events as they are.
type Message struct {
	OrderID  string              `json:"order_id"`
	RefundID string              `json:"refund_id,omitempty"`
	Items    []coupon.RefundItem `json:"items,omitempty"`
}

// DecodeMessage reads a message; a body without an order id is refused.
func DecodeMessage(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("ordersys: message is not JSON: %w", err)
	}
	if err := coupon.ValidOrderID("order_id", m.OrderID); err != nil {
		return m, fmt.Errorf("ordersys: message: %w", err)
	}
	return m, nil
}
