package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/internal/backendtest"
)

// deployment is several coupond instances sharing one PostgreSQL schema, one
// private Redis and one private NATS, as in production.
type deployment struct {
	t       *testing.T
	pgURL   string
	redis   *backendtest.Process
	nats    *backendtest.Process
	stream  string
	subject string
	apps    []*app.App
}

func deploy(t *testing.T, instances int) *deployment {
	t.Helper()
	d := &deployment{
		t:       t,
		pgURL:   backendtest.PostgresSchema(t),
		redis:   backendtest.RedisServer(t),
		nats:    backendtest.NATSServer(t),
		stream:  "COUPOND",
		subject: "coupond.",
	}
	for range instances {
		d.start()
	}
	return d
}

func (d *deployment) start() *app.App {
	d.t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: d.t.TempDir(), AdminToken: "test-token", ShutdownTimeout: 20 * time.Second}
	cfg.GroupCommit.MaxBatch = 256
	cfg.Postgres.URL = d.pgURL
	cfg.Redis.URL = "redis://" + d.redis.Addr() + "/0"
	cfg.NATS.URL = "nats://" + d.nats.Addr()
	cfg.NATS.Stream, cfg.NATS.SubjectPrefix = d.stream, d.subject
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err := a.Run(context.Background()); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(a.Close)
	d.apps = append(d.apps, a)
	return a
}

// claimStorm sends n claims from users round-robin over the instances, and
// returns the acknowledged claims by code.
func claimStorm(t *testing.T, apps []*app.App, batchID string, n, users int, during func(done int64)) map[string]string {
	t.Helper()
	var (
		mu    sync.Mutex
		codes = map[string]string{} // code → user
		wg    sync.WaitGroup
		sent  atomic.Int64
		sem   = make(chan struct{}, 96)
	)
	clients := make([]*client, len(apps))
	for i, a := range apps {
		clients[i] = newClient(t, a)
	}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c := clients[i%len(clients)]
			user := fmt.Sprintf("u%d", i%users)
			r := c.do("POST", "/v1/batches/"+batchID+"/claims", map[string]any{"user_id": user})
			switch {
			case r.status == 201:
				mu.Lock()
				if prev, ok := codes[r.body["code"].(string)]; ok {
					t.Errorf("code %s acknowledged to %s and to %s", r.body["code"], prev, user)
				}
				codes[r.body["code"].(string)] = user
				mu.Unlock()
			case r.status == 409 && (r.body["code"] == "sold_out" || r.body["code"] == "limit_reached"):
			case r.status == 503:
				// A backend was away; nothing was acknowledged.
			default:
				t.Errorf("claim: %d %s", r.status, r.raw)
			}
			if during != nil {
				during(sent.Add(1))
			}
		}()
	}
	wg.Wait()
	return codes
}

// checkAgreement verifies the invariants in PostgreSQL and that Redis agrees.
func checkAgreement(t *testing.T, a *app.App, batchID string, limit int, acknowledged map[string]string) {
	t.Helper()
	ctx := context.Background()
	snap, err := a.Store.Snapshot(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for user, seqs := range snap.Users {
		if len(seqs) > limit {
			t.Errorf("user %s holds %d claims, limit %d", user, len(seqs), limit)
		}
		held += len(seqs)
	}
	if int64(held+len(snap.Pool)) != snap.Batch.GeneratedCount {
		t.Fatalf("claimed %d + unclaimed %d != generated %d", held, len(snap.Pool), snap.Batch.GeneratedCount)
	}
	for code, user := range acknowledged {
		c, err := a.Store.GetCode(ctx, code)
		if err != nil || c.ClaimID == "" {
			t.Fatalf("acknowledged code %s of %s is not claimed in the store: %v", code, user, err)
		}
	}
	if held < len(acknowledged) {
		t.Fatalf("store holds %d claims, %d were acknowledged", held, len(acknowledged))
	}
	// The engine's pool holds exactly the store's unclaimed codes, once each.
	// Let the reconciler settle anything pending first.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := a.Engine.Stats(ctx, batchID)
		if err == nil && st.PoolDepth == int64(len(snap.Pool)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine pool %d (%v), store unclaimed %d", st.PoolDepth, err, len(snap.Pool))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func publish(t *testing.T, c *client, total, limit int) string {
	t.Helper()
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "multi", "total_quantity": total, "per_user_limit": limit,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 100},
	})
	c.must(200, "POST", "/v1/batches/"+b["id"].(string)+"/publish", nil)
	return b["id"].(string)
}

