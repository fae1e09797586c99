package guard

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/telemetry"
)

// StoreConfig configures the store guard. Every field is optional.
type StoreConfig struct {
	// Timeout bounds each call; 0: none. A call that times out fails with
	// an error the API answers with 503, instead of hanging.
	Timeout time.Duration
	// BulkTimeout bounds the calls that move whole pools (AddCodes,
	// Snapshot); 0: none.
	BulkTimeout time.Duration
	// ReplicaBreaker guards the read replica of a store.ReplicaReader: while
	// it is open, or when a list fails on the replica, the list reads the
	// primary. Nil: a breaker with the defaults.
	ReplicaBreaker *Breaker
	Tracer         trace.Tracer // nil: no spans
	Metrics        *telemetry.Metrics
	// Origins, if set, remembers the span of each batch status change for
	// its event.
	Origins *telemetry.Origins
}

// Store guards a store.Store: a timeout, a span and metrics on every call,
// and the fallback of lists from the replica to the primary. The primary has
// no breaker: nothing can be served without it, and its timeouts already
// turn a slow store into quick 503s. Store embeds the store, so methods it
// does not guard (and any added to the interface later) pass straight
// through.
type Store struct {
	store.Store
	tracer  trace.Tracer
	origins *telemetry.Origins
	metrics *telemetry.Metrics
	replica store.ReplicaReader // nil: no replica

	createBatch, getBatch, listBatches, setBatchStatus, updateBatch, claimedCount, addCodes, continueCodes, unclaimedCodes, getCode, snapshot,
	insertClaims, claimedCodes, getClaim, getClaimByKey, listUserClaims, pendingEvents, markPublished,
	migrations, replicaBatches, replicaClaims, primaryBatches, primaryClaims *op
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.MigrationChecker = (*Store)(nil)
)

// storeAnswers are the store's own outcomes, not signs of trouble.
var storeAnswers = []error{
	store.ErrTotalExceeded, store.ErrGeneratedMoved, store.ErrStatus, store.ErrVersion, store.ErrHasCodes, store.ErrCodeClaimed, store.ErrSeqTaken,
	store.ErrKeyUsed, store.ErrUnknownCode, store.ErrOverLimit,
}

// NewStore guards s.
func NewStore(s store.Store, cfg StoreConfig) *Store {
	o := ops{backend: "store", tracer: cfg.Tracer, metrics: cfg.Metrics}
	t, bulk := cfg.Timeout, cfg.BulkTimeout
	g := &Store{
		Store:          s,
		tracer:         cfg.Tracer,
		origins:        cfg.Origins,
		metrics:        cfg.Metrics,
		createBatch:    o.op("create_batch", t, nil, false, storeAnswers),
		getBatch:       o.op("get_batch", t, nil, false, storeAnswers),
		listBatches:    o.op("list_batches", t, nil, false, storeAnswers),
		setBatchStatus: o.op("set_batch_status", t, nil, false, storeAnswers),
		updateBatch:    o.op("update_batch", t, nil, false, storeAnswers),
		claimedCount:   o.op("claimed_count", t, nil, false, storeAnswers),
		addCodes:       o.op("add_codes", bulk, nil, false, storeAnswers),
		continueCodes:  o.op("continue_codes", bulk, nil, false, storeAnswers),
		unclaimedCodes: o.op("unclaimed_codes", bulk, nil, false, storeAnswers),
		getCode:        o.op("get_code", t, nil, false, storeAnswers),
		snapshot:       o.op("snapshot", bulk, nil, false, storeAnswers),
		insertClaims:   o.op("insert_claims", t, nil, false, storeAnswers),
		claimedCodes:   o.op("claimed_codes", t, nil, false, storeAnswers),
		getClaim:       o.op("get_claim", t, nil, false, storeAnswers),
		getClaimByKey:  o.op("get_claim_by_key", t, nil, false, storeAnswers),
		listUserClaims: o.op("list_user_claims", t, nil, false, storeAnswers),
		pendingEvents:  o.op("pending_events", t, nil, false, storeAnswers),
		markPublished:  o.op("mark_published", t, nil, false, storeAnswers),
		migrations:     o.op("migrations_applied", t, nil, false, storeAnswers),
	}
	if r, ok := s.(store.ReplicaReader); ok && r.HasReplica() {
		g.replica = r
		b := cfg.ReplicaBreaker
		if b == nil {
			b = NewBreaker(BreakerConfig{Name: "replica", Metrics: cfg.Metrics})
		}
		ro := ops{backend: "replica", tracer: cfg.Tracer, metrics: cfg.Metrics}
		// Permission is asked before the call (Allow), so the ops record
		// outcomes without asking again.
		g.replicaBatches = ro.op("list_batches", t, b, false, storeAnswers)
		g.replicaClaims = ro.op("list_user_claims", t, b, false, storeAnswers)
		g.primaryBatches = o.op("list_batches_primary", t, nil, false, storeAnswers)
		g.primaryClaims = o.op("list_user_claims_primary", t, nil, false, storeAnswers)
	}
	return g
}

