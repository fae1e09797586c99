// Package storetest is the conformance suite of store.Store. Every
// implementation runs it from its own tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { … a fresh, empty store … })
//	}
//
// Each subtest asks for its own store, so subtests run in parallel and
// never see each other's rows. A change of the contract in store.go extends
// this suite first.
package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Run runs the conformance suite. newStore returns a fresh, empty store and
// closes it when t ends (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Batch/RoundTrip", testBatchRoundTrip},
		{"Batch/ZeroValues", testBatchZeroValues},
		{"Batch/NotFound", testBatchNotFound},
		{"Batch/Duplicate", testBatchDuplicate},
		{"Batch/List", testListBatches},
		{"Batch/ListPages", testListBatchesPages},
		{"Batch/SetStatus", testSetBatchStatus},
		{"Batch/SetStatusRefused", testSetBatchStatusRefused},
		{"Batch/ClaimedCount", testClaimedCount},
		{"Batch/SetStatusEventTime", testSetBatchStatusEventTime},
		{"Batch/Update", testUpdateBatch},
		{"Batch/UpdateRefused", testUpdateBatchRefused},
		{"Batch/UpdateMovesVersion", testUpdateBatchMovesVersion},
		{"Batch/UpdateRacesPublish", testUpdateBatchRacesPublish},
		{"Codes/Add", testAddCodes},
		{"Codes/SkipDuplicates", testAddCodesDuplicates},
		{"Codes/TotalExceeded", testAddCodesTotalExceeded},
		{"Codes/UnknownBatch", testAddCodesUnknownBatch},
		{"Codes/Concurrent", testAddCodesConcurrent},
		{"Codes/Get", testGetCode},
		{"Codes/AllExist", testAddCodesAllExist},
		{"Codes/BadAmount", testAddCodesBadAmount},
		{"Codes/Continue", testContinueCodes},
		{"Codes/ContinueRace", testContinueCodesRace},
		{"Codes/Unclaimed", testUnclaimedCodes},
		{"Claims/RoundTrip", testClaimRoundTrip},
		{"Claims/Outcomes", testInsertClaimsOutcomes},
		{"Claims/CodeReuse", testInsertClaimsCodeReuse},
		{"Claims/Concurrent", testInsertClaimsConcurrent},
		{"Claims/FailedTransaction", testInsertClaimsFailedTransaction},
		{"Claims/Empty", testInsertClaimsEmpty},
		{"Claims/ExistingID", testInsertClaimsExistingID},
		{"Claims/EventTime", testInsertClaimsEventTime},
		{"Claims/ManyBatches", testInsertClaimsManyBatches},
		{"Claims/ClaimedCodes", testClaimedCodes},
		{"Claims/ListUser", testListUserClaims},
		{"Claims/ListUserPages", testListUserClaimsPages},
		{"Snapshot", testSnapshot},
		{"Snapshot/NotFound", testSnapshotNotFound},
		{"Snapshot/GeneratedCount", testSnapshotGeneratedCount},
		{"Outbox", testOutbox},
		{"Limits", testDefaultLimits},
	}
	tests = append(tests, redemptionTests...)
	tests = append(tests, accessTests...)
	tests = append(tests, queryTests...)
	tests = append(tests, distributionTests...)
	tests = append(tests, archiveTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, &fixture{t: t, s: newStore(t), ctx: t.Context()})
		})
	}
}

// base is the clock of the fixtures: UTC, with microseconds, so that every
// store keeps it exactly.
var base = time.Date(2031, 3, 4, 5, 6, 7, 123456000, time.UTC)

// fixture builds batches, codes and claims in one store.
type fixture struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
	n   atomic.Int64
}

// id returns a fresh ID; IDs sort in the order they were made.
func (f *fixture) id() string {
	return coupon.NewID(base.Add(time.Duration(f.n.Add(1)) * time.Millisecond))
}

// batch returns a valid draft batch, not yet stored.
func (f *fixture) batch(mods ...func(*coupon.Batch)) *coupon.Batch {
	b := &coupon.Batch{
		ID: f.id(),
		BatchSpec: coupon.BatchSpec{
			Name:          "Spring sale",
			MerchantID:    "m1",
			Type:          coupon.TypeCash,
			TotalQuantity: 100,
			PerUserLimit:  2,
			Validity:      coupon.Validity{Days: 7},
			Amount:        coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
			CodeFormat:    coupon.CodeFormat{Length: coupon.DefaultCodeLength},
		},
		Status:    coupon.StatusActive,
		Version:   1,
		CreatedAt: base,
		UpdatedAt: base,
	}
	for _, m := range mods {
		m(b)
	}
	return b
}

// createBatch stores a batch.
func (f *fixture) createBatch(mods ...func(*coupon.Batch)) *coupon.Batch {
	f.t.Helper()
	b := f.batch(mods...)
	require.NoError(f.t, f.s.CreateBatch(f.ctx, b))
	return b
}

