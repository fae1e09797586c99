package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/httpapi"
)

// isolationProbe is how a merchant B tries one operation on merchant A's
// things: the request, the statuses B may get (others than 2xx mean no
// access; a 2xx must show none of A's things), and what A itself gets from
// the same request (0: not checked), which proves the probe aims at A's data.
type isolationProbe struct {
	method, path string
	body         any
	headers      []string
	own          int
}

// TestMerchantIsolationOnEveryEndpoint drives every /v1 operation from the
// roles table (as the OpenAPI description carries it): a merchant key gets
// 403 from each operation the table closes to merchants; on each it opens,
// merchant B tries merchant A's batch, claims, codes, redemptions, stats,
// lists and refusals and must see or change none of them. An operation
// open to merchants without a probe here fails the test, so a new endpoint
// cannot be forgotten.
func TestMerchantIsolationOnEveryEndpoint(t *testing.T) {
	t.Parallel()
	a := bootAccess(t, "memory", nil, nil)
	admin := newClient(t, a)
	merchantA := admin.bearerAs(admin.newKey("merchant", "m-a"))
	merchantB := admin.bearerAs(admin.newKey("merchant", "m-b"))
	app := admin.signedAs(admin.newKey("app", ""))

	// Merchant A's things.
	spec := map[string]any{"name": "a's sale", "total_quantity": 10, "per_user_limit": 5, "merchant_id": "m-b", // its own, whatever it says
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 500}}
	batchA := merchantA.must(201, "POST", "/v1/batches", spec)
	if batchA["merchant_id"] != "m-a" {
		t.Fatalf("a merchant made a batch for %v", batchA["merchant_id"])
	}
	bA := batchA["id"].(string)
	draftA := merchantA.must(201, "POST", "/v1/batches", spec)["id"].(string)
	merchantA.must(200, "POST", "/v1/batches/"+bA+"/publish", nil)
	claimA := app.must(201, "POST", "/v1/batches/"+bA+"/claims", map[string]any{"user_id": "user-of-a", "phone": "+8613600000001"})
	claim2 := app.must(201, "POST", "/v1/batches/"+bA+"/claims", map[string]any{"user_id": "user-of-a"})
	cart := map[string]any{"items": []map[string]any{{"id": "l1", "product_id": "sku-1", "merchant_id": "m-a", "unit_price": 1500, "quantity": 1}}}
	redA := merchantA.must(201, "POST", "/v1/redemptions/direct", map[string]any{"order_id": "order-of-a", "code": claimA["code"], "cart": cart})
	merchantA.must(200, "POST", "/v1/batches/"+bA+"/lists/blacklist/entries", map[string]any{"entries": []any{
		map[string]any{"kind": "user", "value": "blocked-by-a"}}})
	r := app.do("POST", "/v1/batches/"+bA+"/claims", map[string]any{"user_id": "blocked-by-a"})
	if r.status != 403 {
		t.Fatalf("blocked claim: %d %s", r.status, r.raw)
	}
	a.Service.FlushRefusals(context.Background())
	jobA := merchantA.must(202, "POST", "/v1/batches/"+bA+"/grant-jobs", "user_id\nuser-of-a\n", "Content-Type", "text/plain")["id"].(string)

	secrets := []string{bA, draftA, claimA["id"].(string), claimA["code"].(string), claim2["id"].(string), claim2["code"].(string),
		redA["id"].(string), "order-of-a", "user-of-a", "blocked-by-a", jobA}
	entries := map[string]any{"entries": []any{map[string]any{"kind": "user", "value": "blocked-by-a"}}}
	code2 := claim2["code"].(string)

	probes := map[string][]isolationProbe{
		"create-batch": {{method: "POST", path: "/v1/batches", body: spec}}, // checked below: B's batch is B's
		"list-batches": {{method: "GET", path: "/v1/batches", own: 200}, {method: "GET", path: "/v1/batches?merchant_id=m-a"}},
		"get-batch":    {{method: "GET", path: "/v1/batches/" + bA, own: 200}},
		"update-batch": {{method: "PATCH", path: "/v1/batches/" + draftA, body: spec, own: 200},
			{method: "PATCH", path: "/v1/batches/" + bA, body: spec}},
		"publish-batch":  {{method: "POST", path: "/v1/batches/" + bA + "/publish"}},
		"pause-batch":    {{method: "POST", path: "/v1/batches/" + bA + "/pause"}},
		"resume-batch":   {{method: "POST", path: "/v1/batches/" + bA + "/resume"}},
		"end-batch":      {{method: "POST", path: "/v1/batches/" + bA + "/end"}},
		"batch-stats":    {{method: "GET", path: "/v1/batches/" + bA + "/stats", own: 200}},
		"merchant-stats": {{method: "GET", path: "/v1/merchants/m-a/stats"}},

		"list-user-claims": {{method: "GET", path: "/v1/users/user-of-a/claims", own: 200}},
		"get-claim":        {{method: "GET", path: "/v1/claims/" + claimA["id"].(string), own: 200}},
		"get-code":         {{method: "GET", path: "/v1/codes/" + code2, own: 200}},
		"search-claims": {{method: "GET", path: "/v1/search/claims?batch_id=" + bA, own: 200},
			{method: "GET", path: "/v1/search/claims?merchant_id=m-a"}, {method: "GET", path: "/v1/search/claims?user_id=user-of-a"}},
		"export-claims": {{method: "GET", path: "/v1/search/claims.csv?batch_id=" + bA, own: 200},
			{method: "GET", path: "/v1/search/claims.csv?user_id=user-of-a"}},
		"search-codes": {{method: "GET", path: "/v1/search/codes?batch_id=" + bA, own: 200},
			{method: "GET", path: "/v1/search/codes?code=" + code2}, {method: "GET", path: "/v1/search/codes?merchant_id=m-a"}},

		"redeem-code": {{method: "POST", path: "/v1/redemptions/direct",
			body: map[string]any{"order_id": "order-of-b", "code": code2, "cart": cart}}},
		"get-redemption":       {{method: "GET", path: "/v1/redemptions/" + redA["id"].(string), own: 200}},
		"get-order-redemption": {{method: "GET", path: "/v1/orders/order-of-a/redemption", own: 200}},
		"search-redemptions": {{method: "GET", path: "/v1/search/redemptions?order_id=order-of-a", own: 200},
			{method: "GET", path: "/v1/search/redemptions?merchant_id=m-a"}, {method: "GET", path: "/v1/search/redemptions?batch_id=" + bA}},
		"product-tags": {{method: "GET", path: "/v1/products/tags?ids=sku-1,merchant:m-a"}},

		"grant": {{method: "POST", path: "/v1/batches/" + bA + "/grants", body: map[string]any{"user_id": "granted-by-b"},
			headers: []string{"Idempotency-Key", "grant-1"}, own: 201}},
		"create-grant-job": {{method: "POST", path: "/v1/batches/" + bA + "/grant-jobs", body: "user_id\ngranted-by-b\n",
			headers: []string{"Content-Type", "text/plain"}}},
		"get-job":      {{method: "GET", path: "/v1/jobs/" + jobA, own: 200}},
		"import-codes": {{method: "POST", path: "/v1/batches/" + bA + "/imports", body: "code\nB-IMPORT-1\n", headers: []string{"Content-Type", "text/csv"}}},

		"add-batch-list-entries":    {{method: "POST", path: "/v1/batches/" + bA + "/lists/whitelist/entries", body: entries}},
		"remove-batch-list-entries": {{method: "POST", path: "/v1/batches/" + bA + "/lists/blacklist/entries/remove", body: entries}},
		"list-batch-list-entries":   {{method: "GET", path: "/v1/batches/" + bA + "/lists/blacklist/entries", own: 200}},
		"list-refusals": {{method: "GET", path: "/v1/refusals?batch_id=" + bA, own: 200},
			{method: "GET", path: "/v1/refusals"}, {method: "GET", path: "/v1/refusals?user_id=blocked-by-a"}},
	}

	for path, item := range httpapi.OpenAPI().Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			roles, _ := json.Marshal(op.Extensions["x-roles"])
			if !strings.Contains(string(roles), `"merchant"`) {
				// Closed to merchants: refused before any handler.
				r := merchantB.do(op.Method, strings.NewReplacer("{id}", bA, "{name}", "x", "{list}", "blacklist",
					"{order_id}", "order-of-a", "{user_id}", "user-of-a", "{merchant_id}", "m-a").Replace(path), map[string]any{})
				if r.status != 403 || r.body["code"] != "forbidden" {
					t.Errorf("%s (%s %s) is closed to merchants but answered %d %s", op.OperationID, op.Method, path, r.status, r.raw)
				}
				continue
			}
			ps, ok := probes[op.OperationID]
			if !ok {
				t.Errorf("%s (%s %s) is open to merchants and has no probe in this test: add one", op.OperationID, op.Method, path)
				continue
			}
			for _, p := range ps {
				r := merchantB.do(p.method, p.path, p.body, p.headers...)
				if r.status >= 500 {
					t.Errorf("%s %s as merchant B: %d %s", p.method, p.path, r.status, r.raw)
				}
				if r.status < 300 {
					for _, s := range secrets {
						if strings.Contains(string(r.raw), s) {
							t.Errorf("%s %s as merchant B: %d shows merchant A's %q: %s", p.method, p.path, r.status, s, r.raw)
						}
					}
				}
				if op.OperationID == "create-batch" && (r.status != 201 || r.body["merchant_id"] != "m-b") {
					t.Errorf("merchant B made a batch for %v: %d %s", r.body["merchant_id"], r.status, r.raw)
				}
				if p.own != 0 {
					r := merchantA.do(p.method, p.path, p.body, p.headers...)
					found := false
					for _, s := range secrets {
						found = found || strings.Contains(string(r.raw), s)
					}
					if r.status != p.own || !found {
						t.Errorf("%s %s as merchant A: %d %s; want %d with A's things (the probe misses them)", p.method, p.path, r.status, r.raw, p.own)
					}
				}
			}
		}
	}

	// Merchant B's attempts changed nothing of A's; A's own edit (the probe's
	// check) kept its draft its own, whatever merchant the body named.
	if b := admin.must(200, "GET", "/v1/batches/"+bA, nil); b["status"] != "active" || b["version"] != 1.0 {
		t.Errorf("batch A is %v at version %v after merchant B's attempts", b["status"], b["version"])
	}
	if d := admin.must(200, "GET", "/v1/batches/"+draftA, nil); d["merchant_id"] != "m-a" || d["version"] != 2.0 {
		t.Errorf("A's draft after B's attempts and A's one edit: merchant %v, version %v", d["merchant_id"], d["version"])
	}
	if c := admin.must(200, "GET", "/v1/claims/"+claim2["id"].(string), nil); c["status"] != "available" {
		t.Errorf("A's coupon is %v after merchant B tried to redeem it", c["status"])
	}
	for list, want := range map[string]int{"blacklist": 1, "whitelist": 0} {
		l := admin.must(200, "GET", "/v1/batches/"+bA+"/lists/"+list+"/entries", nil)
		if n := len(l["items"].([]any)); n != want {
			t.Errorf("batch A's %s has %d entries after merchant B's attempts, want %d", list, n, want)
		}
	}
	if r := merchantB.do("POST", "/v1/lists/blacklist/entries", entries); r.status != http.StatusForbidden {
		t.Errorf("merchant B changed a global list: %d %s", r.status, r.raw)
	}
}
