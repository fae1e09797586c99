package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store/sqlite"
)

// FuzzRequestBodies sends arbitrary bodies to the operations that decode
// the largest requests. Whatever the bytes, the answer is never a 5xx; a
// refusal is a problem with a code; and a refused claim hands out nothing.
func FuzzRequestBodies(f *testing.F) {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(f.TempDir(), "db"), Synchronous: "normal"})
	if err != nil {
		f.Fatal(err)
	}
	svc := service.New(service.Config{Store: st, Engine: memory.New()})
	f.Cleanup(func() { svc.Close(); _ = st.Close() })
	b, err := svc.CreateBatch(context.Background(), coupon.BatchSpec{Name: "fuzz", TotalQuantity: 1000, PerUserLimit: 1000,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 100}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := svc.Transition(context.Background(), b.ID, coupon.Publish); err != nil {
		f.Fatal(err)
	}
	h := httpapi.New(httpapi.Config{Service: svc, AdminToken: "boot"})
	targets := []string{"/v1/batches", "/v1/batches/" + b.ID + "/claims", "/v1/qualifications", "/v1/redemptions"}

	for _, seed := range []struct {
		target uint8
		body   string
	}{
		{0, `{"name":"n","total_quantity":10,"validity":{"days":1},"amount":{"type":"fixed","value":5}}`},
		{0, `{"name":"n","total_quantity":-1,"validity":{"from":"2030-01-01T00:00:00Z"},"amount":{"type":"split","budget":3}}`},
		{0, `{"name":"` + strings.Repeat("x", 300) + `","rules":[{"ref_type":"product","ref_id":"","use_type":"include"}]}`},
		{1, `{"user_id":"amy","platform":"ios","channel":"feed"}`},
		{1, `{"user_id":""}`},
		{1, `{"user_id":"amy","phone":"+8613800000000","idempotency_key":"` + strings.Repeat("k", 500) + `"}`},
		{2, `{"user_id":"amy","cart":{"items":[{"id":"a","product_id":"p","unit_price":100,"quantity":1}],"shipping":0}}`},
		{2, `{"user_id":"amy","cart":{"items":[{"id":"a","unit_price":9223372036854775807,"quantity":9223372036854775807}]}}`},
		{3, `{"order_id":"o","user_id":"amy","cart":{"items":[{"id":"a","product_id":"p","unit_price":100,"quantity":1}]},"claim_ids":["x"]}`},
		{3, `{"order_id":1,"user_id":null,"cart":[]}`},
		{1, `{`}, {2, `[]`}, {3, "\x00\xff"}, {0, `{"name":"n","name":"m"}`},
	} {
		f.Add(seed.target, seed.body)
	}

	f.Fuzz(func(t *testing.T, target uint8, body string) {
		path := targets[int(target)%len(targets)]
		before, err := svc.GetBatch(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer boot")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code < 400 {
			return
		}
		var p httpapi.Problem
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("POST %s %q: %d with Content-Type %q", path, body, rec.Code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code == "" || p.Status != rec.Code {
			t.Fatalf("POST %s %q: %d, not a problem with a code: %s", path, body, rec.Code, rec.Body)
		}
		after, err := svc.GetBatch(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.ClaimedCount != before.ClaimedCount || after.PoolDepth != before.PoolDepth {
			t.Fatalf("POST %s %q was refused (%s) yet the batch changed: claimed %d→%d, pool %d→%d",
				path, body, p.Code, before.ClaimedCount, after.ClaimedCount, before.PoolDepth, after.PoolDepth)
		}
	})
}