// Unwrap returns the guarded store.
func (s *Store) Unwrap() store.Store { return s.Store }

// MigrationsApplied asks the store, if it can tell; a store that cannot is
// taken to be up to date once it answers.
func (s *Store) MigrationsApplied(ctx context.Context) (bool, error) {
	mc, ok := s.Store.(store.MigrationChecker)
	if !ok {
		_, err := s.PendingEvents(ctx, 1)
		return err == nil, err
	}
	c, cctx, _ := begin(ctx, s.tracer, s.migrations)
	ok, err := mc.MigrationsApplied(cctx)
	return ok, c.end(err)
}

// CreateBatch is guarded.
func (s *Store) CreateBatch(ctx context.Context, b *coupon.Batch) error {
	c, cctx, _ := begin(ctx, s.tracer, s.createBatch)
	return c.end(s.Store.CreateBatch(cctx, b))
}

// GetBatch is guarded.
func (s *Store) GetBatch(ctx context.Context, id string) (*coupon.Batch, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.getBatch)
	b, err := s.Store.GetBatch(cctx, id)
	return b, c.end(err)
}

// ListBatches reads the replica if there is one and it is well, else the
// primary.
func (s *Store) ListBatches(ctx context.Context, f store.BatchFilter) ([]*coupon.Batch, error) {
	if s.replica == nil {
		c, cctx, _ := begin(ctx, s.tracer, s.listBatches)
		bs, err := s.Store.ListBatches(cctx, f)
		return bs, c.end(err)
	}
	if s.replicaBatches.breaker.Allow() == nil {
		c, cctx, _ := begin(ctx, s.tracer, s.replicaBatches)
		bs, err := s.Store.ListBatches(cctx, f)
		if err = c.end(err); !Failed(ctx, err, storeAnswers...) {
			return bs, err
		}
	}
	s.metrics.ReplicaFallback()
	c, cctx, _ := begin(ctx, s.tracer, s.primaryBatches)
	bs, err := s.replica.ListBatchesPrimary(cctx, f)
	return bs, c.end(err)
}

// SetBatchStatus is guarded.
func (s *Store) SetBatchStatus(ctx context.Context, p store.SetBatchStatus) (*coupon.Batch, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.setBatchStatus)
	b, err := s.Store.SetBatchStatus(cctx, p)
	if err == nil && p.Event != nil {
		s.origins.Remember(ctx, p.Event.AggregateID)
	}
	return b, c.end(err)
}

// UpdateBatch is guarded.
func (s *Store) UpdateBatch(ctx context.Context, p store.UpdateBatch) (*coupon.Batch, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.updateBatch)
	b, err := s.Store.UpdateBatch(cctx, p)
	if err == nil && p.Event != nil {
		s.origins.Remember(ctx, p.Event.AggregateID)
	}
	return b, c.end(err)
}

// ClaimedCount is guarded.
func (s *Store) ClaimedCount(ctx context.Context, batchID string) (int64, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.claimedCount)
	n, err := s.Store.ClaimedCount(cctx, batchID)
	return n, c.end(err)
}

// AddCodes is guarded, with the bulk timeout.
func (s *Store) AddCodes(ctx context.Context, batchID string, codes []coupon.Code) ([]coupon.Code, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.addCodes)
	out, err := s.Store.AddCodes(cctx, batchID, codes)
	return out, c.end(err)
}

