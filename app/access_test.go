package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/auth"
	coupondclient "github.com/coupond/coupond/client"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/engine/redis/redistest"
	"github.com/coupond/coupond/sms"
)

// smsBox is an SMS sender that keeps the last code sent to each phone.
type smsBox struct {
	mu    sync.Mutex
	codes map[string]string // challenge id → code
}

func (b *smsBox) Send(_ context.Context, m sms.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.codes == nil {
		b.codes = map[string]string{}
	}
	b.codes[m.ChallengeID] = m.Code
	return nil
}

func (b *smsBox) code(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.codes[id]
}

// engines are the engines every access test runs on.
var engines = []string{"memory", "redis"}

// bootAccess starts a coupond on the named engine (SQLite store) with SMS
// codes going to box; tune adjusts the configuration.
func bootAccess(t testing.TB, engine string, box *smsBox, tune func(*config.Config)) *app.App {
	t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	if engine == "redis" {
		cfg.Redis.URL = redistest.URL(t)
		cfg.Redis.Prefix = redistest.Prefix(t, cfg.Redis.URL, "acc")
	}
	if tune != nil {
		tune(&cfg)
	}
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	if box != nil {
		a.SMSSender = box
	}
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// newKey creates an API key through the API and returns its id and secret.
func (c *client) newKey(role, merchant string) (id, secret string) {
	c.t.Helper()
	k := c.must(201, "POST", "/v1/keys", map[string]any{"name": role + " " + merchant, "role": role, "merchant_id": merchant})
	return k["id"].(string), k["secret"].(string)
}

// signedAs is a client that signs its requests with an API key.
func (c *client) signedAs(keyID, secret string) *client {
	return &client{t: c.t, base: c.base, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &coupondclient.SigningTransport{KeyID: keyID, Secret: secret, Base: &http.Transport{MaxIdleConnsPerHost: 64}}}}
}

// bearerAs is a client that presents an API key's bearer token.
func (c *client) bearerAs(keyID, secret string) *client {
	return &client{t: c.t, base: c.base, token: auth.Token(keyID, secret), http: c.http}
}

// batchWith creates and publishes a batch with the given fields added.
func (c *client) batchWith(total, limit int, fields map[string]any) string {
	c.t.Helper()
	spec := map[string]any{"name": "guarded", "total_quantity": total, "per_user_limit": limit,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 500}}
	for k, v := range fields {
		spec[k] = v
	}
	id := c.must(201, "POST", "/v1/batches", spec)["id"].(string)
	c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)
	return id
}

// refused sends a claim that must be refused with status and code, and
// checks that the store holds no more claims of the batch than before.
func refused(t *testing.T, a *app.App, c *client, batchID string, body map[string]any, status int, code string) response {
	t.Helper()
	before, err := a.Store.ClaimedCount(context.Background(), batchID)
	if err != nil {
		t.Fatal(err)
	}
	r := c.do("POST", "/v1/batches/"+batchID+"/claims", body)
	if r.status != status || r.body["code"] != code {
		t.Fatalf("claim %v: %d %s, want %d %s", body, r.status, r.raw, status, code)
	}
	after, err := a.Store.ClaimedCount(context.Background(), batchID)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("claim %v refused %s, but the batch's claims went from %d to %d", body, code, before, after)
	}
	return r
}

