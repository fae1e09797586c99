package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// editedSpec is a configuration with every field other than spec's.
func editedSpec(spec coupon.BatchSpec) coupon.BatchSpec {
	shanghai := time.FixedZone("UTC+8", 8*3600)
	spec.Name = spec.Name + " (edited)"
	spec.MerchantID = "m-edited"
	spec.Type = coupon.TypeThreshold
	spec.TotalQuantity++
	spec.PerUserLimit++
	spec.ClaimStart = time.Date(2031, 11, 10, 20, 0, 0, 1000, shanghai)
	spec.ClaimEnd = time.Date(2031, 11, 12, 0, 0, 0, 0, time.UTC)
	spec.ClaimPlatforms = []string{"ios"}
	spec.Channel, spec.AdCopy = "edited-channel", "edited copy"
	spec.Validity = coupon.Validity{Start: time.Date(2031, 11, 10, 0, 0, 0, 0, time.UTC), End: time.Date(2031, 12, 1, 0, 0, 0, 0, time.UTC)}
	spec.Amount = coupon.AmountSpec{Type: coupon.AmountRandom, Min: 100, Max: 900}
	spec.MinSpend = 5000
	spec.UsagePlatforms = []string{"web"}
	spec.CodeFormat = coupon.CodeFormat{Prefix: "ED", Length: 12}
	spec.BatchOptions = coupon.BatchOptions{
		Source:         coupon.SourceInternal,
		Generation:     coupon.Generation{Mode: coupon.GenerationIncremental, Chunk: 50, LowWater: 10},
		TriggerSubject: "user.edited",
	}
	spec.Rules = []coupon.Rule{
		{RefType: "merchant", RefID: "m-edited", UseType: "bear", Value: 2500},
		{RefType: "platform", UseType: "bear", Value: 7500},
		{RefType: "node", RefID: "payment", UseType: "node"},
	}
	return spec
}

// testUpdateBatch replaces a draft's configuration and rules: the version
// rises by one, the status, counts, id and creation time stay, the event is
// written with it, and another batch is untouched.
func testUpdateBatch(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) {
		b.Status = coupon.StatusDraft
		b.Rules = []coupon.Rule{{RefType: "category", RefID: "food", UseType: "include"}, {RefType: "product", RefID: "p1", UseType: "exclude"}}
	})
	other := f.createBatch(func(b *coupon.Batch) {
		b.Status = coupon.StatusDraft
		b.Rules = []coupon.Rule{{RefType: "category", RefID: "toys", UseType: "include"}}
	})

	at := base.Add(time.Hour + time.Microsecond)
	spec := editedSpec(b.BatchSpec)
	event := &store.Event{Type: "batch.updated", AggregateID: b.ID, Payload: json.RawMessage(`{"version":2}`)}
	got, err := f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: b.ID, Spec: spec, Version: 1, At: at, Event: event})
	require.NoError(t, err)
	want := normBatch(b)
	want.BatchSpec = normBatch(&coupon.Batch{BatchSpec: spec}).BatchSpec
	want.Version, want.UpdatedAt = 2, at
	require.Equal(t, want, got, "UpdateBatch returns the batch as it is")
	stored, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, want, stored)
	events := f.eventsFor(b.ID)
	require.Len(t, events, 1)
	require.Equal(t, "batch.updated", events[0].Type)
	require.JSONEq(t, `{"version":2}`, string(events[0].Payload))
	require.Equal(t, at, events[0].CreatedAt, "a zero CreatedAt becomes At")

	// Any version (0); no rules left; no event.
	spec.Rules = nil
	spec.Name = "again"
	got, err = f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: b.ID, Spec: spec, At: at.Add(time.Second)})
	require.NoError(t, err)
	require.EqualValues(t, 3, got.Version)
	require.Equal(t, "again", got.Name)
	require.Empty(t, got.Rules)
	require.Len(t, f.eventsFor(b.ID), 1)

	stored, err = f.s.GetBatch(f.ctx, other.ID)
	require.NoError(t, err)
	require.Equal(t, normBatch(other), stored, "the other batch and its rules are untouched")
	require.Empty(t, f.eventsFor(other.ID))
}

