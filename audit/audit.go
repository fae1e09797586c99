// Package audit checks the invariants of DESIGN.md against a live
// deployment: the store's own rows (store.Auditor) and, where the engine is
// reachable, the engine's pools and counters against the store. It reads
// only; `coupond audit` prints its report and exits non-zero on any
// violation, and the fault-injection tests run it after every fault.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// Invariants of the engine, beside the store's (store.Invariant*).
const (
	// The engine counts fewer claims of a batch than the store holds: it
	// could hand out again codes the store has given (only the store's
	// constraints would then stop a second use).
	InvariantEngineBehind = "engine_behind"
	// A batch's pool and claimed count do not add up to the codes loaded
	// into the engine: a code was lost from, or doubled in, the pool.
	InvariantEnginePool = "engine_pool"
	// A claim the engine handed out more than the grace ago is neither in
	// the store nor back in the pool: the reconciler is not running.
	InvariantPendingStale = "pending_stale"
)

// DefaultGrace is how late work may be before it is a violation: longer
// than the reconciler's grace and interval (70 s) and the outbox relay's
// retries.
const DefaultGrace = 2 * time.Minute

// Config says what to audit.
type Config struct {
	// Store must implement store.Auditor (both coupond stores do).
	Store store.Store
	// Engine, if set, is checked against the store; nil skips those checks
	// (the in-memory engine lives inside the serving process).
	Engine engine.Engine
	Now    func() time.Time
	Grace  time.Duration // ≤ 0: DefaultGrace
	Limit  int           // most violations reported per invariant; ≤ 0: 100
	// Recheck is how long to wait before reading again a pool that did not
	// add up, so a change between two reads is not reported; ≤ 0: 1s.
	Recheck time.Duration
}

// Report is the outcome of an audit.
type Report struct {
	At         time.Time         `json:"at"`
	Batches    int               `json:"batches_checked_in_engine"`
	Checked    []string          `json:"checked"`
	Skipped    []string          `json:"skipped,omitempty"`
	Violations []store.Violation `json:"violations"`
}

// OK says the audit found nothing.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Run audits cfg.Store, then each active or paused batch in cfg.Engine.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = time.Second
	}
	a, ok := cfg.Store.(store.Auditor)
	if !ok {
		return Report{}, errors.New("audit: the store cannot audit itself")
	}
	r := Report{At: coupon.UTC(cfg.Now())}
	vs, err := a.Audit(ctx, store.AuditParams{Now: r.At, Grace: cfg.Grace, Limit: cfg.Limit})
	if err != nil {
		return r, err
	}
	r.Violations = append(r.Violations, vs...)
	for _, c := range store.AuditChecks {
		r.Checked = append(r.Checked, c.Invariant)
	}
	if cfg.Engine == nil {
		r.Skipped = append(r.Skipped, InvariantEngineBehind, InvariantEnginePool, InvariantPendingStale)
		return r, nil
	}
	r.Checked = append(r.Checked, InvariantEngineBehind, InvariantEnginePool, InvariantPendingStale)
	for _, status := range []coupon.Status{coupon.StatusActive, coupon.StatusPaused} {
		f := store.BatchFilter{Status: status, Limit: 1000}
		for {
			bs, err := cfg.Store.ListBatches(ctx, f)
			if err != nil {
				return r, fmt.Errorf("audit: list batches: %w", err)
			}
			for _, b := range bs {
				vs, checked, err := auditBatch(ctx, cfg, b.ID, r.At)
				if err != nil {
					return r, err
				}
				if checked {
					r.Batches++
				}
				r.Violations = append(r.Violations, vs...)
			}
			if len(bs) < f.Limit {
				break
			}
			f.Cursor = bs[len(bs)-1].ID
		}
	}
	return r, nil
}

// auditBatch checks one batch in the engine. A batch the engine has not
// loaded (it loads batches on first use, and after losing its state) is
// not checked.
func auditBatch(ctx context.Context, cfg Config, batchID string, now time.Time) (vs []store.Violation, checked bool, err error) {
	// The store first: the engine counts a claim before the store holds it,
	// so read in this order the engine can never rightly be behind.
	held, err := cfg.Store.ClaimedCount(ctx, batchID)
	if err != nil {
		return nil, false, fmt.Errorf("audit: claimed count of %s: %w", batchID, err)
	}
	st, err := cfg.Engine.Stats(ctx, batchID)
	if errors.Is(err, engine.ErrUnknownBatch) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit: engine stats of %s: %w", batchID, err)
	}
	if st.Claimed < held {
		vs = append(vs, store.Violation{Invariant: InvariantEngineBehind, BatchID: batchID, IDs: []string{batchID},
			Detail: fmt.Sprintf("the engine counts %d claims, the store holds %d", st.Claimed, held)})
	}
	if st.PoolDepth+st.Claimed != st.LoadedSeq {
		// A claim or a top-up between two reads is not a violation: read again.
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(cfg.Recheck):
		}
		if st, err = cfg.Engine.Stats(ctx, batchID); err != nil {
			return nil, false, fmt.Errorf("audit: engine stats of %s: %w", batchID, err)
		}
		if st.PoolDepth+st.Claimed != st.LoadedSeq {
			vs = append(vs, store.Violation{Invariant: InvariantEnginePool, BatchID: batchID, IDs: []string{batchID},
				Detail: fmt.Sprintf("pool %d + claimed %d != %d codes loaded", st.PoolDepth, st.Claimed, st.LoadedSeq)})
		}
	}
	limit := cfg.Limit
	if limit <= 0 {
		limit = 100
	}
	pending, err := cfg.Engine.Pending(ctx, batchID, now.Add(-cfg.Grace), limit)
	if err != nil && !errors.Is(err, engine.ErrUnknownBatch) {
		return nil, false, fmt.Errorf("audit: pending claims of %s: %w", batchID, err)
	}
	for _, p := range pending {
		vs = append(vs, store.Violation{Invariant: InvariantPendingStale, BatchID: batchID, IDs: []string{p.ClaimID},
			Detail: fmt.Sprintf("claim %s (user %s, code %s) was handed out at %s and is neither stored nor returned",
				p.ClaimID, p.UserID, p.Code, p.At.Format(time.RFC3339))})
	}
	return vs, true, nil
}

// Write prints the report for a person: each violation with its ids, then
// a summary line.
func (r Report) Write(w io.Writer) {
	for _, v := range r.Violations {
		batch := ""
		if v.BatchID != "" {
			batch = " batch " + v.BatchID
		}
		fmt.Fprintf(w, "VIOLATION %s%s: %s (ids: %v)\n", v.Invariant, batch, v.Detail, v.IDs)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped %s: the engine is not reachable from here (the in-memory engine lives inside the serving process)\n", s)
	}
	fmt.Fprintf(w, "audit at %s: %d invariants checked, %d batches checked in the engine, %d violations\n",
		r.At.Format(time.RFC3339), len(r.Checked), r.Batches, len(r.Violations))
}