// TestEveryRefusalOnBothEngines drives each anti-fraud refusal over HTTP
// with a signed app key, on the memory and the Redis engine, and checks
// that each changes nothing in the store and is recorded for operators.
func TestEveryRefusalOnBothEngines(t *testing.T) {
	t.Parallel()
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			box := &smsBox{}
			a := bootAccess(t, eng, box, func(c *config.Config) {
				c.SMS.TTL = 2 * time.Second
				c.SMS.MaxAttempts = 2
				c.Risk.URL = ""
			})
			admin := newClient(t, a)
			app := admin.signedAs(admin.newKey("app", ""))
			tag := eng // identities of their own per engine: risk counters are global
			// The steps share the test's clients, so they are not subtests.
			step := func(name string, f func()) { t.Logf("%s", name); f() }

			step("blocked", func() {
				b := admin.batchWith(10, 5, nil)
				admin.must(200, "POST", "/v1/lists/blacklist/entries", map[string]any{"entries": []any{
					map[string]any{"kind": "device", "value": tag + "-farm-1", "reason": "device farm"}}})
				admin.must(200, "POST", "/v1/batches/"+b+"/lists/blacklist/entries", map[string]any{"entries": []any{
					map[string]any{"kind": "ip", "value": "203.0.113.0/24"}, map[string]any{"kind": "phone", "value": "+86 138-0000-0001"}}})
				refused(t, a, app, b, map[string]any{"user_id": "u1", "device_id": tag + "-farm-1"}, 403, "blocked")
				refused(t, a, app, b, map[string]any{"user_id": "u2", "ip": "203.0.113.77"}, 403, "blocked")
				refused(t, a, app, b, map[string]any{"user_id": "u3", "phone": "+8613800000001"}, 403, "blocked")
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "u2", "ip": "203.0.114.77"})
				admin.must(200, "POST", "/v1/lists/blacklist/entries/remove", map[string]any{"entries": []any{
					map[string]any{"kind": "device", "value": tag + "-farm-1"}}})
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "u1", "device_id": tag + "-farm-1"})
			})

			step("not whitelisted", func() {
				b := admin.batchWith(10, 5, map[string]any{"protection": map[string]any{"whitelist_only": true}})
				admin.must(200, "POST", "/v1/batches/"+b+"/lists/whitelist/entries", map[string]any{"entries": []any{
					map[string]any{"kind": "user", "value": "vip"}}})
				refused(t, a, app, b, map[string]any{"user_id": "bob"}, 403, "not_whitelisted")
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "vip"})
			})

			step("rate limited", func() {
				b := admin.batchWith(100, 5, map[string]any{"protection": map[string]any{"rate_limits": map[string]any{
					"user":   map[string]any{"rate": 1, "period_seconds": 60},
					"device": map[string]any{"rate": 2, "period_seconds": 60},
					"ip":     map[string]any{"rate": 3, "period_seconds": 60},
					"batch":  map[string]any{"rate": 6, "period_seconds": 60},
				}}})
				claim := func(user, device, ip string) map[string]any {
					return map[string]any{"user_id": user, "device_id": tag + device, "ip": ip}
				}
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r1", "d1", "198.51.100.1"))
				r := refused(t, a, app, b, claim("r1", "d9", "198.51.100.9"), 429, "rate_limited") // user
				if s, _ := strconv.Atoi(r.header.Get("Retry-After")); s < 1 || s > 60 {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r2", "d1", "198.51.100.1"))
				refused(t, a, app, b, claim("r3", "d1", "198.51.100.3"), 429, "rate_limited") // device
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r4", "d4", "198.51.100.1"))
				refused(t, a, app, b, claim("r5", "d5", "198.51.100.1"), 429, "rate_limited") // ip
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r6", "d6", "198.51.100.6"))
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r7", "d7", "198.51.100.7"))
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("r8", "d8", "198.51.100.8"))
				// Six attempts admitted (one that a limit refuses counts against none): the batch is full.
				refused(t, a, app, b, claim("r9", "d9", "198.51.100.9"), 429, "rate_limited") // batch
			})

			step("sms", func() {
				b := admin.batchWith(10, 5, map[string]any{"protection": map[string]any{"require_sms": true}})
				claim := func(user, phone, id, code string) map[string]any {
					return map[string]any{"user_id": user, "phone": phone, "sms_challenge_id": id, "sms_code": code}
				}
				refused(t, a, app, b, map[string]any{"user_id": "s1", "phone": "+8613900000001"}, 403, "sms_required")
				challenge := func(user, phone string) string {
					return app.must(201, "POST", "/v1/sms/challenges", map[string]any{"batch_id": b, "user_id": user, "phone": phone})["id"].(string)
				}
				ch := challenge("s1", "+8613900000001")
				r := app.do("POST", "/v1/sms/challenges", map[string]any{"batch_id": b, "user_id": "s1", "phone": "+8613900000001"})
				if r.status != 429 || r.body["code"] != "rate_limited" || r.header.Get("Retry-After") == "" {
					t.Fatalf("resend at once: %d %s %q", r.status, r.raw, r.header.Get("Retry-After"))
				}
				wrong := fmt.Sprintf("%06d", (mustAtoi(t, box.code(ch))+1)%1_000_000)
				refused(t, a, app, b, claim("s1", "+8613900000001", ch, wrong), 403, "sms_invalid")
				refused(t, a, app, b, claim("s2", "+8613900000001", ch, box.code(ch)), 403, "sms_invalid") // another user's challenge
				// Two wrong attempts used it up: the right code no longer works.
				refused(t, a, app, b, claim("s1", "+8613900000001", ch, box.code(ch)), 403, "sms_invalid")

				ok := challenge("s3", "+8613900000003")
				app.must(201, "POST", "/v1/batches/"+b+"/claims", claim("s3", "+8613900000003", ok, box.code(ok)))
				refused(t, a, app, b, claim("s3", "+8613900000003", ok, box.code(ok)), 403, "sms_invalid") // used once

				late := challenge("s4", "+8613900000004")
				time.Sleep(2100 * time.Millisecond) // the code's TTL: the engines expire challenges by the wall clock
				refused(t, a, app, b, claim("s4", "+8613900000004", late, box.code(late)), 403, "sms_invalid")
			})

			step("risk", func() {
				admin.must(200, "PUT", "/v1/risk/rule-sets/strict-"+tag, map[string]any{"rules": []any{
					map[string]any{"signal": "device_users", "window_seconds": 3600, "above": 1, "action": "deny"},
					map[string]any{"signal": "account_age", "below_seconds": 86400, "action": "challenge"},
				}})
				b := admin.batchWith(10, 5, map[string]any{"protection": map[string]any{"risk_rules": "strict-" + tag}})
				old := time.Now().Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "k1", "device_id": tag + "-rk", "account_created_at": old})
				r := refused(t, a, app, b, map[string]any{"user_id": "k2", "device_id": tag + "-rk", "account_created_at": old}, 403, "risk_denied")
				if !strings.Contains(r.body["detail"].(string), "device_users over 3600s is 2, above 1") {
					t.Fatalf("denial without its reason: %s", r.raw)
				}
				r = refused(t, a, app, b, map[string]any{"user_id": "k3", "device_id": tag + "-rk3",
					"account_created_at": time.Now().UTC().Format(time.RFC3339)}, 403, "sms_required")
				if !strings.Contains(r.body["detail"].(string), "account age") {
					t.Fatalf("challenge without its reason: %s", r.raw)
				}

				// A counter rule that challenges: the second user of an IP must
				// solve an SMS challenge; a claim that carries a solved one
				// passes, one with a wrong code does not.
				admin.must(200, "PUT", "/v1/risk/rule-sets/ip-"+tag, map[string]any{"rules": []any{
					map[string]any{"signal": "ip_users", "window_seconds": 3600, "above": 1, "action": "challenge"},
				}})
				b = admin.batchWith(10, 5, map[string]any{"protection": map[string]any{"risk_rules": "ip-" + tag}})
				ip := map[string]string{"memory": "192.0.2.10", "redis": "192.0.2.11"}[eng]
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "i1", "ip": ip})
				r = refused(t, a, app, b, map[string]any{"user_id": "i2", "ip": ip}, 403, "sms_required")
				if !strings.Contains(r.body["detail"].(string), "ip_users over 3600s is 2, above 1") {
					t.Fatalf("challenge without its reason: %s", r.raw)
				}
				ch := app.must(201, "POST", "/v1/sms/challenges", map[string]any{"batch_id": b, "user_id": "i2", "phone": "+8613900000012"})["id"].(string)
				wrong := fmt.Sprintf("%06d", (mustAtoi(t, box.code(ch))+1)%1_000_000)
				refused(t, a, app, b, map[string]any{"user_id": "i2", "ip": ip, "phone": "+8613900000012", "sms_challenge_id": ch, "sms_code": wrong}, 403, "sms_invalid")
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "i2", "ip": ip, "phone": "+8613900000012",
					"sms_challenge_id": ch, "sms_code": box.code(ch)})
				// A challenge nothing asks for is not checked.
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "i3", "ip": "192.0.2.200",
					"sms_challenge_id": "nothing-asked", "sms_code": "000000"})
			})

			step("signature", func() {
				b := admin.batchWith(10, 5, nil)
				keyID, secret := admin.newKey("app", "")
				body := `{"user_id":"g1"}`
				send := func(ts int64, nonce string) response {
					sum := sha256.Sum256([]byte(body))
					h := auth.Sign(keyID, secret, auth.Request{Method: "POST", Path: "/v1/batches/" + b + "/claims", BodyHash: sum}, ts, nonce)
					raw := &client{t: t, base: admin.base, http: admin.http}
					return raw.do("POST", "/v1/batches/"+b+"/claims", body, "Authorization", h.String())
				}
				if r := send(time.Now().Add(-10*time.Minute).Unix(), "stale-nonce-0001"); r.status != 401 || r.body["code"] != "bad_signature" {
					t.Fatalf("stale: %d %s", r.status, r.raw)
				}
				now := time.Now().Unix()
				if r := send(now, "fresh-nonce-0001"); r.status != 201 {
					t.Fatalf("fresh: %d %s", r.status, r.raw)
				}
				before, _ := a.Store.ClaimedCount(context.Background(), b)
				if r := send(now, "fresh-nonce-0001"); r.status != 401 || r.body["code"] != "replayed" {
					t.Fatalf("replay: %d %s", r.status, r.raw)
				}
				if after, _ := a.Store.ClaimedCount(context.Background(), b); after != before {
					t.Fatalf("replay changed the store: %d → %d", before, after)
				}
				// A signed claim refused before its claim step uses its nonce up too:
				// replayed once the refusal no longer holds, it is refused replayed.
				admin.must(200, "POST", "/v1/batches/"+b+"/pause", nil)
				if r := send(now, "paused-nonce-0001"); r.status != 409 || r.body["code"] != "not_claimable" {
					t.Fatalf("paused: %d %s", r.status, r.raw)
				}
				admin.must(200, "POST", "/v1/batches/"+b+"/resume", nil)
				if r := send(now, "paused-nonce-0001"); r.status != 401 || r.body["code"] != "replayed" {
					t.Fatalf("replay of a refused claim: %d %s", r.status, r.raw)
				}
				if r := admin.bearerAs(keyID, secret).do("POST", "/v1/batches/"+b+"/claims", body); r.status != 401 || r.body["code"] != "bad_signature" {
					t.Fatalf("app key as a bearer token: %d %s", r.status, r.raw)
				}
			})

			step("limit across identities", func() {
				b := admin.batchWith(10, 1, map[string]any{"protection": map[string]any{"count_across": []string{"phone", "device"}}})
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "p1", "phone": "+8613700000001", "device_id": tag + "-pd1"})
				refused(t, a, app, b, map[string]any{"user_id": "p2", "phone": "+8613700000001"}, 409, "limit_reached")
				refused(t, a, app, b, map[string]any{"user_id": "p3", "device_id": tag + "-pd1"}, 409, "limit_reached")
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "p4", "phone": "+8613700000004", "device_id": tag + "-pd4"})
			})

			// Every refusal is listed for operators with its reason.
			a.Service.FlushRefusals(context.Background())
			seen := map[string]bool{}
			for cursor := ""; ; {
				page := admin.must(200, "GET", "/v1/refusals?limit=100&cursor="+cursor, nil)
				for _, it := range page["items"].([]any) {
					r := it.(map[string]any)
					if r["reason"] == "" {
						t.Errorf("refusal without a reason: %v", r)
					}
					seen[r["code"].(string)] = true
				}
				next, _ := page["next_cursor"].(string)
				if next == "" {
					break
				}
				cursor = next
			}
			for _, code := range []string{"blocked", "not_whitelisted", "rate_limited", "sms_required", "sms_invalid", "risk_denied", "bad_signature", "replayed"} {
				if !seen[code] {
					t.Errorf("no %s refusal listed (saw %v)", code, seen)
				}
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("code %q: %v", s, err)
	}
	return n
}

