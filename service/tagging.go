package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// Product tagging: a batch whose rules include products, categories or
// merchants tags them while it is claimable — active, inside its claim
// window, its coupons still valid, and not stocked out — so that product
// pages show a coupon badge exactly then.
//
// The store records whether each batch is tagged (and writes
// product.tags_changed with every change); the engine holds the tags that
// product pages read. Every change goes through RetagBatch, which works out
// from the store what the tagging must be now, under a lease of the batch,
// and makes the engine and the store say so: so the triggers — the delay
// queue at the window's edges, the batch events (pause, resume, end,
// stock-out), a periodic sync after the engine lost its state — may come
// late, twice or out of order and still leave the right tags.

// TagQueue is the delay queue of tagging; a job is "<batch id>".
const TagQueue = "tagging"

// Reasons of product.tags_changed.
const (
	TagReasonWindowOpen   = "window_open"
	TagReasonWindowClosed = "window_closed"
	TagReasonStockOut     = "stock_out"
	TagReasonPaused       = "paused"
	TagReasonEnded        = "ended"
	TagReasonResumed      = "resumed"
	TagReasonPublished    = "published"
	TagReasonSync         = "sync"
)

// MaxTagRefs bounds a product tags query.
const MaxTagRefs = 100

// TagRefs returns the refs a batch's rules tag: "product:<id>",
// "category:<id>", "merchant:<id>" of its include rules.
func TagRefs(b *coupon.Batch) []string {
	var refs []string
	for _, r := range b.Rules {
		if r.UseType != "include" {
			continue
		}
		switch r.RefType {
		case "product", "category", "merchant":
			refs = append(refs, r.RefType+":"+r.RefID)
		}
	}
	return refs
}

// claimableWindow says whether the tags of b are due at now, and when that
// next changes by the clock alone (zero: never).
func claimableWindow(b *coupon.Batch, flags store.BatchFlags, now time.Time) (on bool, next time.Time, reason string) {
	end := b.ClaimEnd
	if ve := b.Validity.End; !ve.IsZero() && (end.IsZero() || ve.Before(end)) {
		end = ve
	}
	switch {
	case b.Status == coupon.StatusPaused:
		return false, time.Time{}, TagReasonPaused
	case b.Status == coupon.StatusEnded:
		return false, time.Time{}, TagReasonEnded
	case b.Status != coupon.StatusActive:
		return false, time.Time{}, TagReasonPaused
	case !flags.StockOutAt.IsZero():
		return false, time.Time{}, TagReasonStockOut
	case !b.ClaimStart.IsZero() && now.Before(b.ClaimStart):
		return false, b.ClaimStart, TagReasonWindowClosed
	case !end.IsZero() && !now.Before(end):
		return false, time.Time{}, TagReasonWindowClosed
	}
	return true, end, TagReasonWindowOpen
}

// tagData is what product pages read of a batch's tag.
type tagData struct {
	BatchID    string      `json:"batch_id"`
	Name       string      `json:"name"`
	MerchantID string      `json:"merchant_id,omitempty"`
	Type       coupon.Type `json:"type"`
	Amount     int64       `json:"amount,omitempty"`
	MinSpend   int64       `json:"min_spend,omitempty"`
	PercentOff int         `json:"percent_off,omitempty"`
	AdCopy     string      `json:"ad_copy,omitempty"`
	ClaimEnd   *time.Time  `json:"claim_end,omitempty"`
}

// RetagBatch brings a batch's tags in line with what it is now, and makes
// sure the delay queue holds the job of its next window edge. reason names
// the trigger for product.tags_changed when the state of the batch does
// not say it better. A batch without tag rules, or a draft, is left alone.
func (s *Service) RetagBatch(ctx context.Context, batchID, reason string) error {
	if !coupon.ValidID(batchID) {
		return nil // not a batch of ours (a malformed job)
	}
	return s.underLease(ctx, "tag:"+batchID, func() error { return s.retag(ctx, batchID, reason) })
}

