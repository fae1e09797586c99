package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/engine/redis/redistest"
)

// bootRedis boots coupond on SQLite with the Redis engine of the shared test
// Redis, under keys of its own.
func bootRedis(b *testing.B) *app.App {
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: b.TempDir(), AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	cfg.Redis.URL = redistest.URL(b)
	cfg.Redis.Prefix = redistest.Prefix(b, cfg.Redis.URL, "bench")
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err := a.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkHTTPClaimRedis is BenchmarkHTTPClaim with the Redis engine: the
// group commit's Settle (and, with the user cache, its bumps) cost a round
// trip to Redis per group.
func BenchmarkHTTPClaimRedis(b *testing.B) {
	a := bootRedis(b)
	defer a.Close()
	c := newClient(&testing.T{}, a)
	id := c.publishedBatch(b.N+1000, 1)
	httpLoad(b, http.StatusCreated, "claims", claimRequest(a, id))
}

// BenchmarkHTTPUserClaims reads "my coupons" of 1,000 users holding three
// coupons each, over HTTP, on the embedded default and with the Redis
// engine (whose cache then lives in Redis).
func BenchmarkHTTPUserClaims(b *testing.B) { onEachEngine(b, userClaimsLoad) }

// onEachEngine runs load on an instance of the embedded default and on one
// with the Redis engine, as sub-benchmarks engine=memory and engine=redis.
func onEachEngine(b *testing.B, load func(*testing.B, *app.App)) {
	b.Run("engine=memory", func(b *testing.B) {
		a := boot(&testing.T{}, b.TempDir())
		defer a.Close()
		load(b, a)
	})
	b.Run("engine=redis", func(b *testing.B) {
		a := bootRedis(b)
		defer a.Close()
		load(b, a)
	})
}

func userClaimsLoad(b *testing.B, a *app.App) {
	c := newClient(&testing.T{}, a)
	const users = 1000
	id := c.publishedBatch(3*users, 3)
	for u := range users {
		for range 3 {
			c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("q", u)})
		}
	}
	httpLoad(b, http.StatusOK, "reads", func(n int64) *http.Request {
		req, _ := http.NewRequest("GET", a.URL()+"/v1/users/q"+strconv.FormatInt(n%users, 10)+"/claims?status=available", nil)
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		return req
	})
}

// BenchmarkHTTPProductTags reads the badges of 20 products a request, over
// HTTP from 32 clients, on the embedded default and with the Redis engine:
// two batches tag products p0…p999.
func BenchmarkHTTPProductTags(b *testing.B) { onEachEngine(b, productTagsLoad) }

func productTagsLoad(b *testing.B, a *app.App) {
	c := newClient(&testing.T{}, a)
	const products = 1000
	rules := make([]any, products)
	for i := range rules {
		rules[i] = map[string]any{"ref_type": "product", "ref_id": fmt.Sprint("p", i), "use_type": "include"}
	}
	for range 2 {
		c.batchWith(100, 1, map[string]any{"rules": rules, "ad_copy": "2 off today"})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.do("GET", "/v1/products/tags?ids=p999", nil)
		if items, _ := r.body["items"].([]any); len(items) == 1 {
			if tags, _ := items[0].(map[string]any)["tags"].([]any); len(tags) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the tags did not appear: %s", r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	httpLoad(b, http.StatusOK, "reads", func(n int64) *http.Request {
		first := int(n) * 20
		url := make([]byte, 0, 256)
		url = append(url, a.URL()+"/v1/products/tags?ids="...)
		for i := range 20 {
			if i > 0 {
				url = append(url, ',')
			}
			url = append(url, 'p')
			url = strconv.AppendInt(url, int64((first+i)%products), 10)
		}
		req, _ := http.NewRequest("GET", string(url), nil)
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		return req
	})
}
