package auth_test

import (
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/auth"
)

// The worked example of docs/access.md: if this test changes, so must the
// document.
const (
	exKeyID  = "01JD5R2F8H4K6M8P0Q2S4U6W8Y"
	exSecret = "rH3n0mVQx9yT1cW5zK7pB2dF4gJ6lN8sA0eU3iO5uY9"
	exPath   = "/v1/batches/01JD5QZ8M3V1T0R9P7N5K3H1G0/claims"
	exBody   = `{"user_id":"alice","device_id":"8c1f0e2a-ios","ip":"198.51.100.23"}`
	exTS     = 1794355200 // 2026-11-11T00:00:00Z
	exNonce  = "k3Jd8QmZ2vX9pL4tRb7N1w"
	exHeader = "CPD-HMAC-SHA256 Credential=01JD5R2F8H4K6M8P0Q2S4U6W8Y, Timestamp=1794355200, " +
		"Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, Signature=db8bc6130d736364c72eb05873e73abf2253e245ac59459f67076d4f3e6c81bc"
)

func exRequest() auth.Request {
	return auth.Request{Method: "POST", Path: exPath, BodyHash: sha256.Sum256([]byte(exBody))}
}

func TestWorkedExample(t *testing.T) {
	t.Parallel()
	want := "CPD-HMAC-SHA256\nPOST\n" + exPath + "\n\n1794355200\n" + exNonce +
		"\nb76de314aa61f7fd3c44d3c8a13cda48221aa6868e2f0af056e2564b636767c4"
	if got := string(auth.StringToSign(exRequest(), exTS, exNonce)); got != want {
		t.Fatalf("string to sign:\n%q\nwant\n%q", got, want)
	}
	if got := auth.Sign(exKeyID, exSecret, exRequest(), exTS, exNonce).String(); got != exHeader {
		t.Fatalf("header:\n%s\nwant\n%s", got, exHeader)
	}
	s, err := auth.ParseAuthorization(exHeader)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Verify(s, exSecret, exRequest(), time.Unix(exTS+299, 0), 5*time.Minute); err != nil {
		t.Fatalf("verify within the skew: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	s, _ := auth.ParseAuthorization(exHeader)
	at := time.Unix(exTS, 0)
	other := exRequest()
	other.Path = "/v1/batches/01JD5QZ8M3V1T0R9P7N5K3H1G1/claims"
	body := exRequest()
	body.BodyHash = sha256.Sum256([]byte(`{"user_id":"mallory"}`))
	query := exRequest()
	query.RawQuery = "x=1"
	for _, tc := range []struct {
		name   string
		secret string
		r      auth.Request
		now    time.Time
		want   error
	}{
		{"stale", exSecret, exRequest(), at.Add(5*time.Minute + time.Second), auth.ErrStale},
		{"future", exSecret, exRequest(), at.Add(-5*time.Minute - time.Second), auth.ErrStale},
		{"other path", exSecret, other, at, auth.ErrMismatch},
		{"other body", exSecret, body, at, auth.ErrMismatch},
		{"other query", exSecret, query, at, auth.ErrMismatch},
		{"other secret", exSecret + "x", exRequest(), at, auth.ErrMismatch},
	} {
		if err := auth.Verify(s, tc.secret, tc.r, tc.now, 5*time.Minute); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseAuthorizationRefuses(t *testing.T) {
	t.Parallel()
	sig := "Signature=db8bc6130d736364c72eb05873e73abf2253e245ac59459f67076d4f3e6c81bc"
	for _, h := range []string{
		"",
		"Bearer x.y",
		"CPD-HMAC-SHA256",
		"CPD-HMAC-SHA256 ",
		"CPD-HMAC-SHA256 Credential=k, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w",                       // no signature
		"CPD-HMAC-SHA256 Credential=k, Credential=k, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, " + sig, // twice
		"CPD-HMAC-SHA256 Credential=k, Timestamp=1794355200, Nonce=short, " + sig,
		"CPD-HMAC-SHA256 Credential=k, Timestamp=01794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, " + sig,
		"CPD-HMAC-SHA256 Credential=k, Timestamp=-1, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, " + sig,
		"CPD-HMAC-SHA256 Credential=k, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, Signature=zz",
		"CPD-HMAC-SHA256 Credential=k.x, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, " + sig,
		"CPD-HMAC-SHA256 Credential=k, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, Extra=1, " + sig,
		"CPD-HMAC-SHA256 Credential=k, Timestamp=1794355200, Nonce=k3Jd8QmZ2vX9pL4tRb7N1w, " + sig + strings.Repeat(" ", 512),
	} {
		if _, err := auth.ParseAuthorization(h); !errors.Is(err, auth.ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", h, err)
		}
	}
}

// SignRequest signs what the server verifies, and leaves the body readable.
func TestSignRequest(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080"+exPath+"?a=b%20c", strings.NewReader(exBody))
	now := time.Unix(exTS, 0)
	if err := auth.SignRequest(req, exKeyID, exSecret, now); err != nil {
		t.Fatal(err)
	}
	s, err := auth.ParseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	r := auth.Request{Method: "POST", Path: exPath, RawQuery: "a=b%20c", BodyHash: sha256.Sum256(body)}
	if string(body) != exBody || auth.Verify(s, exSecret, r, now, time.Minute) != nil {
		t.Fatalf("body %q, verify %v", body, auth.Verify(s, exSecret, r, now, time.Minute))
	}
	req2, _ := http.NewRequest("GET", "http://127.0.0.1:8080/v1/claims/x", nil)
	_ = auth.SignRequest(req2, exKeyID, exSecret, now)
	s2, _ := auth.ParseAuthorization(req2.Header.Get("Authorization"))
	if s2.Nonce == s.Nonce {
		t.Fatal("two signatures share a nonce")
	}
}

// FuzzParseAuthorization: the parser never panics, refuses with
// ErrMalformed only, and what it accepts prints back to a header that
// parses to the same signature.
func FuzzParseAuthorization(f *testing.F) {
	f.Add(exHeader)
	f.Add(strings.ToLower(exHeader[:15]) + exHeader[15:])
	f.Add("CPD-HMAC-SHA256 Credential=a,Timestamp=1,Nonce=0123456789abcdef,Signature=" + strings.Repeat("00", 32))
	f.Add("CPD-HMAC-SHA256 Credential=a, Timestamp=9999999999999, Nonce=0123456789abcdef, Signature=" + strings.Repeat("ff", 32))
	f.Add("CPD-HMAC-SHA256 ,,,")
	f.Add("CPD-HMAC-SHA256 Credential==, Timestamp=1=2")
	f.Add("CPD-HMAC-SHA256 Credential=a\x00, Timestamp=1, Nonce=0123456789abcdef, Signature=" + strings.Repeat("AA", 32))
	f.Add("Bearer abc.def")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := auth.ParseAuthorization(h)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformed) {
				t.Fatalf("%q: %v", h, err)
			}
			return
		}
		if !auth.IsSigned(h) || len(s.Signature) != sha256.Size || !auth.ValidKeyID(s.KeyID) || !auth.ValidNonce(s.Nonce) || s.Timestamp <= 0 {
			t.Fatalf("%q accepted as %+v", h, s)
		}
		again, err := auth.ParseAuthorization(s.String())
		if err != nil || again.KeyID != s.KeyID || again.Timestamp != s.Timestamp || again.Nonce != s.Nonce ||
			string(again.Signature) != string(s.Signature) {
			t.Fatalf("%q → %q → %+v, %v", h, s.String(), again, err)
		}
	})
}