func TestThreeInstancesNeverOversell(t *testing.T) {
	t.Parallel()
	d := deploy(t, 3)
	id := publish(t, newClient(t, d.apps[0]), 1000, 3)
	codes := claimStorm(t, d.apps, id, 5000, 500, nil)
	if len(codes) != 1000 {
		t.Fatalf("%d claims acknowledged, want exactly 1000", len(codes))
	}
	perUser := map[string]int{}
	for _, u := range codes {
		perUser[u]++
		if perUser[u] > 3 {
			t.Fatalf("user %s got more than 3", u)
		}
	}
	checkAgreement(t, d.apps[1], id, 3, codes)
}

func TestRedisFlushedMidStorm(t *testing.T) {
	t.Parallel()
	d := deploy(t, 2)
	id := publish(t, newClient(t, d.apps[0]), 1000, 3)
	rc := goredis.NewClient(&goredis.Options{Addr: d.redis.Addr()})
	defer rc.Close()
	var flushed atomic.Bool
	codes := claimStorm(t, d.apps, id, 5000, 500, func(done int64) {
		if done == 1500 && flushed.CompareAndSwap(false, true) {
			if err := rc.FlushAll(context.Background()).Err(); err != nil {
				t.Errorf("flushall: %v", err)
			}
		}
	})
	if !flushed.Load() {
		t.Fatal("the storm ended before Redis was flushed")
	}
	if len(codes) > 1000 {
		t.Fatalf("%d claims acknowledged from 1000 codes", len(codes))
	}
	checkAgreement(t, d.apps[0], id, 3, codes)
	// What the storm did not take is still claimable: drain the rest.
	rest := claimStorm(t, d.apps, id, 3000, 3000, nil)
	for code := range rest {
		if _, dup := codes[code]; dup {
			t.Fatalf("code %s handed out before and after the flush", code)
		}
	}
	if total := len(codes) + len(rest); total != 1000 {
		t.Fatalf("%d codes handed out in all, want 1000", total)
	}
}

func TestNATSDownDuringClaimsLosesNoEvent(t *testing.T) {
	t.Parallel()
	d := deploy(t, 2)
	id := publish(t, newClient(t, d.apps[0]), 600, 1)
	var stopped, restarted atomic.Bool
	codes := claimStorm(t, d.apps, id, 600, 600, func(done int64) {
		switch {
		case done == 100 && stopped.CompareAndSwap(false, true):
			d.nats.Stop()
		case done == 400 && restarted.CompareAndSwap(false, true):
			d.nats.Start()
		}
	})
	if len(codes) != 600 {
		t.Fatalf("%d claims acknowledged with NATS away; claims must not depend on the bus", len(codes))
	}
	claimIDs := map[string]int{}
	nc, err := nats.Connect("nats://"+d.nats.Addr(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, d.stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{d.subject + "claim.created"}})
	if err != nil {
		t.Fatal(err)
	}
	seenIDs := map[int64]bool{}
	for len(claimIDs) < 600 {
		msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("after %d of 600 claim events: %v", len(claimIDs), err)
		}
		var env struct {
			ID   int64 `json:"id"`
			Data struct {
				ClaimID string `json:"claim_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(msg.Data(), &env); err != nil {
			t.Fatal(err)
		}
		if seenIDs[env.ID] {
			continue // a re-publication outside the duplicate window: consumers drop it by id
		}
		seenIDs[env.ID] = true
		claimIDs[env.Data.ClaimID]++
	}
	for cid, n := range claimIDs {
		if n != 1 {
			t.Fatalf("claim %s has %d events with distinct ids", cid, n)
		}
	}
	// Nothing is left unpublished (the last marks may trail the acks).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		pending, err := d.apps[0].Store.PendingEvents(context.Background(), 10)
		if err == nil && len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending events after recovery: %d (%v)", len(pending), err)
		}
	}
}
