package client

import (
	"net/http"
	"strings"
	"time"

	"github.com/coupond/coupond/auth"
)

// NewSigned returns a client of the coupond at baseURL that signs every
// request with the API key keyID and its secret (docs/access.md), as app
// keys must: each request gets a fresh nonce and the current time, so a
// retry of a call is a new signed request.
func NewSigned(baseURL, keyID, secret string) *Client {
	c := New(baseURL, "")
	c.HTTP.Transport = &SigningTransport{KeyID: keyID, Secret: secret}
	return c
}

// SigningTransport signs each request it sends with an API key (see
// auth.SignRequest), then hands it to Base (default
// http.DefaultTransport). Use it with any http.Client.
type SigningTransport struct {
	KeyID, Secret string
	Base          http.RoundTripper
	// Now is the clock of the signatures; default time.Now.
	Now func() time.Time
}

// RoundTrip signs a copy of req and sends it.
func (t *SigningTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, "/v1/") {
		return t.base().RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper must not change the request it was given
	if req.Body != nil && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	if err := auth.SignRequest(r, t.KeyID, t.Secret, now()); err != nil {
		return nil, err
	}
	return t.base().RoundTrip(r)
}

func (t *SigningTransport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}
