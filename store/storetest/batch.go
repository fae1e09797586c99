package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testBatchRoundTrip stores a batch with every field set and reads it back:
// rules in order, times in UTC at microsecond precision.
func testBatchRoundTrip(t *testing.T, f *fixture) {
	shanghai := time.FixedZone("UTC+8", 8*3600)
	b := f.batch(func(b *coupon.Batch) {
		b.Name = "Double 11 · 双十一"
		b.MerchantID = "merchant-42"
		b.Type = coupon.TypePercent
		b.Status = coupon.StatusDraft
		b.TotalQuantity = 5000
		b.GeneratedCount = 0
		b.PerUserLimit = 3
		b.ClaimStart = time.Date(2031, 11, 10, 20, 0, 0, 1000, shanghai) // 1 µs
		b.ClaimEnd = time.Date(2031, 11, 12, 0, 0, 0, 999999000, shanghai)
		b.ClaimPlatforms = []string{"ios", "android", "mini-program"}
		b.Channel = "homepage-banner"
		b.AdCopy = "Up to 20% off everything"
		b.Validity = coupon.Validity{
			Start: time.Date(2031, 11, 10, 0, 0, 0, 123456000, time.UTC),
			End:   time.Date(2031, 12, 1, 0, 0, 0, 654321000, shanghai),
		}
		b.Amount = coupon.AmountSpec{Type: coupon.AmountRandom, Min: 100, Max: 2000}
		b.MinSpend = 9900
		b.PercentOff = 20
		b.UsagePlatforms = []string{"web", "ios"}
		b.CodeFormat = coupon.CodeFormat{Prefix: "D11", Length: 10}
		b.BatchOptions = coupon.BatchOptions{
			Source:         coupon.SourceInternal,
			Generation:     coupon.Generation{Mode: coupon.GenerationIncremental, Chunk: 500, LowWater: 100},
			TriggerSubject: "user.registered",
		}
		b.Rules = []coupon.Rule{
			{RefType: "category", RefID: "shoes", UseType: "include"},
			{RefType: "product", RefID: "sku-1", UseType: "exclude"},
			{RefType: "platform", RefID: "", UseType: "bear", Value: 6000},
			{RefType: "merchant", RefID: "merchant-42", UseType: "bear", Value: 4000},
			{RefType: "node", RefID: "payment", UseType: "node"},
		}
		b.CreatedAt = time.Date(2031, 11, 1, 9, 30, 0, 42000, shanghai)
		b.UpdatedAt = b.CreatedAt.Add(time.Minute)
	})
	require.NoError(t, f.s.CreateBatch(f.ctx, b))

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(b), got)
	requireUTC(t, got.ClaimStart, got.ClaimEnd, got.Validity.Start, got.Validity.End, got.CreatedAt, got.UpdatedAt)
	require.Equal(t, 1000, got.ClaimStart.Nanosecond(), "microseconds are kept")
	require.True(t, got.ClaimStart.Equal(b.ClaimStart))
}

// testBatchZeroValues stores a batch with every optional field empty: zero
// times stay zero, empty lists stay empty.
func testBatchZeroValues(t *testing.T, f *fixture) {
	b := f.batch(func(b *coupon.Batch) {
		b.MerchantID = ""
		b.Channel, b.AdCopy = "", ""
		b.ClaimStart, b.ClaimEnd = time.Time{}, time.Time{}
		b.ClaimPlatforms, b.UsagePlatforms = nil, []string{}
		b.Validity = coupon.Validity{Days: 30}
		b.Rules = nil
	})
	require.NoError(t, f.s.CreateBatch(f.ctx, b))

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(b), got)
	require.True(t, got.ClaimStart.IsZero())
	require.True(t, got.ClaimEnd.IsZero())
	require.True(t, got.Validity.Start.IsZero())
	require.True(t, got.Validity.End.IsZero())
	require.Empty(t, got.Rules)
	require.Empty(t, got.ClaimPlatforms)
	require.Empty(t, got.UsagePlatforms)
}

