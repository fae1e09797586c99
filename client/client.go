// Package client is a typed Go client of coupond's HTTP API. The types and
// one method per operation (client_gen.go) are generated from the API's
// OpenAPI description by internal/clientgen; this file holds the transport.
//
//	c := client.New("http://127.0.0.1:8080", token)
//	claim, err := c.Claim(ctx, batchID, &client.ClaimParams{IdempotencyKey: "alice-1"}, &client.ClaimBody{UserID: "alice"})
//	if client.ProblemCode(err) == "sold_out" { … }
package client

//go:generate go run ../internal/clientgen -o client_gen.go

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one coupond. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	// HTTP is the client requests go through; default: one with a 30s timeout.
	HTTP *http.Client
}

// New returns a client of the coupond at baseURL (e.g. http://127.0.0.1:8080)
// that presents token on /v1 calls.
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Error is an answer other than a success: its status, the problem document
// (its Code is stable: sold_out, limit_reached, unavailable, …), how long
// the server asks to wait before a retry, and the request's id for its logs.
type Error struct {
	StatusCode int
	Problem    Problem
	RetryAfter time.Duration
	RequestID  string
	// Body is the answer's body when it is not a problem document (a 503
	// of /readyz lists the checks).
	Body []byte
}

func (e *Error) Error() string {
	if e.Problem.Code != "" {
		return fmt.Sprintf("coupond: %d %s: %s", e.StatusCode, e.Problem.Code, e.Problem.Detail)
	}
	return fmt.Sprintf("coupond: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// ProblemCode returns the problem code of an error from the client, "" for nil or
// an error that is not an answer of the API (a network failure).
func ProblemCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Problem.Code
	}
	return ""
}

// do sends one request with a JSON body (unless body is nil) and decodes a
// 2xx answer into out (unless nil). It returns the answer's headers.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, header http.Header, body, out any) (http.Header, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("coupond: encode the request: %w", err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.Header, fmt.Errorf("coupond: read the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || json.Unmarshal(raw, &e.Problem) != nil {
			e.Body = raw
		}
		return resp.Header, e
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("coupond: decode the answer: %w", err)
		}
	}
	return resp.Header, nil
}