// TestSignedClaimReplayedConcurrently sends one signed claim many times at
// once: at most one is a claim, the others are replayed.
func TestSignedClaimReplayedConcurrently(t *testing.T) {
	t.Parallel()
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			a := bootAccess(t, eng, nil, nil)
			admin := newClient(t, a)
			keyID, secret := admin.newKey("app", "")
			b := admin.batchWith(100, 50, nil)
			body := `{"user_id":"twice"}`
			path := "/v1/batches/" + b + "/claims"
			h := auth.Sign(keyID, secret, auth.Request{Method: "POST", Path: path, BodyHash: sha256.Sum256([]byte(body))},
				time.Now().Unix(), auth.NewNonce()).String()
			const n = 16
			statuses := make([]response, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					raw := &client{t: t, base: admin.base, http: admin.http}
					statuses[i] = raw.do("POST", path, body, "Authorization", h)
				})
			}
			close(start)
			wg.Wait()
			created := 0
			for _, r := range statuses {
				switch {
				case r.status == 201:
					created++
				case r.status == 401 && r.body["code"] == "replayed":
				default:
					t.Fatalf("%d %s", r.status, r.raw)
				}
			}
			got, err := a.Store.ClaimedCount(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			if created != 1 || got != 1 {
				t.Fatalf("%d answers 201, %d claims stored; want 1 and 1", created, got)
			}
		})
	}
}