func testBatchNotFound(t *testing.T, f *fixture) {
	f.createBatch()
	_, err := f.s.GetBatch(f.ctx, f.id())
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testBatchDuplicate: a second batch with the same ID is refused and the
// first is kept as it was.
func testBatchDuplicate(t *testing.T, f *fixture) {
	b := f.createBatch()
	dup := f.batch(func(d *coupon.Batch) {
		d.ID = b.ID
		d.Name = "impostor"
		d.Rules = []coupon.Rule{{RefType: "product", RefID: "x", UseType: "include"}}
	})
	err := f.s.CreateBatch(f.ctx, dup)
	require.ErrorIs(t, err, coupon.ErrConflict)

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(b), got)
}

// testListBatches: newest first, filtered by status, merchant or both, each
// batch complete with its rules.
func testListBatches(t *testing.T, f *fixture) {
	specs := []struct {
		status   coupon.Status
		merchant string
	}{
		{coupon.StatusDraft, "m1"},
		{coupon.StatusActive, "m1"},
		{coupon.StatusActive, "m2"},
		{coupon.StatusPaused, "m2"},
		{coupon.StatusEnded, "m1"},
		{coupon.StatusActive, ""},
	}
	var all []*coupon.Batch // newest first
	for i, sp := range specs {
		b := f.createBatch(func(b *coupon.Batch) {
			b.Status, b.MerchantID = sp.status, sp.merchant
			b.Rules = []coupon.Rule{{RefType: "product", RefID: "p" + string(rune('a'+i)), UseType: "include"}}
			if i%2 == 0 {
				b.Rules = append(b.Rules, coupon.Rule{RefType: "node", RefID: "order", UseType: "node"})
			}
		})
		all = append([]*coupon.Batch{normBatch(b)}, all...)
	}
	filter := func(keep func(*coupon.Batch) bool) []*coupon.Batch {
		var out []*coupon.Batch
		for _, b := range all {
			if keep(b) {
				out = append(out, b)
			}
		}
		return out
	}

	for _, tc := range []struct {
		name string
		f    store.BatchFilter
		want []*coupon.Batch
	}{
		{"all", store.BatchFilter{Limit: 100}, all},
		{"active", store.BatchFilter{Status: coupon.StatusActive, Limit: 100},
			filter(func(b *coupon.Batch) bool { return b.Status == coupon.StatusActive })},
		{"merchant m2", store.BatchFilter{MerchantID: "m2", Limit: 100},
			filter(func(b *coupon.Batch) bool { return b.MerchantID == "m2" })},
		{"active of m1", store.BatchFilter{Status: coupon.StatusActive, MerchantID: "m1", Limit: 100},
			filter(func(b *coupon.Batch) bool { return b.Status == coupon.StatusActive && b.MerchantID == "m1" })},
		{"no match", store.BatchFilter{Status: coupon.StatusEnded, MerchantID: "m2", Limit: 100}, nil},
		{"limit", store.BatchFilter{Limit: 2}, all[:2]},
		{"after cursor", store.BatchFilter{Cursor: all[1].ID, Limit: 100}, all[2:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.s.ListBatches(f.ctx, tc.f)
			require.NoError(t, err)
			require.Equal(t, ids(tc.want, batchID), ids(got, batchID))
			for i := range got {
				require.Equal(t, tc.want[i], got[i])
			}
		})
	}
}

// testListBatchesPages walks the batches page by page: every batch once, in
// order, with and without a filter.
func testListBatchesPages(t *testing.T, f *fixture) {
	var all, active []string // newest first
	for i := range 11 {
		st := coupon.StatusDraft
		if i%3 == 0 {
			st = coupon.StatusActive
		}
		b := f.createBatch(func(b *coupon.Batch) { b.Status = st })
		all = append([]string{b.ID}, all...)
		if st == coupon.StatusActive {
			active = append([]string{b.ID}, active...)
		}
	}
	walk := func(flt store.BatchFilter) []string {
		var seen []string
		for range 100 {
			page, err := f.s.ListBatches(f.ctx, flt)
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), flt.Limit)
			if len(page) == 0 {
				return seen
			}
			seen = append(seen, ids(page, batchID)...)
			flt.Cursor = page[len(page)-1].ID
		}
		t.Fatal("pagination does not end")
		return nil
	}
	require.Equal(t, all, walk(store.BatchFilter{Limit: 3}))
	require.Equal(t, all, walk(store.BatchFilter{Limit: 1}))
	require.Equal(t, active, walk(store.BatchFilter{Status: coupon.StatusActive, Limit: 2}))
}