func (s *Service) retag(ctx context.Context, batchID, reason string) error {
	b, err := s.store.GetBatch(ctx, batchID)
	if errors.Is(err, coupon.ErrNotFound) {
		return nil
	}
	if err != nil {
		return unavailable("get batch", err)
	}
	refs := TagRefs(b)
	if len(refs) == 0 || b.Status == coupon.StatusDraft {
		return nil
	}
	flags, err := s.store.BatchFlags(ctx, batchID)
	if err != nil {
		return unavailable("batch flags", err)
	}
	now := s.clock()
	on, next, why := claimableWindow(b, flags, now)
	if reason == "" || reason == TagReasonSync || !on {
		reason = why
	}
	if on {
		data, _ := json.Marshal(tagOf(b))
		err = s.engine.SetTags(ctx, b.ID, refs, data)
	} else {
		err = s.engine.RemoveTags(ctx, b.ID, refs)
	}
	if err != nil {
		return unavailable("engine tags", err)
	}
	if !next.IsZero() {
		if err := s.engine.Schedule(ctx, TagQueue, b.ID, next); err != nil {
			return unavailable("schedule tagging", err)
		}
	}
	changed, err := s.store.SetBatchTagged(ctx, b.ID, on, now, tagsChanged(b, refs, on, reason, now))
	if err != nil {
		return unavailable("record tagging", err)
	}
	if changed {
		s.onCommit()
		s.log.InfoContext(ctx, "product tags changed", "batch", b.ID, "tagged", on, "reason", reason, "refs", len(refs))
	}
	return nil
}

func tagOf(b *coupon.Batch) tagData {
	d := tagData{BatchID: b.ID, Name: b.Name, MerchantID: b.MerchantID, Type: b.Type, MinSpend: b.MinSpend,
		PercentOff: b.PercentOff, AdCopy: b.AdCopy}
	if b.Amount.Type == coupon.AmountFixed {
		d.Amount = b.Amount.Value
	}
	if !b.ClaimEnd.IsZero() {
		end := b.ClaimEnd
		d.ClaimEnd = &end
	}
	return d
}

func tagsChanged(b *coupon.Batch, refs []string, on bool, reason string, at time.Time) store.Event {
	d := bus.ProductTagsChanged{BatchID: b.ID, MerchantID: b.MerchantID, Tagged: on, Reason: reason, At: at}
	for _, r := range refs {
		kind, id, _ := strings.Cut(r, ":")
		switch kind {
		case "product":
			d.Products = append(d.Products, id)
		case "category":
			d.Categories = append(d.Categories, id)
		case "merchant":
			d.Merchants = append(d.Merchants, id)
		}
	}
	data, _ := json.Marshal(d)
	return store.Event{Type: bus.TypeProductTagsChanged, AggregateID: b.ID, Payload: data, CreatedAt: at}
}

