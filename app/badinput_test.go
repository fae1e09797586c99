package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// fingerprint summarises all visible state, to prove a refused request
// changed nothing.
func (c *client) fingerprint() string {
	c.t.Helper()
	var b strings.Builder
	list := c.must(200, "GET", "/v1/batches?limit=100", nil)
	for _, it := range list["items"].([]any) {
		id := it.(map[string]any)["id"].(string)
		v := c.must(200, "GET", "/v1/batches/"+id, nil)
		fmt.Fprintf(&b, "%s %v %v %v %v|", id, v["status"], v["generated_count"], v["claimed_count"], v["pool_depth"])
	}
	u := c.must(200, "GET", "/v1/users/victim/claims", nil)
	fmt.Fprintf(&b, "victim:%d", len(u["items"].([]any)))
	return b.String()
}

func TestBadInputGetsAProblemAndChangesNothing(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	id := c.publishedBatch(10, 1)
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "victim"})
	draft := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "draft", "total_quantity": 5, "validity": map[string]any{"days": 1}, "amount": map[string]any{"type": "fixed", "value": 1},
	})["id"].(string)
	unknown := "01M8BX0V670745AVN146H8QP3A"
	claims := "/v1/batches/" + id + "/claims"
	good := `{"name":"n","total_quantity":5,"validity":{"days":1},"amount":{"type":"fixed","value":1}}`
	huge := `{"user_id":"` + strings.Repeat("x", 5000) + `"}`
	hugeBatch := `{"name":"n","total_quantity":5,"validity":{"days":1},"amount":{"type":"fixed","value":1},"ad_copy":"` + strings.Repeat("x", 600<<10) + `"}`

	before := c.fingerprint()
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
		field                    string // a location the problem must name, if any
	}{
		// Authentication.
		{"no token", "GET", "/v1/batches", "", []string{"Authorization", ""}, 401, "unauthorized", ""},
		{"wrong token", "GET", "/v1/batches", "", []string{"Authorization", "Bearer nope"}, 401, "unauthorized", ""},
		{"basic auth", "POST", claims, `{"user_id":"a"}`, []string{"Authorization", "Basic dGVzdDp0ZXN0"}, 401, "unauthorized", ""},
		// POST /v1/batches.
		{"batch: malformed JSON", "POST", "/v1/batches", `{"name":`, nil, 400, "bad_request", ""},
		{"batch: not an object", "POST", "/v1/batches", `[1,2]`, nil, 422, "invalid", ""},
		{"batch: empty body", "POST", "/v1/batches", ``, nil, 400, "bad_request", ""},
		{"batch: wrong type", "POST", "/v1/batches", strings.Replace(good, `"total_quantity":5`, `"total_quantity":"5"`, 1), nil, 422, "invalid", "body.total_quantity"},
		{"batch: float quantity", "POST", "/v1/batches", strings.Replace(good, `"total_quantity":5`, `"total_quantity":5.5`, 1), nil, 422, "invalid", "body.total_quantity"},
		{"batch: unknown field", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","colour":"red"`, 1), nil, 422, "invalid", "body.colour"},
		{"batch: missing name", "POST", "/v1/batches", strings.Replace(good, `"name":"n",`, ``, 1), nil, 422, "invalid", "body.name"},
		{"batch: total too big", "POST", "/v1/batches", strings.Replace(good, `"total_quantity":5`, `"total_quantity":100000000000`, 1), nil, 422, "invalid", "body.total_quantity"},
		{"batch: negative limit", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","per_user_limit":-1`, 1), nil, 422, "invalid", "body.per_user_limit"},
		{"batch: negative amount", "POST", "/v1/batches", strings.Replace(good, `"value":1`, `"value":-1`, 1), nil, 422, "invalid", "body.amount.value"},
		{"batch: zero amount", "POST", "/v1/batches", strings.Replace(good, `"value":1`, `"value":0`, 1), nil, 422, "invalid", "body.amount.value"},
		{"batch: unknown type", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","type":"bogo"`, 1), nil, 422, "invalid", "body.type"},
		{"batch: bad time", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","claim_start":"tomorrow"`, 1), nil, 422, "invalid", "body.claim_start"},
		{"batch: split budget too small", "POST", "/v1/batches", strings.Replace(good, `{"type":"fixed","value":1}`, `{"type":"split","budget":4,"min":1}`, 1), nil, 422, "invalid", "body.amount.budget"},
		{"batch: window backwards", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","claim_start":"2026-12-02T00:00:00Z","claim_end":"2026-12-01T00:00:00Z"`, 1), nil, 422, "invalid", "body.claim_end"},
		{"batch: bad rule", "POST", "/v1/batches", strings.Replace(good, `"name":"n"`, `"name":"n","rules":[{"ref_type":"product","ref_id":"p","use_type":"bear"}]`, 1), nil, 422, "invalid", ""},
		{"batch: too large", "POST", "/v1/batches", hugeBatch, nil, 413, "too_large", ""},
		{"batch: form body", "POST", "/v1/batches", "name=n", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", ""},
		// GET /v1/batches.
		{"list: bad status", "GET", "/v1/batches?status=gone", "", nil, 422, "invalid", "query.status"},
		{"list: limit 0", "GET", "/v1/batches?limit=0", "", nil, 422, "invalid", "query.limit"},
		{"list: limit 101", "GET", "/v1/batches?limit=101", "", nil, 422, "invalid", "query.limit"},
		{"list: limit not a number", "GET", "/v1/batches?limit=ten", "", nil, 422, "invalid", "query.limit"},
		{"list: bad cursor", "GET", "/v1/batches?cursor=%27%3B%20drop", "", nil, 422, "invalid", "query.cursor"},
		{"list: unknown parameter", "GET", "/v1/batches?sort=name", "", nil, 422, "invalid", "query.sort"},
		// GET /v1/batches/{id} and transitions.
		{"get: unknown batch", "GET", "/v1/batches/" + unknown, "", nil, 404, "not_found", ""},
		{"get: malformed id", "GET", "/v1/batches/..%2F..", "", nil, 404, "not_found", ""},
		{"publish: unknown batch", "POST", "/v1/batches/" + unknown + "/publish", "", nil, 404, "not_found", ""},
		{"publish: already active", "POST", "/v1/batches/" + id + "/publish", "", nil, 409, "conflict", ""},
		{"resume: not paused", "POST", "/v1/batches/" + id + "/resume", "", nil, 409, "conflict", ""},
		{"pause: a draft", "POST", "/v1/batches/" + draft + "/pause", "", nil, 409, "conflict", ""},
		{"unknown transition", "POST", "/v1/batches/" + id + "/explode", "", nil, 404, "not_found", ""},
		// POST /v1/batches/{id}/claims.
		{"claim: malformed JSON", "POST", claims, `{"user_id":"a"`, nil, 400, "bad_request", ""},
		{"claim: wrong type", "POST", claims, `{"user_id":42}`, nil, 422, "invalid", "body.user_id"},
		{"claim: missing user", "POST", claims, `{"platform":"ios"}`, nil, 422, "invalid", "body.user_id"},
		{"claim: empty user", "POST", claims, `{"user_id":""}`, nil, 422, "invalid", "body.user_id"},
		{"claim: control characters", "POST", claims, `{"user_id":"a\u0000b"}`, nil, 422, "invalid", "body.user_id"},
		{"claim: bad platform", "POST", claims, `{"user_id":"a","platform":"iOS 17"}`, nil, 422, "invalid", "body.platform"},
		{"claim: bad phone", "POST", claims, `{"user_id":"a","phone":"call me"}`, nil, 422, "invalid", "body.phone"},
		{"claim: unknown field", "POST", claims, `{"user_id":"a","admin":true}`, nil, 422, "invalid", "body.admin"},
		{"claim: too large", "POST", claims, huge, nil, 413, "too_large", ""},
		{"claim: bad idempotency key", "POST", claims, `{"user_id":"a"}`, []string{"Idempotency-Key", "has space"}, 422, "invalid", "body.Idempotency-Key"},
		{"claim: unknown batch", "POST", "/v1/batches/" + unknown + "/claims", `{"user_id":"a"}`, nil, 404, "not_found", ""},
		{"claim: malformed batch id", "POST", "/v1/batches/x/claims", `{"user_id":"a"}`, nil, 404, "not_found", ""},
		{"claim: draft batch", "POST", "/v1/batches/" + draft + "/claims", `{"user_id":"a"}`, nil, 409, "not_claimable", ""},
		{"claim: over the limit", "POST", claims, `{"user_id":"victim"}`, nil, 409, "limit_reached", ""},
		// GET /v1/users/{user_id}/claims, /v1/claims/{id}, /v1/codes/{code}.
		{"my coupons: bad status", "GET", "/v1/users/victim/claims?status=lost", "", nil, 422, "invalid", "query.status"},
		{"my coupons: bad cursor", "GET", "/v1/users/victim/claims?cursor=zzz", "", nil, 422, "invalid", "query.cursor"},
		{"my coupons: limit 1000", "GET", "/v1/users/victim/claims?limit=1000", "", nil, 422, "invalid", "query.limit"},
		{"claim: unknown id", "GET", "/v1/claims/" + unknown, "", nil, 404, "not_found", ""},
		{"code: mistyped", "GET", "/v1/codes/ABCD-EFGH-JKMN", "", nil, 422, "invalid", "path.code"},
		{"code: not an alphabet", "GET", "/v1/codes/%E2%98%83", "", nil, 422, "invalid", "path.code"},
		// Elsewhere.
		{"unknown endpoint", "GET", "/v1/nothing", "", nil, 404, "not_found", ""},
		{"wrong method", "DELETE", "/v1/batches/" + id, "", nil, 405, "method_not_allowed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" || tc.method == "POST" {
				body = tc.body
			}
			cc := *c
			cc.t = t
			r := cc.do(tc.method, tc.path, body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			if r.body["code"] != tc.code || r.body["status"] != float64(tc.status) || r.body["title"] == "" {
				t.Fatalf("problem %s, want code %q", r.raw, tc.code)
			}
			if tc.field != "" && !strings.Contains(string(r.raw), `"location":"`+tc.field+`"`) {
				t.Fatalf("problem %s does not name %s", r.raw, tc.field)
			}
		})
	}
	if after := c.fingerprint(); after != before {
		t.Fatalf("refused requests changed state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestOpenAPIAndDocsWorkOffline(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	spec := c.must(200, "GET", "/openapi.json", nil)
	if spec["openapi"] != "3.1.0" {
		t.Fatalf("openapi version %v", spec["openapi"])
	}
	paths := spec["paths"].(map[string]any)
	for _, p := range []string{"/v1/batches", "/v1/batches/{id}", "/v1/batches/{id}/publish", "/v1/batches/{id}/claims", "/v1/users/{user_id}/claims"} {
		if paths[p] == nil {
			t.Errorf("openapi.json lacks %s", p)
		}
	}
	r := c.do("GET", "/docs", nil)
	page := string(r.raw)
	if r.status != http.StatusOK || !strings.Contains(page, "/openapi.json") {
		t.Fatalf("/docs: %d", r.status)
	}
	// Nothing on the page may come from another host.
	for _, bad := range []string{"http://", "https://", "//unpkg", "//cdn"} {
		if strings.Contains(page, bad) {
			t.Fatalf("/docs refers to %q: it must work offline", bad)
		}
	}
}
