package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/ordersys/ordersystest"
)

// bootShop starts a coupond whose embedded NATS also listens on a loopback
// port, as an order system would reach it, with a fake order system.
func bootShop(t *testing.T, orders *ordersystest.Server, timeout time.Duration) *app.App {
	t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Redemption.OrderSystemURL = orders.Endpoint()
	cfg.Redemption.ReservationTimeout = timeout
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	a.Redemption.CheckInterval = 20 * time.Millisecond
	a.Redemption.OrderRetry = 20 * time.Millisecond
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// orderSystem connects to the embedded NATS over TCP, as the order system does.
func orderSystem(t *testing.T, a *app.App) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://" + a.Bus.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishOrder sends an order message once the order stream exists.
func publishOrder(t *testing.T, js jetstream.JetStream, subject, body string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := js.Publish(context.Background(), subject, []byte(body))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: %v", subject, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStatus polls a redemption until it reaches status.
func (c *client) waitStatus(id, status string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := c.must(200, "GET", "/v1/redemptions/"+id, nil)
		if r["status"] == status {
			return r
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redemption %s is %v, want %s", id, r["status"], status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *client) claimFor(batchID, user string) map[string]any {
	c.t.Helper()
	return c.must(201, "POST", "/v1/batches/"+batchID+"/claims", map[string]any{"user_id": user, "platform": "ios"})
}

var basket = map[string]any{"items": []map[string]any{
	{"id": "line-1", "product_id": "sku-1", "unit_price": 1500, "quantity": 2},
	{"id": "line-2", "product_id": "sku-2", "unit_price": 1000, "quantity": 1},
}}

// TestRedemptionOverHTTP walks the API: qualification, reservation (and its
// replay), a refusal with its problem code, confirmation by the order
// system's NATS message, a refund, cancellation, direct redemption, and
// the events on the bus.
func TestRedemptionOverHTTP(t *testing.T) {
	t.Parallel()
	orders := ordersystest.New(t)
	a := bootShop(t, orders, time.Hour)
	c := newClient(t, a)
	id := c.publishedBatch(10, 5)
	c1, c2, c3 := c.claimFor(id, "amy"), c.claimFor(id, "amy"), c.claimFor(id, "amy")

	q := c.must(200, "POST", "/v1/qualifications", map[string]any{"user_id": "amy", "platform": "ios", "cart": basket})
	if n := len(q["claims"].([]any)); n != 3 {
		t.Fatalf("qualification lists %d claims: %s", n, q)
	}
	best := q["best"].(map[string]any)
	if best["discount"] != 500.0 || len(best["coupons"].([]any)) != 1 {
		t.Fatalf("best: %v", best)
	}

	reserve := map[string]any{"order_id": "o-1", "user_id": "amy", "platform": "ios", "cart": basket, "claim_ids": []string{c1["id"].(string)}}
	r := c.do("POST", "/v1/redemptions", reserve)
	if r.status != 201 || r.body["status"] != "reserved" || r.body["discount"] != 500.0 {
		t.Fatalf("reserve: %d %s", r.status, r.raw)
	}
	rid := r.body["id"].(string)
	again := c.do("POST", "/v1/redemptions", reserve)
	if again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" || again.body["id"] != rid {
		t.Fatalf("replay: %d %v %s", again.status, again.header, again.raw)
	}
	taken := c.do("POST", "/v1/redemptions", map[string]any{"order_id": "o-2", "user_id": "amy", "cart": basket, "claim_ids": []string{c1["id"].(string)}})
	if taken.status != 409 || taken.body["code"] != "not_usable" || taken.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("a locked coupon: %d %s", taken.status, taken.raw)
	}
	bad := c.do("POST", "/v1/redemptions", map[string]any{"order_id": "o-3", "user_id": "amy", "cart": map[string]any{"items": []any{}}, "claim_ids": []string{c2["id"].(string)}})
	if bad.status != 422 || bad.body["code"] != "invalid" {
		t.Fatalf("an empty cart: %d %s", bad.status, bad.raw)
	}
	claim := c.must(200, "GET", "/v1/claims/"+c1["id"].(string), nil)
	if claim["status"] != "locked" {
		t.Fatalf("claim after reserve: %v", claim["status"])
	}

	// The order system says it was paid, twice, over NATS.
	js := orderSystem(t, a)
	publishOrder(t, js, "orders.paid", `{"order_id":"o-1"}`)
	publishOrder(t, js, "orders.paid", `{"order_id":"o-1"}`)
	c.waitStatus(rid, "confirmed")
	if claim := c.must(200, "GET", "/v1/claims/"+c1["id"].(string), nil); claim["status"] != "used" {
		t.Fatalf("claim after confirm: %v", claim["status"])
	}
	c.must(409, "POST", "/v1/redemptions/"+rid+"/cancel", nil)

	// A refund of the whole order by API gives the coupon back.
	refunded := c.must(200, "POST", "/v1/orders/o-1/redemption/refund", map[string]any{"refund_id": "rf-1"})
	if refunded["status"] != "refunded" {
		t.Fatalf("refund: %v", refunded)
	}
	if claim := c.must(200, "GET", "/v1/claims/"+c1["id"].(string), nil); claim["status"] != "available" {
		t.Fatalf("claim after refund: %v", claim["status"])
	}

	// Cancelled by order id before the reservation arrived.
	tomb := c.must(200, "POST", "/v1/orders/o-4/redemption/cancel", nil)
	if tomb["status"] != "cancelled" {
		t.Fatalf("early cancel: %v", tomb)
	}
	late := c.do("POST", "/v1/redemptions", map[string]any{"order_id": "o-4", "user_id": "amy", "cart": basket, "claim_ids": []string{c2["id"].(string)}})
	if late.status != 409 || late.body["code"] != "conflict" {
		t.Fatalf("reservation after cancellation: %d %s", late.status, late.raw)
	}

	// A code at a point of sale, typed in lower case.
	direct := c.must(201, "POST", "/v1/redemptions/direct", map[string]any{"order_id": "pos-1", "code": toLower(c3["code"].(string)), "cart": basket})
	if direct["status"] != "confirmed" {
		t.Fatalf("direct: %v", direct)
	}
	c.must(404, "GET", "/v1/redemptions/01KJKHZE8001AM2YS5XQ9TM3NC", nil)
	reviews := c.must(200, "GET", "/v1/reviews", nil)
	if len(reviews["items"].([]any)) != 0 {
		t.Fatalf("reviews: %v", reviews)
	}

	// The transitions are events on the bus.
	want := map[string]int{"redemption.reserved": 1, "redemption.confirmed": 2, "redemption.refunded": 1}
	got := map[string]int{}
	cons, err := a.Bus.JetStream().OrderedConsumer(context.Background(), a.Bus.StreamName(),
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{"coupond.redemption.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 4; n++ {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		var env struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(msg.Data(), &env)
		got[env.Type]++
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// TestLostConfirmationOverHTTP: the paid message never comes; after the
// reservation's timeout the reconciler asks the order system (a real HTTP
// server) and confirms the paid order and releases the cancelled one. With
// the order system down, the reservation ends on the review list, and an
// operator resolves it by API.
func TestLostConfirmationOverHTTP(t *testing.T) {
	t.Parallel()
	orders := ordersystest.New(t)
	a := bootShop(t, orders, 300*time.Millisecond)
	c := newClient(t, a)
	id := c.publishedBatch(10, 5)
	res := func(order string) string {
		cl := c.claimFor(id, "bob")
		r := c.must(201, "POST", "/v1/redemptions", map[string]any{"order_id": order, "user_id": "bob", "cart": basket, "claim_ids": []string{cl["id"].(string)}})
		return r["id"].(string)
	}
	orders.Set("o-paid", "paid")
	orders.Set("o-cancelled", "cancelled")
	paid, cancelled := res("o-paid"), res("o-cancelled")
	c.waitStatus(paid, "confirmed")
	c.waitStatus(cancelled, "cancelled")
	if r := c.must(200, "GET", "/v1/redemptions/"+paid, nil); r["reason"] != "reconciler" {
		t.Fatalf("confirmed by %v", r["reason"])
	}
}

// TestOrderSystemDownGoesToReview: with the order system answering 503 the
// reconciler retries with backoff; after its attempts the reservation is on
// the review list, its coupon still locked, and resolving it releases it.
func TestOrderSystemDownGoesToReview(t *testing.T) {
	t.Parallel()
	orders := ordersystest.New(t)
	orders.Down(true)
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	cfg.Redemption.OrderSystemURL = orders.Endpoint()
	cfg.Redemption.ReservationTimeout = 100 * time.Millisecond
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	a.Redemption.CheckInterval = 10 * time.Millisecond
	a.Redemption.OrderSystem = ordersys.New(ordersys.Config{Backoff: time.Millisecond, Attempts: 2})
	a.Redemption.CheckBackoff = 20 * time.Millisecond
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	c := newClient(t, a)
	id := c.publishedBatch(1, 1)
	cl := c.claimFor(id, "cat")
	r := c.must(201, "POST", "/v1/redemptions", map[string]any{"order_id": "o-down", "user_id": "cat", "cart": basket, "claim_ids": []string{cl["id"].(string)}})

	var items []any
	deadline := time.Now().Add(20 * time.Second)
	for len(items) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reservation never reached the review list")
		}
		time.Sleep(20 * time.Millisecond)
		items = c.must(200, "GET", "/v1/reviews", nil)["items"].([]any)
	}
	review := items[0].(map[string]any)
	if review["id"] != r["id"] || review["status"] != "reserved" {
		t.Fatalf("review: %v", review)
	}
	if orders.Asked("o-down") < 2 {
		t.Fatalf("the order system was asked %d times; retries expected", orders.Asked("o-down"))
	}
	if got := c.must(200, "GET", "/v1/claims/"+cl["id"].(string), nil); got["status"] != "locked" {
		t.Fatalf("a coupon is never released without an answer: %v", got["status"])
	}
	c.must(422, "POST", "/v1/reviews/"+r["id"].(string)+"/resolve", map[string]any{"outcome": "maybe"})
	done := c.must(200, "POST", "/v1/reviews/"+r["id"].(string)+"/resolve", map[string]any{"outcome": "cancel"})
	if done["status"] != "cancelled" || done["reason"] != "review" {
		t.Fatalf("resolved: %v", done)
	}
	if got := c.must(200, "GET", "/v1/claims/"+cl["id"].(string), nil); got["status"] != "available" {
		t.Fatalf("claim after resolution: %v", got["status"])
	}
}

// TestFiftyOrdersOneCouponAcrossInstances: 50 orders for the same coupon
// sent at once to two instances on PostgreSQL, Redis and NATS; exactly one
// reserves it, and the paid message reaches one instance.
func TestFiftyOrdersOneCouponAcrossInstances(t *testing.T) {
	t.Parallel()
	d := deploy(t, 2)
	c0 := newClient(t, d.apps[0])
	id := publish(t, c0, 5, 1)
	cl := c0.claimFor(id, "dan")
	clients := []*client{c0, newClient(t, d.apps[1])}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		won   []string
		codes = map[string]int{}
	)
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			r := clients[i%2].do("POST", "/v1/redemptions", map[string]any{"order_id": fmt.Sprint("o-", i), "user_id": "dan",
				"cart": basket, "claim_ids": []string{cl["id"].(string)}})
			mu.Lock()
			defer mu.Unlock()
			if r.status == 201 {
				won = append(won, r.body["id"].(string))
			} else {
				codes[fmt.Sprint(r.status, " ", r.body["code"])]++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(won) != 1 || codes["409 not_usable"] != 49 {
		t.Fatalf("%d reservations won, refusals %v", len(won), codes)
	}

	nc, err := nats.Connect("nats://" + d.nats.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	winner := c0.must(200, "GET", "/v1/redemptions/"+won[0], nil)
	publishOrder(t, js, "orders.paid", `{"order_id":"`+winner["order_id"].(string)+`"}`)
	clients[1].waitStatus(won[0], "confirmed")
}
