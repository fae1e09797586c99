// Package guard keeps a slow or failing dependency from taking coupond down
// with it: wrappers of engine.Engine and store.Store that put a timeout,
// a span and metrics on every call, circuit breakers that fail calls at once
// while a dependency is down, a fallback from the read replica to the
// primary, a guard for calls to external systems (order system, risk
// service, SMS gateway), and run-time switches for non-essential work.
package guard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/telemetry"
)

// ErrOpen is in the chain of every error a breaker returns without trying
// the call, together with coupon.ErrUnavailable (so the API answers 503).
var ErrOpen = errors.New("circuit breaker open")

// Breaker states, as the coupond_breaker_state metric shows them.
const (
	Closed   = 0 // calls go through
	HalfOpen = 1 // one probe call goes through; its outcome closes or reopens
	Open     = 2 // calls fail at once until the cooldown has passed
)

// BreakerConfig configures a Breaker.
type BreakerConfig struct {
	// Name labels the breaker's metrics and errors: engine, replica, order_system, …
	Name string
	// Failures in a row that open the breaker; default 5.
	Failures int
	// Cooldown is how long it stays open before a probe; default 5s.
	Cooldown time.Duration
	Metrics  *telemetry.Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Breaker is a circuit breaker: after Failures failed calls in a row it
// opens and refuses calls at once (ErrOpen) for Cooldown; then it lets one
// probe call through (half-open), which closes it if it succeeds and opens
// it again if not. While it is closed, allowing a call costs one atomic load.
type Breaker struct {
	cfg      BreakerConfig
	state    atomic.Int32
	failures atomic.Int32
	mu       sync.Mutex // guards the transitions and until
	until    time.Time  // when open: the earliest time of the next probe
	probing  bool       // when half-open: the probe is out
	rejected interface{ Inc() }
	err      error
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Breaker{cfg: cfg, err: fmt.Errorf("%s: %w (%w)", cfg.Name, coupon.ErrUnavailable, ErrOpen)}
	if c := cfg.Metrics.BreakerRejected(cfg.Name); c != nil {
		b.rejected = c
	}
	cfg.Metrics.BreakerState(cfg.Name, Closed)
	return b
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.cfg.Name }

// State returns Closed, HalfOpen or Open.
func (b *Breaker) State() int {
	if s := int(b.state.Load()); s != Open {
		return s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == Open && !b.cfg.Now().Before(b.until) {
		return HalfOpen // the next call is the probe
	}
	return Open
}

// Allow reports whether a call may go ahead; a nil error means yes, and the
// caller must then Record its outcome. Otherwise the error wraps ErrOpen
// and coupon.ErrUnavailable.
func (b *Breaker) Allow() error {
	if b.state.Load() == Closed {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case Closed:
		return nil
	case Open:
		if b.cfg.Now().Before(b.until) {
			break
		}
		b.set(HalfOpen)
		b.probing = true
		b.until = b.cfg.Now().Add(b.cfg.Cooldown) // a probe that never reports frees the slot then
		return nil
	case HalfOpen:
		if !b.probing || !b.cfg.Now().Before(b.until) {
			b.probing = true
			b.until = b.cfg.Now().Add(b.cfg.Cooldown)
			return nil
		}
	}
	if b.rejected != nil {
		b.rejected.Inc()
	}
	return b.err
}

// Record reports the outcome of an allowed call.
func (b *Breaker) Record(failed bool) {
	if !failed {
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.state.Load() != Closed {
			b.mu.Lock()
			b.probing = false
			b.set(Closed)
			b.mu.Unlock()
		}
		return
	}
	n := b.failures.Add(1)
	state := b.state.Load()
	if state == HalfOpen || (state == Closed && int(n) >= b.cfg.Failures) {
		b.mu.Lock()
		if b.state.Load() != Open {
			b.probing = false
			b.until = b.cfg.Now().Add(b.cfg.Cooldown)
			b.set(Open)
		}
		b.mu.Unlock()
	}
}

// Do runs fn under the breaker: refused at once while open; failed when
// fn's error counts as a failure (see Failed).
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := b.Allow(); err != nil {
		return err
	}
	err := fn(ctx)
	failed := Failed(ctx, err)
	if !abandoned(ctx, err, failed) {
		b.Record(failed)
	}
	return err
}

// abandoned reports whether a call that did not fail ended without an
// answer: its caller gave up, so it says nothing either way.
func abandoned(ctx context.Context, err error, failed bool) bool {
	return !failed && err != nil && (errors.Is(err, context.Canceled) || ctx.Err() != nil)
}

func (b *Breaker) set(s int) {
	if int(b.state.Load()) == s {
		return
	}
	b.state.Store(int32(s))
	b.cfg.Metrics.BreakerState(b.cfg.Name, s)
}

// Failed reports whether err, returned by a backend call made with ctx, says
// the backend is in trouble: a timeout or an error that is neither a domain
// outcome (sold out, not found, limit reached, …) nor one of the backend's
// expected answers. A call cancelled by its caller (the client went away)
// says nothing about the backend.
func Failed(ctx context.Context, err error, expected ...error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrOpen):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return false
	}
	for _, e := range expected {
		if errors.Is(err, e) {
			return false
		}
	}
	code := coupon.ErrorCode(err)
	return code == coupon.CodeInternal || code == coupon.CodeUnavailable
}
