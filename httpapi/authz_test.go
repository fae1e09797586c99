package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/guard"
)

// A caller in a role the table does not name is refused before any handler
// runs; a caller nobody recognises is unauthenticated.
func TestRolesAreEnforced(t *testing.T) {
	t.Parallel()
	sw, _ := guard.NewSwitches(nil)
	h := New(Config{AdminToken: "boot", Switches: sw, Authenticate: func(r *http.Request) (auth.Principal, bool, error) {
		role := r.Header.Get("X-Test-Role")
		if role == "" {
			return auth.Principal{}, false, nil
		}
		return auth.Principal{KeyID: "k", Role: auth.Role(role), MerchantID: "m1"}, true, nil
	}})
	for _, tc := range []struct {
		role, method, path string
		status             int
		code               string
	}{
		{"operator", "POST", "/v1/batches/01M8BX0V670745AVN146H8QP3N/claims", 403, "forbidden"},
		{"merchant", "GET", "/v1/ops/switches", 403, "forbidden"},
		{"app", "POST", "/v1/batches", 403, "forbidden"},
		{"app", "GET", "/v1/reviews", 403, "forbidden"},
		{"", "GET", "/v1/batches", 401, "unauthorized"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.role != "" {
			req.Header.Set("X-Test-Role", tc.role)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var p Problem
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != tc.status || p.Code != tc.code {
			t.Errorf("%s %s as %q: %d %s, want %d %s", tc.method, tc.path, tc.role, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
}

// Every /v1 operation has a decision in the roles table, and its
// description says who may call it.
func TestEveryOperationHasRoles(t *testing.T) {
	t.Parallel()
	for path, item := range OpenAPI().Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			if _, ok := op.Extensions["x-roles"]; !ok || !strings.Contains(op.Description, "Allowed roles:") {
				t.Errorf("%s %s: roles not documented", op.Method, path)
			}
		}
	}
}