// underLease runs fn under the engine lease name, waiting up to 5s for
// another holder (an instance retagging the same batch).
func (s *Service) underLease(ctx context.Context, name string, fn func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		token, ok, err := s.engine.Lock(ctx, name, 30*time.Second)
		if err != nil {
			return unavailable("engine lease", err)
		}
		if ok {
			defer func() { _ = s.engine.Unlock(context.WithoutCancel(ctx), name, token) }()
			return fn()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lease %s is held: %w", name, coupon.ErrUnavailable)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TagJobs takes the tagging jobs due at now and retags their batches,
// marking each done once retagged; a job that fails is due again when its
// lease ends. It returns the number of jobs done.
func (s *Service) TagJobs(ctx context.Context, now time.Time, limit int) (int, error) {
	jobs, err := s.engine.Take(ctx, TagQueue, now, limit, time.Minute)
	if err != nil {
		return 0, unavailable("take tagging jobs", err)
	}
	var lag time.Duration
	for _, j := range jobs {
		lag = max(lag, now.Sub(j.At))
	}
	s.query.tagLag.Store(int64(lag))
	done := 0
	var errs []error
	for _, j := range jobs {
		if err := s.RetagBatch(ctx, j.ID, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.engine.Done(ctx, TagQueue, j); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}

// TagQueueLag is how late, after their due times, the jobs of the last
// look at the tagging delay queue were taken (the latest of them); zero
// when none was due.
func (s *Service) TagQueueLag() time.Duration { return time.Duration(s.query.tagLag.Load()) }

// SyncTags retags every batch the store records as tagged, and every active
// batch: what restores the engine's tags after it lost its state, and the
// schedule of their window edges.
func (s *Service) SyncTags(ctx context.Context) error {
	var errs []error
	seen := map[string]bool{}
	after := ""
	for {
		ids, err := s.store.TaggedBatches(ctx, after, 1000)
		if err != nil {
			return unavailable("tagged batches", err)
		}
		for _, id := range ids {
			seen[id] = true
			if err := s.RetagBatch(ctx, id, TagReasonSync); err != nil {
				errs = append(errs, err)
			}
		}
		if len(ids) < 1000 {
			break
		}
		after = ids[len(ids)-1]
	}
	active, err := s.store.ListBatches(ctx, store.BatchFilter{Status: coupon.StatusActive, Limit: 1000})
	if err != nil {
		return unavailable("list batches", err)
	}
	for _, b := range active {
		if !seen[b.ID] && len(TagRefs(b)) > 0 {
			if err := s.RetagBatch(ctx, b.ID, TagReasonSync); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ProductTag is one coupon badge of a product, category or merchant.
type ProductTag = json.RawMessage

// ProductTags answers, from the engine, which claimable batches tag each of
// refs: product ids, or "category:<id>" and "merchant:<id>". At most 100.
func (s *Service) ProductTags(ctx context.Context, refs []string) ([][]engine.Tag, error) {
	var v coupon.Validation
	switch {
	case len(refs) == 0:
		v.Add("ids", "name at least one product")
	case len(refs) > MaxTagRefs:
		v.Addf("ids", "name at most %d products", MaxTagRefs)
	}
	// The engine's keys, "kind:id", are cut from one string: one allocation
	// for the call, not one per ref. A field is named only when it is wrong.
	size := 0
	for _, r := range refs {
		size += len(r) + len("product:")
	}
	var all strings.Builder
	all.Grow(size)
	ends := make([]int, len(refs))
	for i, r := range refs {
		kind, id, ok := strings.Cut(r, ":")
		if !ok {
			kind, id = "product", r
		}
		switch kind {
		case "product", "category", "merchant":
		default:
			v.Addf(fmt.Sprintf("ids[%d]", i), "must be a product id, category:<id> or merchant:<id>")
		}
		var one coupon.Validation
		if coupon.ValidIdentifier(&one, "id", id, true); one.Err() != nil {
			coupon.ValidIdentifier(&v, fmt.Sprintf("ids[%d]", i), id, true)
		}
		all.WriteString(kind)
		all.WriteByte(':')
		all.WriteString(id)
		ends[i] = all.Len()
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	joined, keys, start := all.String(), make([]string, len(refs)), 0
	for i, end := range ends {
		keys[i], start = joined[start:end], end
	}
	tags, err := s.engine.Tags(ctx, keys)
	if err != nil {
		return nil, unavailable("product tags", err)
	}
	return tags, nil
}

// StockOut records that a batch's last code is claimed: batch.stock_out is
// published once, and the tagger removes the batch's tags when it sees it.
func (s *Service) StockOut(ctx context.Context, batchID string) error {
	if _, done := s.query.soldOut.Load(batchID); done {
		return nil
	}
	b, err := s.batches.get(ctx, batchID)
	if err != nil {
		return unavailable("get batch", err)
	}
	now := s.clock()
	data, _ := json.Marshal(bus.BatchStockOut{BatchID: b.ID, MerchantID: b.MerchantID, TotalQuantity: b.TotalQuantity, At: now})
	marked, err := s.store.MarkStockOut(ctx, b.ID, now,
		store.Event{Type: bus.TypeBatchStockOut, AggregateID: b.ID, Payload: data, CreatedAt: now})
	if err != nil {
		return unavailable("mark stock out", err)
	}
	s.query.soldOut.Store(batchID, struct{}{})
	if marked {
		s.onCommit()
		s.log.InfoContext(ctx, "batch stocked out", "batch", b.ID)
	}
	return nil
}

// soldOut is the claim path's hook when a claim finds a batch sold out for
// good (every code generated and loaded, the pool empty). The pool can be
// empty a moment before the last claims commit, or while a failed claim's
// code is on its way back, so the store's count decides: in the background,
// at most once per batch every few seconds, never delaying the answer.
// The stats consumer records the stock-out too when its count reaches the
// total, so a batch whose last claim no later claim follows is seen.
func (s *Service) soldOut(ctx context.Context, b *coupon.Batch) {
	if _, done := s.query.soldOut.Load(b.ID); done {
		return
	}
	now := time.Now()
	if last, ok := s.query.soldOutChecks.Load(b.ID); ok && now.Sub(last.(time.Time)) < soldOutRecheck {
		return
	}
	s.query.soldOutChecks.Store(b.ID, now)
	go func() {
		ctx := context.WithoutCancel(ctx)
		n, err := s.store.ClaimedCount(ctx, b.ID)
		if err == nil && n >= b.TotalQuantity {
			err = s.StockOut(ctx, b.ID)
		}
		if err != nil {
			s.log.WarnContext(ctx, "checking a stock-out failed; the stats consumer records it too", "batch", b.ID, "err", err)
		}
	}()
}

const soldOutRecheck = 5 * time.Second
