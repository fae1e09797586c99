package service_test

import (
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

func tagRules(refs ...string) func(*coupon.BatchSpec) {
	return func(s *coupon.BatchSpec) {
		for _, r := range refs {
			kind, id := "product", r
			for i := range r {
				if r[i] == ':' {
					kind, id = r[:i], r[i+1:]
				}
			}
			s.Rules = append(s.Rules, coupon.Rule{RefType: kind, RefID: id, UseType: "include"})
		}
	}
}

func (q *qEnv) tags(t *testing.T, refs ...string) [][]string {
	t.Helper()
	tags, err := q.svc.ProductTags(q.ctx, refs)
	require.NoError(t, err)
	out := make([][]string, len(tags))
	for i, ts := range tags {
		out[i] = []string{}
		for _, tg := range ts {
			out[i] = append(out[i], tg.BatchID)
		}
	}
	return out
}

// events returns the outbox's events of a type about an aggregate.
func (q *qEnv) events(t *testing.T, typ, aggregate string) []store.Event {
	t.Helper()
	all, err := q.store.PendingEvents(q.ctx, 1000)
	require.NoError(t, err)
	var out []store.Event
	for _, e := range all {
		if e.Type == typ && e.AggregateID == aggregate {
			out = append(out, e)
		}
	}
	return out
}

// TestTagsFollowTheClaimWindow: tags appear at claim_start and go at
// claim_end, to the millisecond of the injected clock, each edge fired by
// the delay queue once.
func TestTagsFollowTheClaimWindow(t *testing.T) {
	q := querySetup(t, memory.New())
	start := q.clock.Now().Add(time.Hour)
	end := start.Add(time.Hour)
	b := q.batch(t, 10, tagRules("p1", "category:c1"), func(s *coupon.BatchSpec) { s.ClaimStart, s.ClaimEnd = start, end })
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonPublished)) // the tagger on batch.published
	require.Equal(t, [][]string{{}, {}, {}}, q.tags(t, "p1", "category:c1", "p2"), "not before the window")

	jobs := func(at time.Time) int {
		t.Helper()
		n, err := q.svc.TagJobs(q.ctx, at, 10)
		require.NoError(t, err)
		return n
	}
	q.clock.Advance(time.Hour - time.Millisecond)
	require.Zero(t, jobs(q.clock.Now()))
	q.clock.Advance(time.Millisecond)
	require.Equal(t, 1, jobs(start))
	require.Equal(t, [][]string{{b.ID}, {b.ID}, {}}, q.tags(t, "p1", "category:c1", "p2"), "tagged at claim_start")
	require.Zero(t, jobs(start), "fired once")

	q.clock.Advance(time.Hour - time.Millisecond)
	require.Zero(t, jobs(q.clock.Now()))
	require.Equal(t, [][]string{{b.ID}}, q.tags(t, "p1"), "still tagged a millisecond before claim_end")
	q.clock.Advance(time.Millisecond)
	require.Equal(t, 1, jobs(end))
	require.Equal(t, [][]string{{}, {}}, q.tags(t, "p1", "category:c1"), "untagged at claim_end")
	require.Zero(t, jobs(end.Add(time.Hour)))

	evs := q.events(t, bus.TypeProductTagsChanged, b.ID)
	require.Len(t, evs, 2)
	var on, off bus.ProductTagsChanged
	require.NoError(t, json.Unmarshal(evs[0].Payload, &on))
	require.NoError(t, json.Unmarshal(evs[1].Payload, &off))
	require.True(t, on.Tagged)
	require.Equal(t, []string{"p1"}, on.Products)
	require.Equal(t, []string{"c1"}, on.Categories)
	require.Equal(t, service.TagReasonWindowOpen, on.Reason)
	require.False(t, off.Tagged)
	require.Equal(t, service.TagReasonWindowClosed, off.Reason)
}