// testSetBatchStatus walks a batch through its life; each change with an
// event writes exactly one outbox row in the same step.
func testSetBatchStatus(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) {
		b.Status = coupon.StatusDraft
		b.Rules = []coupon.Rule{{RefType: "category", RefID: "food", UseType: "include"}}
	})
	other := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusDraft })

	steps := []struct {
		tr        coupon.Transition
		withEvent bool
	}{
		{coupon.Publish, true},
		{coupon.Pause, false},
		{coupon.Resume, true},
		{coupon.End, true},
	}
	at := base
	wantEvents := 0
	for _, step := range steps {
		from, to := step.tr.From()
		at = at.Add(time.Hour + time.Microsecond)
		p := store.SetBatchStatus{ID: b.ID, From: from, To: to, At: at}
		if step.withEvent {
			p.Event = &store.Event{
				Type:        "batch." + string(step.tr),
				AggregateID: b.ID,
				Payload:     json.RawMessage(`{"batch_id":"` + b.ID + `","status":"` + string(to) + `"}`),
				CreatedAt:   at,
			}
			wantEvents++
		}
		got, err := f.s.SetBatchStatus(f.ctx, p)
		require.NoError(t, err, "%s", step.tr)

		want := normBatch(b)
		want.Status, want.UpdatedAt = to, at
		require.Equal(t, want, got, "%s returns the changed batch", step.tr)
		stored, err := f.s.GetBatch(f.ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, want, stored, "%s is stored", step.tr)

		events := f.eventsFor(b.ID)
		require.Len(t, events, wantEvents, "%s", step.tr)
		if step.withEvent {
			e := events[len(events)-1]
			require.Equal(t, p.Event.Type, e.Type)
			require.JSONEq(t, string(p.Event.Payload), string(e.Payload))
			require.Equal(t, at, e.CreatedAt)
			requireUTC(t, e.CreatedAt)
		}
	}

	// The other batch is untouched.
	got, err := f.s.GetBatch(f.ctx, other.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(other), got)
	require.Empty(t, f.eventsFor(other.ID))
}

// testSetBatchStatusRefused: a batch in none of the From statuses, or no
// batch at all, changes nothing and writes no event.
func testSetBatchStatusRefused(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusActive })
	event := func(id string) *store.Event {
		return &store.Event{Type: "batch.published", AggregateID: id, Payload: json.RawMessage(`{}`), CreatedAt: base}
	}

	_, err := f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: base.Add(time.Hour), Event: event(b.ID),
	})
	require.ErrorIs(t, err, store.ErrStatus)
	require.NotErrorIs(t, err, store.ErrNotFound)

	_, err = f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusDraft, coupon.StatusPaused}, To: coupon.StatusEnded, At: base.Add(time.Hour), Event: event(b.ID),
	})
	require.ErrorIs(t, err, store.ErrStatus)

	got, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(b), got, "a refused change leaves the batch as it was")
	require.Empty(t, f.eventsFor(b.ID), "a refused change writes no event")

	missing := f.id()
	_, err = f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: missing, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: base, Event: event(missing),
	})
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NotErrorIs(t, err, store.ErrStatus)
	require.Empty(t, f.events())
}

func testClaimedCount(t *testing.T, f *fixture) {
	b := f.createBatch()
	other := f.createBatch()
	cs := f.addCodes(b, 5)
	oc := f.addCodes(other, 2)

	n, err := f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.Zero(t, n)

	f.insert(f.claim(b, cs[0], "u1", 1, ""), f.claim(b, cs[1], "u1", 2, ""), f.claim(b, cs[2], "u2", 1, ""))
	f.insert(f.claim(other, oc[0], "u1", 1, ""))
	// A refused claim is not counted.
	errs := f.s.InsertClaims(f.ctx, []store.ClaimWrite{f.claim(b, cs[3], "u1", 1, "")})
	require.ErrorIs(t, errs[0], store.ErrSeqTaken)

	n, err = f.s.ClaimedCount(f.ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	n, err = f.s.ClaimedCount(f.ctx, other.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	n, err = f.s.ClaimedCount(f.ctx, f.id())
	require.NoError(t, err)
	require.Zero(t, n)
}