// FuzzVerify: a signature verifies its own request and no request that
// differs in method, path, query or body.
func FuzzVerify(f *testing.F) {
	f.Add("POST", exPath, "", []byte(exBody), "PUT", exPath, "", []byte(exBody))
	f.Add("GET", "/v1/claims/a", "limit=1", []byte(nil), "GET", "/v1/claims/a", "limit=2", []byte(nil))
	f.Add("POST", "/v1/a", "", []byte("x"), "POST", "/v1/a\n", "", []byte("x"))
	f.Add("POST", "/v1/a", "b", []byte(""), "POST", "/v1/a\nb", "", []byte(""))
	f.Fuzz(func(t *testing.T, m1, p1, q1 string, b1 []byte, m2, p2, q2 string, b2 []byte) {
		r1 := auth.Request{Method: m1, Path: p1, RawQuery: q1, BodyHash: sha256.Sum256(b1)}
		r2 := auth.Request{Method: m2, Path: p2, RawQuery: q2, BodyHash: sha256.Sum256(b2)}
		s := auth.Sign(exKeyID, exSecret, r1, exTS, exNonce)
		now := time.Unix(exTS, 0)
		if err := auth.Verify(s, exSecret, r1, now, time.Minute); err != nil {
			t.Fatalf("own request: %v", err)
		}
		same := strings.EqualFold(m1, m2) && strings.ToUpper(m1) == strings.ToUpper(m2) && p1 == p2 && q1 == q2 && r1.BodyHash == r2.BodyHash
		// Newlines inside a field could shift text between lines; the
		// server never sees them (paths are escaped, methods are tokens),
		// so only requests whose fields are single lines are compared.
		if strings.ContainsAny(m1+p1+q1+m2+p2+q2, "\n") {
			return
		}
		if err := auth.Verify(s, exSecret, r2, now, time.Minute); (err == nil) != same {
			t.Fatalf("%+v signed, %+v verified: %v", r1, r2, err)
		}
	})
}