// TestTagsGoOnStockOutAndPause: a batch's last claim publishes
// batch.stock_out once and the tags go; pause removes them at once and
// resume restores them.
func TestTagsGoOnStockOutAndPause(t *testing.T) {
	q := querySetup(t, memory.New())
	b := q.batch(t, 2, tagRules("p9"))
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonPublished))
	require.Equal(t, [][]string{{b.ID}}, q.tags(t, "p9"))

	_, err := q.svc.Transition(q.ctx, b.ID, coupon.Pause)
	require.NoError(t, err)
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonPaused))
	require.Equal(t, [][]string{{}}, q.tags(t, "p9"), "paused: gone")
	_, err = q.svc.Transition(q.ctx, b.ID, coupon.Resume)
	require.NoError(t, err)
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonResumed))
	require.Equal(t, [][]string{{b.ID}}, q.tags(t, "p9"), "resumed: back")

	q.claim(t, b, "s1")
	q.claim(t, b, "s2")
	for range 3 {
		_, _, err := q.svc.Claim(q.ctx, claimReq(b.ID, "s3"))
		requireCode(t, err, coupon.CodeSoldOut)
	}
	require.Eventually(t, func() bool { return len(q.events(t, bus.TypeBatchStockOut, b.ID)) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, q.svc.StockOut(q.ctx, b.ID))
	require.Len(t, q.events(t, bus.TypeBatchStockOut, b.ID), 1, "published once")
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonStockOut)) // the tagger on batch.stock_out
	require.Equal(t, [][]string{{}}, q.tags(t, "p9"), "stocked out: gone")
	require.NoError(t, q.svc.SyncTags(q.ctx))
	require.Equal(t, [][]string{{}}, q.tags(t, "p9"), "a sync does not bring them back")
	evs := q.events(t, bus.TypeProductTagsChanged, b.ID)
	require.Len(t, evs, 4, "on, off (pause), on (resume), off (stock-out)")
}

// TestTagsRestoredAfterEngineLoss: the store records which batches are
// tagged; a sync puts their tags back into an engine that lost them.
func TestTagsRestoredAfterEngineLoss(t *testing.T) {
	e := &swappable{Engine: memory.New()}
	q := querySetup(t, e)
	b := q.batch(t, 5, tagRules("p5"))
	require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonPublished))
	e.Engine = memory.New() // Redis restarted empty
	require.Equal(t, [][]string{{}}, q.tags(t, "p5"))
	require.NoError(t, q.svc.SyncTags(q.ctx))
	require.Equal(t, [][]string{{b.ID}}, q.tags(t, "p5"))
	require.Len(t, q.events(t, bus.TypeProductTagsChanged, b.ID), 1, "no change to announce")
}

type swappable struct{ engine.Engine }

// TestTagJobsOnceAcrossInstances: two instances share the store and a Redis
// engine and poll the delay queue at the same injected times; each window
// edge fires on one of them, once.
func TestTagJobsOnceAcrossInstances(t *testing.T) {
	eng := engines["redis"](t)
	path := filepath.Join(t.TempDir(), "shared.db")
	c := &clock{t: time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)}
	var svcs []*service.Service
	var st store.Store
	for range 2 {
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path, Synchronous: "normal"})
		require.NoError(t, err)
		st = s
		svc := service.New(service.Config{Store: s, Engine: eng, Now: c.Now})
		svcs = append(svcs, svc)
		t.Cleanup(func() { svc.Close(); _ = s.Close() })
	}
	q := &qEnv{svc: svcs[0], store: st, clock: c, ctx: t.Context()}
	start := c.Now().Add(time.Minute)
	var batches []*coupon.Batch
	for i := range 5 {
		b := q.batch(t, 3, tagRules("shared"), func(s *coupon.BatchSpec) {
			s.ClaimStart, s.ClaimEnd = start.Add(time.Duration(i)*time.Second), start.Add(time.Hour)
		})
		require.NoError(t, q.svc.RetagBatch(q.ctx, b.ID, service.TagReasonPublished))
		batches = append(batches, b)
	}
	var mu sync.Mutex
	total := 0
	for s := 0; s <= 5; s++ {
		at := start.Add(time.Duration(s) * time.Second)
		c.Advance(at.Sub(c.Now()))
		var wg sync.WaitGroup
		for _, svc := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := svc.TagJobs(t.Context(), at, 10)
				require.NoError(t, err)
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Len(t, q.tags(t, "shared")[0], min(s+1, 5), "second %d", s)
	}
	require.Equal(t, 5, total, "each window opening fired once")
	for _, b := range batches {
		require.Len(t, q.events(t, bus.TypeProductTagsChanged, b.ID), 1)
	}
}

// TestProductTagsInput: ids are checked, at most 100.
func TestProductTagsInput(t *testing.T) {
	q := querySetup(t, memory.New())
	_, err := q.svc.ProductTags(q.ctx, nil)
	requireCode(t, err, coupon.CodeInvalid)
	many := make([]string, 101)
	for i := range many {
		many[i] = "p"
	}
	_, err = q.svc.ProductTags(q.ctx, many)
	requireCode(t, err, coupon.CodeInvalid)
	_, err = q.svc.ProductTags(q.ctx, []string{"shelf:1"})
	requireCode(t, err, coupon.CodeInvalid)
	require.Len(t, q.tags(t, many[:100]...), 100)
}
