package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
)

// boot starts a whole coupond on 127.0.0.1:0 with its data in dir.
func boot(t *testing.T, dir string) *app.App {
	t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: dir, AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

type client struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client
}

func newClient(t *testing.T, a *app.App) *client {
	return &client{t: t, base: a.URL(), token: a.AdminToken(), http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (c *client) do(method, path string, body any, headers ...string) response {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (c *client) must(status int, method, path string, body any, headers ...string) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	return r.body
}

func (c *client) publishedBatch(total, limit int) string {
	c.t.Helper()
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "flash", "total_quantity": total, "per_user_limit": limit,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 500},
	})
	id := b["id"].(string)
	c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)
	return id
}

func TestHTTPFlashSaleNeverOversells(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	id := c.publishedBatch(500, 2)

	var (
		mu      sync.Mutex
		codes   = map[string]int{}
		perUser = map[string]int{}
		refused = map[string]int{}
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 128)
	)
	for i := range 2000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			user := fmt.Sprintf("u%d", i%300)
			r := c.do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": user, "platform": "ios"})
			mu.Lock()
			defer mu.Unlock()
			switch r.status {
			case 201:
				codes[r.body["code"].(string)]++
				perUser[user]++
			case 409:
				refused[r.body["code"].(string)]++
			default:
				t.Errorf("claim: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	total := 0
	for code, n := range codes {
		if n != 1 {
			t.Fatalf("code %s acknowledged %d times", code, n)
		}
		total++
	}
	if total != 500 {
		t.Fatalf("%d claims acknowledged, want exactly 500 (refusals %v)", total, refused)
	}
	for u, n := range perUser {
		if n > 2 {
			t.Fatalf("user %s got %d claims, limit 2", u, n)
		}
	}
	if len(refused) != 2 || refused["sold_out"]+refused["limit_reached"] != 1500 {
		t.Fatalf("refusals %v, want 1500 sold_out and limit_reached", refused)
	}
	b := c.must(200, "GET", "/v1/batches/"+id, nil)
	if b["claimed_count"] != 500.0 || b["remaining_count"] != 0.0 || b["pool_depth"] != 0.0 || b["generated_count"] != 500.0 {
		t.Fatalf("batch counts: %v", b)
	}
}

func TestClaimEventsReachTheBus(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	id := c.publishedBatch(20, 1)
	claimIDs := map[string]bool{}
	for i := range 20 {
		claimIDs[c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("e", i)})["id"].(string)] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := a.Bus.JetStream().OrderedConsumer(ctx, a.Bus.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	published := 0
	for len(seen) < 20 || published < 1 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d claim events and %d batch.published: %v", len(seen), published, err)
		}
		var env struct {
			ID   int64           `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(msg.Data(), &env); err != nil {
			t.Fatal(err)
		}
		if msg.Headers().Get("Nats-Msg-Id") != fmt.Sprint(env.ID) {
			t.Fatalf("Nats-Msg-Id %q, envelope id %d", msg.Headers().Get("Nats-Msg-Id"), env.ID)
		}
		switch env.Type {
		case "claim.created":
			var d struct {
				ClaimID string `json:"claim_id"`
				BatchID string `json:"batch_id"`
			}
			_ = json.Unmarshal(env.Data, &d)
			if !claimIDs[d.ClaimID] || d.BatchID != id || msg.Subject() != "coupond.claim.created" {
				t.Fatalf("unexpected claim event %s on %s", env.Data, msg.Subject())
			}
			seen[d.ClaimID]++
		case "batch.published":
			published++
		}
	}
	for cid, n := range seen {
		if n != 1 {
			t.Fatalf("claim %s published %d times", cid, n)
		}
	}
}

func TestRestartKeepsClaimsAndHandsOutNoCodeTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := boot(t, dir)
	c := newClient(t, a)
	id := c.publishedBatch(40, 1)
	codes := map[string]bool{}
	for i := range 25 {
		codes[c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("r", i)})["code"].(string)] = true
	}
	a.Close()

	b := boot(t, dir)
	c = newClient(t, b)
	// The first 25 users are at their limit after the restart.
	c.must(409, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "r0"})
	for i := 25; i < 40; i++ {
		code := c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("r", i)})["code"].(string)
		if codes[code] {
			t.Fatalf("code %s handed out before and after the restart", code)
		}
		codes[code] = true
	}
	r := c.do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "late"})
	if r.status != 409 || r.body["code"] != "sold_out" {
		t.Fatalf("claim after the last code: %d %s", r.status, r.raw)
	}
}

func TestIdempotencyKeyOverHTTP(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	id := c.publishedBatch(10, 3)
	first := c.do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "k"}, "Idempotency-Key", "abc-123")
	second := c.do("POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "k"}, "Idempotency-Key", "abc-123")
	if first.status != 201 || second.status != 201 || first.body["id"] != second.body["id"] || first.body["code"] != second.body["code"] {
		t.Fatalf("first %d %s\nsecond %d %s", first.status, first.raw, second.status, second.raw)
	}
	if first.header.Get("Idempotent-Replayed") == "true" || second.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("Idempotent-Replayed: first %q second %q", first.header.Get("Idempotent-Replayed"), second.header.Get("Idempotent-Replayed"))
	}
	list := c.must(200, "GET", "/v1/users/k/claims", nil)
	if n := len(list["items"].([]any)); n != 1 {
		t.Fatalf("user k holds %d claims after a retried request", n)
	}
}
