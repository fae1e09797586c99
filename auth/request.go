package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"time"
)

// SignRequest signs an HTTP request with an API key for the Scheme: it
// hashes the body (and puts it back, so the request can still be sent),
// picks a fresh random nonce, and sets the Authorization header. now is
// the client's clock; it must be within the server's skew (5 minutes by
// default) of the server's.
//
// It is all a client needs; this package imports the standard library only.
//
//	req, _ := http.NewRequest("POST", base+"/v1/batches/"+batchID+"/claims", strings.NewReader(`{"user_id":"alice"}`))
//	req.Header.Set("Content-Type", "application/json")
//	if err := auth.SignRequest(req, keyID, secret, time.Now()); err != nil { … }
//	resp, err := http.DefaultClient.Do(req)
func SignRequest(req *http.Request, keyID, secret string, now time.Time) error {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return fmt.Errorf("auth: reading the body to sign: %w", err)
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	r := Request{Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, BodyHash: sha256.Sum256(body)}
	req.Header.Set("Authorization", Sign(keyID, secret, r, now.Unix(), NewNonce()).String())
	return nil
}

// NewNonce returns a fresh nonce: 128 random bits, 22 characters of base64url.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
