package guard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/telemetry"
)

// EngineConfig configures the engine guard. Every field is optional.
type EngineConfig struct {
	// Timeout bounds each call; 0: none (the in-memory engine does no I/O).
	Timeout time.Duration
	// BulkTimeout bounds Rebuild and AddCodes, which move whole pools; 0: none.
	BulkTimeout time.Duration
	// Breaker, if set, refuses calls at once while the engine is down.
	// Undo is always tried: it puts a code back and costs nothing to try.
	Breaker *Breaker
	Tracer  trace.Tracer // nil: no spans
	Metrics *telemetry.Metrics
	// Origins, if set, remembers each claim's span for its claim.created event.
	Origins *telemetry.Origins
}

// Engine guards an engine.Engine: a timeout, a span and metrics on every
// call, and a circuit breaker. It embeds the engine, so methods it does not
// guard (and any added to the interface later) pass straight through.
type Engine struct {
	engine.Engine
	tracer  trace.Tracer
	origins *telemetry.Origins

	claim, settle, pending, reclaim, undo, setBatch, addCodes, rebuild, stats, lock, extend, unlock *op
}

var _ engine.Engine = (*Engine)(nil)

// engineAnswers are the engine's own outcomes, not signs of trouble.
var engineAnswers = []error{engine.ErrUnknownBatch, engine.ErrStaleLoad}

// NewEngine guards e.
func NewEngine(e engine.Engine, cfg EngineConfig) *Engine {
	o := ops{backend: "engine", tracer: cfg.Tracer, metrics: cfg.Metrics}
	b, t, bulk := cfg.Breaker, cfg.Timeout, cfg.BulkTimeout
	return &Engine{
		Engine:   e,
		tracer:   cfg.Tracer,
		origins:  cfg.Origins,
		claim:    o.op("claim", t, b, true, engineAnswers),
		settle:   o.op("settle", t, b, true, engineAnswers),
		pending:  o.op("pending", t, b, true, engineAnswers),
		reclaim:  o.op("reclaim", t, b, true, engineAnswers),
		undo:     o.op("undo", t, b, false, engineAnswers),
		setBatch: o.op("set_batch", t, b, true, engineAnswers),
		addCodes: o.op("add_codes", bulk, b, true, engineAnswers),
		rebuild:  o.op("rebuild", bulk, b, true, engineAnswers),
		stats:    o.op("stats", t, b, true, engineAnswers),
		lock:     o.op("lock", t, b, true, engineAnswers),
		extend:   o.op("extend", t, b, true, engineAnswers),
		unlock:   o.op("unlock", t, b, false, engineAnswers),
	}
}

// Unwrap returns the guarded engine.
func (e *Engine) Unwrap() engine.Engine { return e.Engine }

// Claim is the engine's claim step, guarded.
func (e *Engine) Claim(ctx context.Context, p engine.ClaimParams) (engine.ClaimResult, error) {
	c, cctx, err := begin(ctx, e.tracer, e.claim)
	if err != nil {
		return engine.ClaimResult{}, err
	}
	c.attr("coupond.batch_id", p.BatchID)
	res, err := e.Engine.Claim(cctx, p)
	if err == nil && !res.Replayed {
		e.origins.Remember(ctx, p.ClaimID)
	}
	return res, c.end(err)
}

// Settle is guarded.
func (e *Engine) Settle(ctx context.Context, batchID string, codes []string) error {
	c, cctx, err := begin(ctx, e.tracer, e.settle)
	if err != nil {
		return err
	}
	return c.end(e.Engine.Settle(cctx, batchID, codes))
}

// Pending is guarded.
func (e *Engine) Pending(ctx context.Context, batchID string, before time.Time, limit int) ([]engine.PendingClaim, error) {
	c, cctx, err := begin(ctx, e.tracer, e.pending)
	if err != nil {
		return nil, err
	}
	ps, err := e.Engine.Pending(cctx, batchID, before, limit)
	return ps, c.end(err)
}

// Reclaim is guarded.
func (e *Engine) Reclaim(ctx context.Context, p engine.PendingClaim) (bool, error) {
	c, cctx, err := begin(ctx, e.tracer, e.reclaim)
	if err != nil {
		return false, err
	}
	ok, err := e.Engine.Reclaim(cctx, p)
	return ok, c.end(err)
}

// Undo is timed and measured, and always tried.
func (e *Engine) Undo(ctx context.Context, p engine.UndoParams) error {
	c, cctx, _ := begin(ctx, e.tracer, e.undo)
	c.attr("coupond.batch_id", p.BatchID)
	return c.end(e.Engine.Undo(cctx, p))
}

// SetBatch is guarded.
func (e *Engine) SetBatch(ctx context.Context, s engine.BatchState) error {
	c, cctx, err := begin(ctx, e.tracer, e.setBatch)
	if err != nil {
		return err
	}
	return c.end(e.Engine.SetBatch(cctx, s))
}

// AddCodes is guarded, with the bulk timeout.
func (e *Engine) AddCodes(ctx context.Context, batchID string, fromSeq, throughSeq int64, codes []engine.PoolCode) error {
	c, cctx, err := begin(ctx, e.tracer, e.addCodes)
	if err != nil {
		return err
	}
	return c.end(e.Engine.AddCodes(cctx, batchID, fromSeq, throughSeq, codes))
}

// Rebuild is guarded, with the bulk timeout.
func (e *Engine) Rebuild(ctx context.Context, snap engine.Snapshot) error {
	c, cctx, err := begin(ctx, e.tracer, e.rebuild)
	if err != nil {
		return err
	}
	c.attr("coupond.batch_id", snap.Batch.BatchID)
	return c.end(e.Engine.Rebuild(cctx, snap))
}

// Stats is guarded.
func (e *Engine) Stats(ctx context.Context, batchID string) (engine.BatchStats, error) {
	c, cctx, err := begin(ctx, e.tracer, e.stats)
	if err != nil {
		return engine.BatchStats{}, err
	}
	st, err := e.Engine.Stats(cctx, batchID)
	return st, c.end(err)
}

// Lock is guarded.
func (e *Engine) Lock(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	c, cctx, err := begin(ctx, e.tracer, e.lock)
	if err != nil {
		return "", false, err
	}
	token, ok, err := e.Engine.Lock(cctx, name, ttl)
	return token, ok, c.end(err)
}

// Extend is guarded.
func (e *Engine) Extend(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	c, cctx, err := begin(ctx, e.tracer, e.extend)
	if err != nil {
		return false, err
	}
	ok, err := e.Engine.Extend(cctx, name, token, ttl)
	return ok, c.end(err)
}

// Unlock is timed and measured, and always tried: a lease given up on
// shutdown lets another instance take over at once.
func (e *Engine) Unlock(ctx context.Context, name, token string) error {
	c, cctx, _ := begin(ctx, e.tracer, e.unlock)
	return c.end(e.Engine.Unlock(cctx, name, token))
}