// ContinueCodes is guarded, with the bulk timeout.
func (s *Store) ContinueCodes(ctx context.Context, p store.ContinueCodes) ([]coupon.Code, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.continueCodes)
	out, err := s.Store.ContinueCodes(cctx, p)
	return out, c.end(err)
}

// UnclaimedCodes is guarded, with the bulk timeout.
func (s *Store) UnclaimedCodes(ctx context.Context, batchID string, afterSeq, throughSeq int64) ([]store.PoolCode, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.unclaimedCodes)
	out, err := s.Store.UnclaimedCodes(cctx, batchID, afterSeq, throughSeq)
	return out, c.end(err)
}

// GetCode is guarded.
func (s *Store) GetCode(ctx context.Context, code string) (*coupon.Code, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.getCode)
	out, err := s.Store.GetCode(cctx, code)
	return out, c.end(err)
}

// Snapshot is guarded, with the bulk timeout.
func (s *Store) Snapshot(ctx context.Context, batchID string) (*store.BatchSnapshot, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.snapshot)
	snap, err := s.Store.Snapshot(cctx, batchID)
	return snap, c.end(err)
}

// InsertClaims is guarded. Its span, in the group committer's goroutine,
// is linked to the requests whose claims it writes.
func (s *Store) InsertClaims(ctx context.Context, writes []store.ClaimWrite) []error {
	if s.tracer != nil && s.origins != nil {
		var links []trace.Link
		for i := 0; i < len(writes) && len(links) < 128; i++ {
			if sc, ok := s.origins.Lookup(writes[i].Claim.ID); ok {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		if len(links) > 0 {
			var span trace.Span
			ctx, span = s.tracer.Start(ctx, "group commit", trace.WithLinks(links...))
			defer span.End()
		}
	}
	c, cctx, _ := begin(ctx, s.tracer, s.insertClaims)
	errs := s.Store.InsertClaims(cctx, writes)
	var failure error
	for _, err := range errs {
		if Failed(ctx, err, storeAnswers...) {
			failure = err
			break
		}
	}
	_ = c.end(failure)
	return errs
}

// ClaimedCodes is guarded.
func (s *Store) ClaimedCodes(ctx context.Context, codes []string) ([]string, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.claimedCodes)
	out, err := s.Store.ClaimedCodes(cctx, codes)
	return out, c.end(err)
}

// GetClaim is guarded.
func (s *Store) GetClaim(ctx context.Context, id string) (*coupon.Claim, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.getClaim)
	out, err := s.Store.GetClaim(cctx, id)
	return out, c.end(err)
}

// GetClaimByKey is guarded.
func (s *Store) GetClaimByKey(ctx context.Context, batchID, userID, key string) (*coupon.Claim, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.getClaimByKey)
	out, err := s.Store.GetClaimByKey(cctx, batchID, userID, key)
	return out, c.end(err)
}

// ListUserClaims reads the replica if there is one and it is well, else
// the primary.
func (s *Store) ListUserClaims(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	if s.replica == nil {
		c, cctx, _ := begin(ctx, s.tracer, s.listUserClaims)
		cs, err := s.Store.ListUserClaims(cctx, f)
		return cs, c.end(err)
	}
	if s.replicaClaims.breaker.Allow() == nil {
		c, cctx, _ := begin(ctx, s.tracer, s.replicaClaims)
		cs, err := s.Store.ListUserClaims(cctx, f)
		if err = c.end(err); !Failed(ctx, err, storeAnswers...) {
			return cs, err
		}
	}
	s.metrics.ReplicaFallback()
	c, cctx, _ := begin(ctx, s.tracer, s.primaryClaims)
	cs, err := s.replica.ListUserClaimsPrimary(cctx, f)
	return cs, c.end(err)
}

// PendingEvents is guarded.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	c, cctx, _ := begin(ctx, s.tracer, s.pendingEvents)
	out, err := s.Store.PendingEvents(cctx, limit)
	return out, c.end(err)
}

// MarkPublished is guarded.
func (s *Store) MarkPublished(ctx context.Context, ids []int64, at time.Time) error {
	c, cctx, _ := begin(ctx, s.tracer, s.markPublished)
	return c.end(s.Store.MarkPublished(cctx, ids, at))
}
