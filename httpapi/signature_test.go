package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store/sqlite"
)

// signedAPI is the API over a real service with one app key, on a clock
// the test sets.
type signedAPI struct {
	h      http.Handler
	svc    *service.Service
	key    *service.IssuedKey
	now    time.Time
	bearer string // the bootstrap token
}

func newSignedAPI(t testing.TB) *signedAPI {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	a := &signedAPI{now: time.Unix(1794355200, 0).UTC(), bearer: "boot"}
	a.svc = service.New(service.Config{Store: st, Engine: memory.New(), Now: func() time.Time { return a.now },
		Access: service.AccessConfig{Keyring: auth.NewKeyring([]byte("test key secret")), AppKeysMustSign: true}})
	t.Cleanup(func() { a.svc.Close(); _ = st.Close() })
	a.key, err = a.svc.CreateKey(context.Background(), service.NewKey{Name: "fuzz", Role: auth.App})
	if err != nil {
		t.Fatal(err)
	}
	a.h = httpapi.New(httpapi.Config{Service: a.svc, AdminToken: a.bearer,
		Authenticate: httpapi.Authenticator(a.svc, func() time.Time { return a.now })})
	return a
}

// serve sends one request and returns its status and problem code.
func (a *signedAPI) serve(method, target, authorization string, body string) (int, string, http.Header) {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	var p struct{ Code string }
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	return rec.Code, p.Code, rec.Header()
}

// sign is the Authorization of a request signed with the app key.
func (a *signedAPI) sign(method, target, body, nonce string, at time.Time) string {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	r := auth.Request{Method: method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, BodyHash: sha256.Sum256([]byte(body))}
	return auth.Sign(a.key.ID, a.key.Secret, r, at.Unix(), nonce).String()
}

func TestSignedRequests(t *testing.T) {
	t.Parallel()
	a := newSignedAPI(t)
	const target = "/v1/users/alice/claims?limit=5"
	ok := a.sign("GET", target, "", "nonce-0000000001", a.now)
	for _, tc := range []struct {
		name, method, target, authorization string
		status                              int
		code                                string
	}{
		{"signed", "GET", target, ok, 200, ""},
		{"same nonce again", "GET", target, ok, 401, "replayed"},
		{"stale", "GET", target, a.sign("GET", target, "", "nonce-0000000002", a.now.Add(-6*time.Minute)), 401, "bad_signature"},
		{"from the future", "GET", target, a.sign("GET", target, "", "nonce-0000000003", a.now.Add(6*time.Minute)), 401, "bad_signature"},
		{"other query", "GET", "/v1/users/alice/claims?limit=6", a.sign("GET", target, "", "nonce-0000000004", a.now), 401, "bad_signature"},
		{"other user", "GET", "/v1/users/bob/claims?limit=5", a.sign("GET", target, "", "nonce-0000000005", a.now), 401, "bad_signature"},
		{"malformed", "GET", target, "CPD-HMAC-SHA256 Credential=" + a.key.ID, 401, "bad_signature"},
		{"unknown key", "GET", target, strings.Replace(a.sign("GET", target, "", "nonce-0000000006", a.now), a.key.ID, "nosuchkey", 1), 401, "unauthorized"},
		{"app key as bearer", "GET", target, "Bearer " + a.key.Token, 401, "bad_signature"},
		{"bootstrap", "GET", target, "Bearer boot", 200, ""},
	} {
		status, code, _ := a.serve(tc.method, tc.target, tc.authorization, "")
		if status != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
	}

	// A signed body that is changed on the way is refused.
	body := `{"batch_id":"01JD5QZ8M3V1T0R9P7N5K3H1G0","user_id":"alice","phone":"+8613800000000"}`
	sig := a.sign("POST", "/v1/sms/challenges", body, "nonce-0000000007", a.now)
	if status, code, _ := a.serve("POST", "/v1/sms/challenges", sig, strings.Replace(body, "alice", "mallo", 1)); status != 401 || code != "bad_signature" {
		t.Errorf("changed body: %d %q", status, code)
	}

	// A revoked key stops at once on this instance.
	if _, err := a.svc.RevokeKey(context.Background(), a.key.ID); err != nil {
		t.Fatal(err)
	}
	if status, code, _ := a.serve("GET", target, a.sign("GET", target, "", "nonce-0000000008", a.now), ""); status != 401 || code != "unauthorized" {
		t.Errorf("revoked key: %d %q", status, code)
	}
}

// FuzzSignedHeaders sends arbitrary Authorization headers, paths and
// bodies: the API never fails with a 5xx nor panics, and admits a request
// only with a signature of its own that is fresh and new.
func FuzzSignedHeaders(f *testing.F) {
	a := newSignedAPI(f)
	f.Add(a.sign("GET", "/v1/users/alice/claims", "", "nonce-fuzz-000001", a.now), "GET", "/v1/users/alice/claims", "")
	f.Add(a.sign("POST", "/v1/sms/challenges", "{}", "nonce-fuzz-000002", a.now), "POST", "/v1/sms/challenges", "{}")
	f.Add("CPD-HMAC-SHA256 Credential="+a.key.ID+", Timestamp=1794355200, Nonce=nonce-fuzz-000003, Signature="+strings.Repeat("0", 64), "GET", "/v1/keys", "")
	f.Add("cpd-hmac-sha256 credential=x", "DELETE", "/v1/risk/rule-sets/x", "")
	f.Add("Bearer "+a.key.Token, "GET", "/v1/claims/x", "")
	f.Add("Bearer "+a.key.ID+".", "GET", "/v1/batches", "")
	f.Add("CPD-HMAC-SHA256 Credential="+a.key.ID+", Timestamp=1794355200, Nonce=nonce-fuzz-000004, Signature="+strings.Repeat("a", 64)+strings.Repeat(",", 400), "POST", "/v1/batches/x/claims", `{"user_id":"a"}`)
	f.Fuzz(func(t *testing.T, authorization, method, path, body string) {
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			method = "GET"
		}
		if u, err := url.ParseRequestURI(path); err != nil || u.Path != path || !strings.HasPrefix(path, "/v1/") || len(path) > 200 ||
			strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			path = "/v1/users/alice/claims" // not a path a client could send
		}
		if strings.ContainsAny(authorization, "\r\n\x00") {
			return // not a header net/http would deliver
		}
		status, code, _ := a.serve(method, path, authorization, body)
		if status >= 500 {
			t.Fatalf("%s %s with %q: %d %s", method, path, authorization, status, code)
		}
		if status == 401 && code == "" {
			t.Fatalf("401 without a code")
		}
		if auth.IsSigned(authorization) && status < 300 {
			s, err := auth.ParseAuthorization(authorization)
			if err != nil {
				t.Fatalf("admitted a malformed header %q: %d", authorization, status)
			}
			r := auth.Request{Method: method, Path: path, BodyHash: sha256.Sum256([]byte(body))}
			if auth.Verify(s, a.key.Secret, r, a.now, 5*time.Minute) != nil {
				t.Fatalf("admitted a wrong signature %q: %d", authorization, status)
			}
		}
	})
}