// TestKeyLifecycle: keys are made through the API, their secret shown once
// and stored hashed, listed, rotated with a grace period, and revoked.
func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	a := bootAccess(t, "memory", nil, nil)
	admin := newClient(t, a)
	id, secret := admin.newKey("operator", "")

	stored, err := a.Store.GetKey(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if stored.SecretHash != hex.EncodeToString(sum[:]) || strings.Contains(fmt.Sprintf("%+v", *stored), secret) {
		t.Fatalf("stored key %+v: want only the secret's hash", *stored)
	}
	got := admin.must(200, "GET", "/v1/keys/"+id, nil)
	if _, shown := got["secret"]; shown || got["role"] != "operator" {
		t.Fatalf("get key: %v", got)
	}
	list := admin.must(200, "GET", "/v1/keys?limit=100", nil)
	found := false
	for _, it := range list["items"].([]any) {
		k := it.(map[string]any)
		if _, shown := k["secret"]; shown {
			t.Fatalf("listed with its secret: %v", k)
		}
		found = found || k["id"] == id
	}
	if !found {
		t.Fatalf("key %s not listed: %v", id, list)
	}

	op := admin.bearerAs(id, secret)
	op.must(200, "GET", "/v1/batches", nil)
	if r := op.do("POST", "/v1/keys", map[string]any{"role": "admin"}); r.status != 403 {
		t.Fatalf("operator made a key: %d %s", r.status, r.raw)
	}

	rotated := admin.must(200, "POST", "/v1/keys/"+id+"/rotate", map[string]any{"grace_seconds": 3600})
	secret2 := rotated["secret"].(string)
	if secret2 == secret {
		t.Fatal("rotation kept the secret")
	}
	op.must(200, "GET", "/v1/batches", nil) // within the grace period
	admin.bearerAs(id, secret2).must(200, "GET", "/v1/batches", nil)
	rotated = admin.must(200, "POST", "/v1/keys/"+id+"/rotate", nil) // no grace: the last secret stops at once
	if r := admin.bearerAs(id, secret2).do("GET", "/v1/batches", nil); r.status != 401 {
		t.Fatalf("secret rotated away without grace: %d", r.status)
	}
	secret3 := rotated["secret"].(string)
	admin.bearerAs(id, secret3).must(200, "GET", "/v1/batches", nil)

	revoked := admin.must(200, "POST", "/v1/keys/"+id+"/revoke", nil)
	if revoked["revoked_at"] == nil {
		t.Fatalf("revoke: %v", revoked)
	}
	if r := admin.bearerAs(id, secret3).do("GET", "/v1/batches", nil); r.status != 401 || r.body["code"] != "unauthorized" {
		t.Fatalf("revoked key: %d %s", r.status, r.raw)
	}
	if r := admin.do("POST", "/v1/keys/"+id+"/rotate", nil); r.status != 409 {
		t.Fatalf("rotate a revoked key: %d %s", r.status, r.raw)
	}
}

