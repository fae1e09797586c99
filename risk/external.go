package risk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Assessment is what the external risk service is told of a claim:
//
//	POST <url>  {"batch_id": …, "merchant_id": …, "user_id": …, "phone": …, "device_id": …, "ip": …,
//	             "account_age_seconds": …, "signals": {"device_users/86400": 3, …}, "local": "allow"}
//
// and what it answers: 200 {"action": "allow" | "challenge" | "deny", "reason": "…"}.
type Assessment struct {
	BatchID    string           `json:"batch_id"`
	MerchantID string           `json:"merchant_id,omitempty"`
	UserID     string           `json:"user_id"`
	Phone      string           `json:"phone,omitempty"`
	DeviceID   string           `json:"device_id,omitempty"`
	IP         string           `json:"ip,omitempty"`
	AccountAge int64            `json:"account_age_seconds"` // -1: unknown
	Signals    map[string]int64 `json:"signals,omitempty"`
	Local      Action           `json:"local" doc:"the verdict of coupond's own rules"`
}

// Verdict is the external service's answer.
type Verdict struct {
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// ExternalConfig configures the client of an external risk service.
type ExternalConfig struct {
	URL string
	// Timeout bounds a call strictly: the claim waits for it. Default 200ms.
	Timeout time.Duration
	// FailOpen: when the service fails (timeout, error, open breaker) the
	// claim is judged by the local rules alone. Otherwise it is refused
	// with unavailable (503, retryable).
	FailOpen bool
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	HTTP   *http.Client
	// Guard runs each call (a *guard.External: breaker, timeout,
	// metrics); default: the call alone under Timeout.
	Guard Guard
}

// Guard runs calls to an external system; *guard.External is one.
type Guard interface {
	Do(ctx context.Context, name string, fn func(ctx context.Context) error) error
}

type timeoutGuard time.Duration

func (g timeoutGuard) Do(ctx context.Context, _ string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(g))
	defer cancel()
	return fn(ctx)
}

// External asks an external risk service about claims.
type External struct {
	cfg ExternalConfig
}

// ErrExternal wraps every failure of the external service.
var ErrExternal = errors.New("risk: external service failed")

// NewExternal returns the client of the service at cfg.URL.
func NewExternal(cfg ExternalConfig) *External {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Guard == nil {
		cfg.Guard = timeoutGuard(cfg.Timeout)
	}
	return &External{cfg: cfg}
}

// FailOpen reports whether a failure lets the local verdict stand.
func (x *External) FailOpen() bool { return x.cfg.FailOpen }

// Assess asks the service about a claim. An answer it cannot read, a
// non-200 status or no answer within the timeout is an error wrapping
// ErrExternal (and coupon.ErrUnavailable).
func (x *External) Assess(ctx context.Context, a Assessment) (Verdict, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %w", ErrExternal, err)
	}
	var v Verdict
	err = x.cfg.Guard.Do(ctx, "assess", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		for k, vs := range x.cfg.Header {
			req.Header[k] = vs
		}
		resp, err := x.cfg.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		switch v.Action {
		case Allow, Challenge, Deny:
			return nil
		}
		return fmt.Errorf("unknown action %q", v.Action)
	})
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %w: %w", ErrExternal, coupon.ErrUnavailable, err)
	}
	return v, nil
}