// testUpdateBatchRefused: no batch, a batch that is not a draft, a version
// that moved and a draft that holds codes are each refused with their own
// error, and change nothing.
func testUpdateBatchRefused(t *testing.T, f *fixture) {
	rules := []coupon.Rule{{RefType: "category", RefID: "food", UseType: "include"}}
	draft := func(b *coupon.Batch) { b.Status, b.Rules = coupon.StatusDraft, rules }
	active := f.createBatch(func(b *coupon.Batch) { b.Rules = rules })
	paused := f.createBatch(func(b *coupon.Batch) { b.Status, b.Rules = coupon.StatusPaused, rules })
	ended := f.createBatch(func(b *coupon.Batch) { b.Status, b.Rules = coupon.StatusEnded, rules })
	edited := f.createBatch(draft)
	_, err := f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: edited.ID, Spec: edited.BatchSpec, At: base.Add(time.Minute)})
	require.NoError(t, err)
	edited, err = f.s.GetBatch(f.ctx, edited.ID)
	require.NoError(t, err)
	withCodes := f.createBatch(draft)
	f.addCodes(withCodes, 2)
	withCodes, err = f.s.GetBatch(f.ctx, withCodes.ID)
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		b       *coupon.Batch
		version int64
		want    error
	}{
		{"active", active, 1, store.ErrStatus},
		{"paused", paused, 0, store.ErrStatus},
		{"ended", ended, 1, store.ErrStatus},
		{"version moved", edited, 1, store.ErrVersion},
		{"holds codes", withCodes, 1, store.ErrHasCodes},
		{"holds codes, any version", withCodes, 0, store.ErrHasCodes},
	} {
		before, err := f.s.GetBatch(f.ctx, tc.b.ID)
		require.NoError(t, err)
		_, err = f.s.UpdateBatch(f.ctx, store.UpdateBatch{
			ID: tc.b.ID, Spec: editedSpec(tc.b.BatchSpec), Version: tc.version, At: base.Add(time.Hour),
			Event: &store.Event{Type: "batch.updated", AggregateID: tc.b.ID, Payload: json.RawMessage(`{}`)},
		})
		require.ErrorIs(t, err, tc.want, tc.name)
		for _, other := range []error{store.ErrNotFound, store.ErrStatus, store.ErrVersion, store.ErrHasCodes} {
			if other != tc.want {
				require.NotErrorIs(t, err, other, tc.name)
			}
		}
		after, err := f.s.GetBatch(f.ctx, tc.b.ID)
		require.NoError(t, err)
		require.Equal(t, before, after, "%s: a refused update changes nothing", tc.name)
		require.Empty(t, f.eventsFor(tc.b.ID), "%s: a refused update writes no event", tc.name)
	}

	_, err = f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: f.id(), Spec: active.BatchSpec, At: base})
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testUpdateBatchMovesVersion: codes drawn from a draft before an edit are
// not written after it (ContinueCodes), and a publication made for the
// version before an edit is refused (SetBatchStatus); both change nothing.
func testUpdateBatchMovesVersion(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusDraft })
	_, err := f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: b.ID, Spec: editedSpec(b.BatchSpec), Version: 1, At: base.Add(time.Minute)})
	require.NoError(t, err)
	before, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)

	stale := codes(3, 500)
	_, err = f.s.ContinueCodes(f.ctx, store.ContinueCodes{BatchID: b.ID, From: 0, Version: 1, Codes: stale})
	require.ErrorIs(t, err, store.ErrGeneratedMoved, "codes drawn from version 1")
	for _, c := range stale {
		_, err := f.s.GetCode(f.ctx, c.Code)
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	from, to := coupon.Publish.From()
	_, err = f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{ID: b.ID, From: from, To: to, Version: 1, At: base.Add(time.Hour),
		Event: &store.Event{Type: "batch.published", AggregateID: b.ID, Payload: json.RawMessage(`{}`)}})
	require.ErrorIs(t, err, store.ErrVersion)
	require.NotErrorIs(t, err, store.ErrStatus)
	after, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Empty(t, f.eventsFor(b.ID))

	// The current version writes and publishes.
	out, err := f.s.ContinueCodes(f.ctx, store.ContinueCodes{BatchID: b.ID, From: 0, Version: 2, Codes: codes(3, 500)})
	require.NoError(t, err)
	require.Len(t, out, 3)
	got, err := f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{ID: b.ID, From: from, To: to, Version: 2, At: base.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, coupon.StatusActive, got.Status)
	require.EqualValues(t, 2, got.Version, "a status change keeps the version")
	require.EqualValues(t, 3, got.GeneratedCount)
}

