package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/auth"
)

// BenchmarkHTTPClaimProtection measures the claim path over HTTP with the
// access checks off and on, in one run on one instance, so that the two
// figures share the machine's state:
//
//   - off: the bootstrap bearer token, a batch with no protection, no lists;
//   - on: an app key signing every request (HMAC, body hash, nonce checked in
//     the claim step), global black and white lists of
//     COUPOND_BENCH_LIST_ENTRIES entries (default 1,000,000) plus a batch
//     blacklist with IP prefixes, rate limits per user, device, IP and batch
//     (never reached), and a risk rule set over the device and IP sliding
//     windows and the account's age (never firing), with a device, an IP and
//     an account age on every claim.
//
// Each engine is measured: memory (the embedded default) and Redis, off
// and on in turns, COUPOND_BENCH_ROUNDS times (default 3).
func BenchmarkHTTPClaimProtection(b *testing.B) {
	entries, rounds := 1_000_000, 3
	if s := os.Getenv("COUPOND_BENCH_LIST_ENTRIES"); s != "" {
		entries, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("COUPOND_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for _, eng := range engines {
		b.Run("engine="+eng, func(b *testing.B) {
			t := &testing.T{}
			a := bootAccess(b, eng, nil, nil) // closed, and its Redis keys deleted, by b's cleanups
			c := newClient(t, a)
			keyID, secret := c.newKey("app", "")
			c.must(200, "PUT", "/v1/risk/rule-sets/bench", map[string]any{"rules": []any{
				map[string]any{"signal": "device_users", "window_seconds": 3600, "above": 5, "action": "deny"},
				map[string]any{"signal": "ip_users", "window_seconds": 600, "above": 50, "action": "challenge"},
				map[string]any{"signal": "device_claims", "window_seconds": 60, "above": 20, "action": "deny"},
				map[string]any{"signal": "account_age", "below_seconds": 3600, "action": "challenge"},
			}})
			loadLists(b, a, entries)

			// The two are measured in turns, so that a burst of other work on
			// a shared machine hurts both alike.
			for range rounds {
				b.Run("checks=off", func(b *testing.B) {
					id := c.publishedBatch(b.N+1000, 1)
					claimLoad(b, a, id, func(req *http.Request, _ int64) {
						req.Header.Set("Authorization", "Bearer "+a.AdminToken())
					}, func(n int64) string {
						return `{"user_id":"bench-` + strconv.FormatInt(n, 10) + `","platform":"ios"}`
					})
				})
				b.Run("checks=on", func(b *testing.B) {
					id := c.batchWith(b.N+1000, 1, map[string]any{"protection": map[string]any{
						"risk_rules": "bench",
						"rate_limits": map[string]any{
							"user":   map[string]any{"rate": 5, "period_seconds": 60},
							"device": map[string]any{"rate": 10, "period_seconds": 60},
							"ip":     map[string]any{"rate": 100, "period_seconds": 60},
							"batch":  map[string]any{"rate": 1_000_000},
						},
					}})
					c.must(200, "POST", "/v1/batches/"+id+"/lists/blacklist/entries", map[string]any{"entries": []any{
						map[string]any{"kind": "ip", "value": "203.0.113.0/24"}, map[string]any{"kind": "ip", "value": "2001:db8::/32"},
						map[string]any{"kind": "device", "value": "farm-1"}, map[string]any{"kind": "user", "value": "mallory"},
					}})
					old := time.Now().Add(-400 * 24 * time.Hour).UTC().Format(time.RFC3339)
					claimLoad(b, a, id, func(req *http.Request, _ int64) {
						if err := auth.SignRequest(req, keyID, secret, time.Now()); err != nil {
							b.Fatal(err)
						}
					}, func(n int64) string {
						s := strconv.FormatInt(n, 10)
						return `{"user_id":"bench-` + s + `","platform":"ios","device_id":"dev-` + s + `","ip":"10.` +
							strconv.FormatInt(n>>16&255, 10) + "." + strconv.FormatInt(n>>8&255, 10) + "." + strconv.FormatInt(n&255, 10) +
							`","account_created_at":"` + old + `"}`
					})
				})
			}
		})
	}
}

// loadLists puts n entries on the global lists (nine in ten on the
// blacklist, of every kind), straight into the store, and loads the
// instance's replica.
func loadLists(b *testing.B, a *app.App, n int) {
	ctx := context.Background()
	start := time.Now()
	kinds := []access.Kind{access.KindUser, access.KindPhone, access.KindDevice, access.KindIP}
	chunk := make([]access.Entry, 0, 10_000)
	for i := range n {
		e := access.Entry{List: access.Blacklist, Kind: kinds[i%4]}
		if i%10 == 9 {
			e.List = access.Whitelist
		}
		switch e.Kind {
		case access.KindPhone:
			e.Value = fmt.Sprintf("+86139%08d", i)
		case access.KindIP:
			e.Value = fmt.Sprintf("172.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		default:
			e.Value = fmt.Sprintf("listed-%d", i)
		}
		chunk = append(chunk, e)
		if len(chunk) == cap(chunk) || i == n-1 {
			if _, err := a.Store.PutListEntries(ctx, chunk, time.Now().UTC()); err != nil {
				b.Fatal(err)
			}
			chunk = chunk[:0]
		}
	}
	if err := a.Service.SyncLists(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d list entries stored and loaded in %v; the replica holds %d", n, time.Since(start).Round(time.Millisecond), a.Service.ListEntriesHeld())
}

// claimLoad sends b.N claims from 32 concurrent clients, each one user's,
// signed by sign, and reports claims per second and the process's CPU time
// per claim.
func claimLoad(b *testing.B, a *app.App, batchID string, sign func(*http.Request, int64), body func(n int64) string) {
	url := a.URL() + "/v1/batches/" + batchID + "/claims"
	httpLoad(b, http.StatusCreated, "claims", func(n int64) *http.Request {
		req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(body(n))))
		req.Header.Set("Content-Type", "application/json")
		sign(req, n)
		return req
	})
}
