package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The operations that take a file — a partner's codes, a list of users —
// stream it as the request body, which the generated methods do not send:
// these send it, without the client's timeout (an upload of millions of
// lines takes a while); ctx bounds them.

// ImportCodesFrom streams a CSV file of partner codes into an external
// batch (POST /v1/batches/{id}/imports) and returns the import's report.
func (c *Client) ImportCodesFrom(ctx context.Context, id string, csv io.Reader) (*ImportResult, error) {
	var out ImportResult
	if err := c.upload(ctx, "/v1/batches/"+url.PathEscape(id)+"/imports", nil, "text/csv", csv, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateGrantJobFrom streams a list of users (one id a line) and queues a
// job that grants them the batch (POST /v1/batches/{id}/grant-jobs).
func (c *Client) CreateGrantJobFrom(ctx context.Context, id, channel string, users io.Reader) (*JobView, error) {
	q := url.Values{}
	if channel != "" {
		q.Set("channel", channel)
	}
	var out JobView
	if err := c.upload(ctx, "/v1/batches/"+url.PathEscape(id)+"/grant-jobs", q, "text/plain", users, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) upload(ctx context.Context, path string, query url.Values, contentType string, body io.Reader, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, io.NopCloser(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := &http.Client{Transport: c.HTTP.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("coupond: read the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || json.Unmarshal(raw, &e.Problem) != nil {
			e.Body = raw
		}
		return e
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("coupond: decode the answer: %w", err)
	}
	return nil
}