// codes returns n fresh codes worth amount each, not yet stored.
func codes(n int, amount int64) []coupon.Code {
	out := make([]coupon.Code, n)
	for i := range out {
		out[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: amount}
	}
	return out
}

// addCodes stores n codes in b, worth 100, 101, 102, … and returns them.
func (f *fixture) addCodes(b *coupon.Batch, n int) []coupon.Code {
	f.t.Helper()
	in := codes(n, 0)
	for i := range in {
		in[i].Amount = 100 + int64(i)
	}
	out, err := f.s.AddCodes(f.ctx, b.ID, in)
	require.NoError(f.t, err)
	require.Len(f.t, out, n)
	return out
}

// claim returns the claim of code by user with the user's sequence number
// seq, and its claim.created event.
func (f *fixture) claim(b *coupon.Batch, code coupon.Code, user string, seq int, key string) store.ClaimWrite {
	at := base.Add(time.Duration(f.n.Load()) * time.Second)
	c := coupon.NewClaim(b, f.id(), coupon.Claimant{UserID: user, Platform: "ios"}, code.Code, code.Amount, seq, key, at)
	payload, err := json.Marshal(map[string]any{"claim_id": c.ID, "code": c.Code, "user_id": user})
	require.NoError(f.t, err)
	return store.ClaimWrite{Claim: c, Event: store.Event{
		Type: "claim.created", AggregateID: c.ID, Payload: payload, CreatedAt: at,
	}}
}

// insert writes claims and requires every one to succeed.
func (f *fixture) insert(writes ...store.ClaimWrite) {
	f.t.Helper()
	for i, err := range f.s.InsertClaims(f.ctx, writes) {
		require.NoError(f.t, err, "claim %d", i)
	}
}

// events returns all pending events, oldest first.
func (f *fixture) events() []store.Event {
	f.t.Helper()
	all, err := f.s.PendingEvents(f.ctx, 1000)
	require.NoError(f.t, err)
	require.Less(f.t, len(all), 1000, "the fixtures write fewer events than one page holds")
	return all
}

// eventsFor returns the pending events about aggregate.
func (f *fixture) eventsFor(aggregate string) []store.Event {
	f.t.Helper()
	var out []store.Event
	for _, e := range f.events() {
		if e.AggregateID == aggregate {
			out = append(out, e)
		}
	}
	return out
}

// normBatch returns a copy of b as a store returns it: times in UTC, empty
// lists nil.
func normBatch(b *coupon.Batch) *coupon.Batch {
	c := *b
	c.ClaimStart, c.ClaimEnd = utc(c.ClaimStart), utc(c.ClaimEnd)
	c.Validity.Start, c.Validity.End = utc(c.Validity.Start), utc(c.Validity.End)
	c.CreatedAt, c.UpdatedAt = utc(c.CreatedAt), utc(c.UpdatedAt)
	c.ClaimPlatforms = nilIfEmpty(c.ClaimPlatforms)
	c.UsagePlatforms = nilIfEmpty(c.UsagePlatforms)
	c.Rules = nilIfEmpty(slices.Clone(c.Rules))
	return &c
}

// normClaim returns a copy of c as a store returns it.
func normClaim(c *coupon.Claim) *coupon.Claim {
	d := *c
	d.ValidFrom, d.ValidTo = utc(d.ValidFrom), utc(d.ValidTo)
	d.ClaimedAt, d.UpdatedAt = utc(d.ClaimedAt), utc(d.UpdatedAt)
	d.UsagePlatforms = nilIfEmpty(d.UsagePlatforms)
	return &d
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func nilIfEmpty[T any](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	return xs
}

// requireUTC requires every time to be in UTC (the zero time included).
func requireUTC(t *testing.T, times ...time.Time) {
	t.Helper()
	for i, tm := range times {
		require.Equal(t, time.UTC, tm.Location(), "time %d (%s) is not UTC", i, tm)
	}
}

// outcomes of InsertClaims, for checking that a refusal names one reason only.
var rowErrors = []error{store.ErrCodeClaimed, store.ErrSeqTaken, store.ErrKeyUsed, store.ErrUnknownCode, store.ErrOverLimit}

func requireOutcome(t *testing.T, err, want error, msgAndArgs ...any) {
	t.Helper()
	if want == nil {
		require.NoError(t, err, msgAndArgs...)
		return
	}
	require.ErrorIs(t, err, want, msgAndArgs...)
	for _, other := range rowErrors {
		if other != want {
			require.NotErrorIs(t, err, other, msgAndArgs...)
		}
	}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func batchID(b *coupon.Batch) string { return b.ID }
func claimID(c *coupon.Claim) string { return c.ID }