// TestExternalRiskService: a rule set with external: true asks the risk
// service over HTTP; its verdicts refuse or challenge, a slow answer is cut
// at the timeout, and then the claim goes on with the local verdict
// (fail-open) or is refused unavailable (fail-closed), changing nothing.
func TestExternalRiskService(t *testing.T) {
	t.Parallel()
	risk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a struct {
			UserID string `json:"user_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&a)
		switch {
		case strings.HasPrefix(a.UserID, "deny"):
			_, _ = io.WriteString(w, `{"action":"deny","reason":"known farm"}`)
		case strings.HasPrefix(a.UserID, "challenge"):
			_, _ = io.WriteString(w, `{"action":"challenge","reason":"new device"}`)
		case strings.HasPrefix(a.UserID, "slow"):
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, `{"action":"allow"}`)
		default:
			_, _ = io.WriteString(w, `{"action":"allow"}`)
		}
	}))
	t.Cleanup(risk.Close)
	for _, failOpen := range []bool{true, false} {
		t.Run(fmt.Sprintf("fail-open=%v", failOpen), func(t *testing.T) {
			t.Parallel()
			a := bootAccess(t, "memory", nil, func(c *config.Config) {
				c.Risk.URL, c.Risk.Timeout, c.Risk.FailOpen = risk.URL, 100*time.Millisecond, failOpen
				c.Ops.BreakerFailures = -1 // every call reaches the service
			})
			admin := newClient(t, a)
			app := admin.signedAs(admin.newKey("app", ""))
			admin.must(200, "PUT", "/v1/risk/rule-sets/outside", map[string]any{"rules": []any{}, "external": true})
			b := admin.batchWith(10, 5, map[string]any{"protection": map[string]any{"risk_rules": "outside"}})

			app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "fine"})
			r := refused(t, a, app, b, map[string]any{"user_id": "deny-1"}, 403, "risk_denied")
			if !strings.Contains(string(r.raw), "known farm") {
				t.Errorf("deny without the service's reason: %s", r.raw)
			}
			refused(t, a, app, b, map[string]any{"user_id": "challenge-1"}, 403, "sms_required")

			start := time.Now()
			if failOpen {
				app.must(201, "POST", "/v1/batches/"+b+"/claims", map[string]any{"user_id": "slow-1"})
			} else {
				refused(t, a, app, b, map[string]any{"user_id": "slow-1"}, 503, "unavailable")
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("a slow risk service held the claim %v (timeout 100ms)", d)
			}

			a.Service.FlushRefusals(context.Background())
			list := admin.must(200, "GET", "/v1/refusals?batch_id="+b+"&code=risk_denied", nil)
			items := list["items"].([]any)
			if len(items) != 1 || !strings.Contains(items[0].(map[string]any)["reason"].(string), "known farm") {
				t.Errorf("refusals: %v", list)
			}
		})
	}
}
