package storetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// testSnapshot: the batch, its unclaimed codes in generation order, each
// user's sequence numbers and the claims made with a key — of this batch only.
func testSnapshot(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) {
		b.PerUserLimit = 3
		b.Rules = []coupon.Rule{{RefType: "merchant", RefID: "m1", UseType: "include"}}
	})
	other := f.createBatch()
	cs := f.addCodes(b, 7)
	oc := f.addCodes(other, 2)

	w1 := f.claim(b, cs[2], "alice", 1, "key-a")
	w2 := f.claim(b, cs[4], "alice", 3, "")
	w3 := f.claim(b, cs[0], "bob", 2, "key-b")
	w4 := f.claim(b, cs[6], "carol", 1, "key-c")
	f.insert(w1, w2, w3)
	f.insert(w4)
	f.insert(f.claim(other, oc[0], "alice", 1, "key-x"))

	snap, err := f.s.Snapshot(f.ctx, b.ID)
	require.NoError(t, err)

	batch, err := f.s.GetBatch(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, batch, snap.Batch)
	require.EqualValues(t, 7, snap.Batch.GeneratedCount)

	require.Equal(t, []store.PoolCode{
		{Code: cs[1].Code, Amount: cs[1].Amount},
		{Code: cs[3].Code, Amount: cs[3].Amount},
		{Code: cs[5].Code, Amount: cs[5].Amount},
	}, snap.Pool)

	users := map[string][]int{}
	for u, seqs := range snap.Users {
		users[u] = slices.Sorted(slices.Values(seqs))
	}
	require.Equal(t, map[string][]int{"alice": {1, 3}, "bob": {2}, "carol": {1}}, users)

	keys := slices.Clone(snap.Keys)
	slices.SortFunc(keys, func(a, b store.KeyRecord) int { return strings.Compare(a.UserID, b.UserID) })
	key := func(w store.ClaimWrite) store.KeyRecord {
		c := w.Claim
		return store.KeyRecord{UserID: c.UserID, Key: c.IdempotencyKey, ClaimID: c.ID, Code: c.Code, Amount: c.Amount, Seq: c.UserSeq}
	}
	require.Equal(t, []store.KeyRecord{key(w1), key(w3), key(w4)}, keys)

	// An empty batch.
	empty := f.createBatch()
	snap, err = f.s.Snapshot(f.ctx, empty.ID)
	require.NoError(t, err)
	require.Equal(t, empty.ID, snap.Batch.ID)
	require.Empty(t, snap.Pool)
	require.Empty(t, snap.Users)
	require.Empty(t, snap.Keys)
}

func testSnapshotNotFound(t *testing.T, f *fixture) {
	f.createBatch()
	_, err := f.s.Snapshot(f.ctx, f.id())
	require.ErrorIs(t, err, store.ErrNotFound)
}

// testOutbox: pending events oldest first, up to the limit; published ones
// leave the list; marking again, or unknown ids, is harmless.
func testOutbox(t *testing.T, f *fixture) {
	require.Empty(t, f.events())
	require.NoError(t, f.s.MarkPublished(f.ctx, nil, base))

	b := f.createBatch(func(b *coupon.Batch) { b.Status = coupon.StatusDraft })
	cs := f.addCodes(b, 4)
	at := base.Add(time.Minute + time.Microsecond)
	_, err := f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: at,
		Event: &store.Event{Type: "batch.published", AggregateID: b.ID, Payload: json.RawMessage(`{"status":"active"}`), CreatedAt: at},
	})
	require.NoError(t, err)
	var writes []store.ClaimWrite
	for i, c := range cs {
		writes = append(writes, f.claim(b, c, "user-"+string(rune('a'+i)), 1, ""))
	}
	f.insert(writes[:2]...)
	f.insert(writes[2:]...)

	all := f.events()
	require.Len(t, all, 5)
	require.Equal(t, "batch.published", all[0].Type)
	require.Equal(t, b.ID, all[0].AggregateID)
	require.JSONEq(t, `{"status":"active"}`, string(all[0].Payload))
	require.Equal(t, at, all[0].CreatedAt)
	for i, e := range all[1:] {
		w := writes[i]
		require.Equal(t, w.Event.Type, e.Type)
		require.Equal(t, w.Claim.ID, e.AggregateID, "events in the order they were written")
		require.JSONEq(t, string(w.Event.Payload), string(e.Payload))
		require.Equal(t, w.Event.CreatedAt, e.CreatedAt)
		requireUTC(t, e.CreatedAt)
	}
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i].ID, all[i-1].ID, "ids grow with age")
	}

	first, err := f.s.PendingEvents(f.ctx, 2)
	require.NoError(t, err)
	require.Equal(t, all[:2], first)

	published := base.Add(time.Hour)
	require.NoError(t, f.s.MarkPublished(f.ctx, []int64{all[0].ID, all[1].ID}, published))
	require.Equal(t, all[2:], f.events())

	// Again, with an unknown id: no error, no change.
	require.NoError(t, f.s.MarkPublished(f.ctx, []int64{all[1].ID, all[4].ID + 1000}, published.Add(time.Hour)))
	require.Equal(t, all[2:], f.events())

	require.NoError(t, f.s.MarkPublished(f.ctx, []int64{all[4].ID, all[2].ID, all[3].ID}, published))
	require.Empty(t, f.events())

	// New events after the published ones are pending again.
	_, err = f.s.SetBatchStatus(f.ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusActive}, To: coupon.StatusPaused, At: published,
		Event: &store.Event{Type: "batch.paused", AggregateID: b.ID, Payload: json.RawMessage(`{}`), CreatedAt: published},
	})
	require.NoError(t, err)
	pending := f.events()
	require.Len(t, pending, 1)
	require.Equal(t, "batch.paused", pending[0].Type)
	require.Greater(t, pending[0].ID, all[4].ID)
}