// testUpdateBatchRacesPublish races an edit of a draft with its publication,
// many times, while a reader watches: the published batch is the draft as
// it was, or as edited — name and rules together — never a mix, and the
// edit reports which (refused with ErrStatus when it came second).
func testUpdateBatchRacesPublish(t *testing.T, f *fixture) {
	const rounds = 40
	var edited, refused int
	for i := range rounds {
		b := f.createBatch(func(b *coupon.Batch) {
			b.Status = coupon.StatusDraft
			b.Name = "before"
			b.Rules = []coupon.Rule{{RefType: "product", RefID: "before", UseType: "include"}}
		})
		spec := b.BatchSpec
		spec.Name = "after"
		spec.Rules = []coupon.Rule{
			{RefType: "product", RefID: "after-1", UseType: "include"},
			{RefType: "product", RefID: "after-2", UseType: "include"},
		}
		consistent := func(got *coupon.Batch) error {
			refs := ""
			for _, r := range got.Rules {
				refs += r.RefID + ","
			}
			switch {
			case got.Name == "before" && refs == "before," && got.Version == 1,
				got.Name == "after" && refs == "after-1,after-2," && got.Version == 2:
				return nil
			}
			return fmt.Errorf("round %d: a mix: %q v%d with rules %s", i, got.Name, got.Version, refs)
		}

		var wg sync.WaitGroup
		var updateErr, publishErr error
		stop := make(chan struct{})
		readErr := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stop:
					readErr <- nil
					return
				default:
				}
				got, err := f.s.GetBatch(f.ctx, b.ID)
				if err == nil {
					err = consistent(got)
				}
				if err != nil {
					readErr <- err
					return
				}
			}
		}()
		wg.Go(func() {
			_, updateErr = f.s.UpdateBatch(f.ctx, store.UpdateBatch{ID: b.ID, Spec: spec, Version: 1, At: base.Add(time.Minute)})
		})
		wg.Go(func() {
			from, to := coupon.Publish.From()
			_, publishErr = f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{ID: b.ID, From: from, To: to, At: base.Add(time.Hour)})
		})
		wg.Wait()
		close(stop)
		require.NoError(t, <-readErr)
		require.NoError(t, publishErr, "round %d", i)
		got, err := f.s.GetBatch(f.ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.StatusActive, got.Status)
		require.NoError(t, consistent(got))
		switch {
		case updateErr == nil:
			edited++
			require.Equal(t, "after", got.Name, "round %d: the edit succeeded, so it came first", i)
		case errors.Is(updateErr, store.ErrStatus):
			refused++
			require.Equal(t, "before", got.Name, "round %d: the edit was refused, so the batch is as it was", i)
		default:
			t.Fatalf("round %d: update: %v", i, updateErr)
		}
	}
	t.Logf("%d edits before the publication, %d refused after it", edited, refused)
}
