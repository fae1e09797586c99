package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// These tests add to the conformance suite's outcome tests the cases that
// a group commit written as multi-row statements gets wrong most easily
// (see InsertClaims): a group refused by uniqueness constraints alone (the
// suite mixes in CHECK and FOREIGN KEY failures, which fail such a
// statement as a whole), a refused claim that shares a key with a later
// one, claims of one call that share an id, and a group longer than one
// statement would hold. Each expects the outcomes a loop of single-row
// INSERTs gives.

// claimCase is one claim of an InsertClaims call and its expected outcome.
type claimCase struct {
	name string
	w    store.ClaimWrite
	want error
}

func TestInsertClaimsUniqueRefusals(t *testing.T) {
	t.Parallel()
	f := newClaimFixture(t, 20)
	earlier := f.claim(f.id(), 0, "u0", 1, "k0")
	f.insertAll(earlier)
	good := f.claim(f.id(), 1, "u1", 1, "")
	stamped := f.claim(f.id(), 10, "u8", 1, "")
	stamped.Event.CreatedAt = time.Time{}

	f.check([]claimCase{
		{"good", good, nil},
		{"code claimed earlier", f.claim(f.id(), 0, "u2", 1, ""), store.ErrCodeClaimed},
		{"seq taken earlier", f.claim(f.id(), 2, "u0", 1, ""), store.ErrSeqTaken},
		{"key used earlier", f.claim(f.id(), 3, "u0", 2, "k0"), store.ErrKeyUsed},
		{"id taken earlier", f.claim(earlier.Claim.ID, 4, "u3", 1, ""), coupon.ErrConflict},
		{"good with key", f.claim(f.id(), 5, "u4", 1, "k4"), nil},
		{"code claimed in this call", f.claim(f.id(), 1, "u5", 1, ""), store.ErrCodeClaimed},
		{"seq taken in this call", f.claim(f.id(), 6, "u4", 1, ""), store.ErrSeqTaken},
		{"key used in this call", f.claim(f.id(), 7, "u4", 2, "k4"), store.ErrKeyUsed},
		{"good after the refusals", f.claim(f.id(), 9, "u7", 1, ""), nil},
		{"good, event without a time", stamped, nil},
	}, earlier)

	events := f.events()
	require.Equal(t, stamped.Claim.ClaimedAt, events[len(events)-1].CreatedAt, "a zero event time becomes the claim's")
}

// TestInsertClaimsRefusedBeforeItsRival: a claim refused by one constraint
// that shares another key with a good claim later in the call. The later
// claim is written (the earlier one never was), and the refused one keeps
// the reason that refused it in order, although SQLite, shown both rows,
// would name the key it shares with the later one first.
func TestInsertClaimsRefusedBeforeItsRival(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		refused, rival func(f *claimFixture) store.ClaimWrite
		want           error
	}{
		{
			"code claimed; its user and seq go to a later claim",
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 0, "u1", 1, "") },
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 1, "u1", 1, "") },
			store.ErrCodeClaimed,
		},
		{
			"code claimed; its key goes to a later claim",
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 0, "u1", 1, "k1") },
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 1, "u1", 2, "k1") },
			store.ErrCodeClaimed,
		},
		{
			"seq taken; its key goes to a later claim",
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 1, "u0", 1, "k1") },
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 2, "u0", 2, "k1") },
			store.ErrSeqTaken,
		},
		{
			"seq taken; its code goes to a later claim",
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 1, "u0", 1, "") },
			func(f *claimFixture) store.ClaimWrite { return f.claim(f.id(), 1, "u2", 1, "") },
			store.ErrSeqTaken,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newClaimFixture(t, 4)
			earlier := f.claim(f.id(), 0, "u0", 1, "")
			f.insertAll(earlier)
			f.check([]claimCase{
				{"good before", f.claim(f.id(), 3, "u3", 1, ""), nil},
				{"refused", tc.refused(f), tc.want},
				{"rival", tc.rival(f), nil},
			}, earlier)
		})
	}
}

// TestInsertClaimsSharedID: claims of one call that share an id. The
// first one a constraint lets through is written; the others are refused
// (with coupon.ErrConflict, unless another constraint refuses them first).
func TestInsertClaimsSharedID(t *testing.T) {
	t.Parallel()
	f := newClaimFixture(t, 6)
	earlier := f.claim(f.id(), 0, "u0", 1, "")
	f.insertAll(earlier)
	id, other := f.id(), f.id()
	second := f.claim(id, 1, "u2", 1, "")
	f.check([]claimCase{
		{"refused for its code, same id as the next", f.claim(id, 0, "u1", 1, ""), store.ErrCodeClaimed},
		{"written, same id as the one before", second, nil},
		{"good", f.claim(other, 2, "u3", 1, ""), nil},
		{"id written in this call", f.claim(other, 3, "u4", 1, ""), coupon.ErrConflict},
		{"good after", f.claim(f.id(), 4, "u5", 1, ""), nil},
	}, earlier)
	got, err := f.s.GetClaim(f.ctx, id)
	require.NoError(t, err)
	require.Equal(t, second.Claim.Code, got.Code)
}

// TestInsertClaimsLongGroup sends 600 claims, more than a multi-row
// statement of 256 rows holds: the first 256 all good, the next with
// uniqueness refusals, the rest with a CHECK and a FOREIGN KEY failure.
func TestInsertClaimsLongGroup(t *testing.T) {
	t.Parallel()
	const n = 600
	f := newClaimFixture(t, n+1)
	earlier := f.claim(f.id(), n, "u-earlier", 1, "")
	f.insertAll(earlier)
	cases := make([]claimCase, n)
	for i := range cases {
		cases[i] = claimCase{fmt.Sprintf("claim %d", i), f.claim(f.id(), i, fmt.Sprintf("u%d", i), 1, ""), nil}
	}
	cases[300] = claimCase{"code claimed earlier", f.claim(f.id(), n, "u300", 1, ""), store.ErrCodeClaimed}
	cases[301] = claimCase{"code claimed in this call", f.claim(f.id(), 299, "u301", 1, ""), store.ErrCodeClaimed}
	cases[550] = claimCase{"seq zero", f.claim(f.id(), 550, "u550", 0, ""), store.ErrOverLimit}
	unknown := f.claim(f.id(), 551, "u551", 1, "")
	unknown.Claim.Code = "NOT-A-CODE"
	cases[551] = claimCase{"unknown code", unknown, store.ErrUnknownCode}
	f.check(cases, earlier)
}

// TestInsertClaimsRollback: a call whose transaction fails after some
// claims were written leaves nothing behind, and every outcome is the
// failure, not a refusal of a row. The failure is planted with a TEMP
// trigger on the writer: a runtime error, not a constraint.
func TestInsertClaimsRollback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, trigger string
	}{
		{"outbox of a later chunk", `CREATE TEMP TRIGGER fail BEFORE INSERT ON main.outbox
			WHEN NEW.aggregate_id = 'fail' BEGIN SELECT json('{'); END`},
		{"claim of a later chunk", `CREATE TEMP TRIGGER fail BEFORE INSERT ON main.claims
			WHEN NEW.user_id = 'fail' BEGIN SELECT json('{'); END`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newClaimFixture(t, 300)
			_, err := f.s.Writer().ExecContext(f.ctx, tc.trigger)
			require.NoError(t, err)
			writes := make([]store.ClaimWrite, 300)
			for i := range writes {
				writes[i] = f.claim(f.id(), i, fmt.Sprintf("u%d", i), 1, "")
			}
			writes[290].Event.AggregateID = "fail"
			writes[290].Claim.UserID = "fail"

			errs := f.s.InsertClaims(f.ctx, writes)
			require.Len(t, errs, len(writes))
			for i, err := range errs {
				require.Error(t, err, "outcome %d", i)
				for _, rowErr := range []error{store.ErrCodeClaimed, store.ErrSeqTaken, store.ErrKeyUsed,
					store.ErrUnknownCode, store.ErrOverLimit, coupon.ErrConflict} {
					require.NotErrorIs(t, err, rowErr, "outcome %d", i)
				}
			}
			n, err := f.s.ClaimedCount(f.ctx, f.batch.ID)
			require.NoError(t, err)
			require.Zero(t, n)
			require.Empty(t, f.events())
		})
	}
}

// claimFixture is a store with one batch (two claims per user) and its
// codes.
type claimFixture struct {
	t     *testing.T
	ctx   context.Context
	s     *sqlite.Store
	batch *coupon.Batch
	codes []coupon.Code
	now   time.Time
}

func newClaimFixture(t *testing.T, codes int) *claimFixture {
	f := &claimFixture{t: t, ctx: t.Context(), s: open(t, sqlite.Config{}),
		now: time.Date(2031, 3, 4, 5, 6, 7, 123456000, time.UTC)}
	f.batch = &coupon.Batch{
		ID: f.id(),
		BatchSpec: coupon.BatchSpec{
			Name: "sale", Type: coupon.TypeCash, TotalQuantity: 10_000, PerUserLimit: 2,
			Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
			UsagePlatforms: []string{"ios"},
		},
		Status: coupon.StatusActive, CreatedAt: f.now, UpdatedAt: f.now,
	}
	require.NoError(t, f.s.CreateBatch(f.ctx, f.batch))
	in := make([]coupon.Code, codes)
	for i := range in {
		in[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 100 + int64(i)}
	}
	var err error
	f.codes, err = f.s.AddCodes(f.ctx, f.batch.ID, in)
	require.NoError(t, err)
	require.Len(t, f.codes, codes)
	return f
}

// id returns a fresh id; ids sort in the order they were made.
func (f *claimFixture) id() string {
	f.now = f.now.Add(time.Millisecond)
	return coupon.NewID(f.now)
}

// claim returns the claim of code i by user, with its event.
func (f *claimFixture) claim(id string, i int, user string, seq int, key string) store.ClaimWrite {
	code := f.codes[i]
	c := coupon.NewClaim(f.batch, id, coupon.Claimant{UserID: user, Platform: "ios"}, code.Code, code.Amount, seq, key, f.now)
	payload, err := json.Marshal(map[string]any{"claim_id": id, "code": code.Code, "user_id": user})
	require.NoError(f.t, err)
	return store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: id, Payload: payload, CreatedAt: f.now}}
}

func (f *claimFixture) insertAll(writes ...store.ClaimWrite) {
	f.t.Helper()
	for i, err := range f.s.InsertClaims(f.ctx, writes) {
		require.NoError(f.t, err, "claim %d", i)
	}
}

// events returns every pending outbox row, oldest first.
func (f *claimFixture) events() []store.Event {
	f.t.Helper()
	all, err := f.s.PendingEvents(f.ctx, 1000)
	require.NoError(f.t, err)
	require.Less(f.t, len(all), 1000, "the tests write fewer events than one page holds")
	return all
}

// check sends the claims of cases in one call, after the claims of
// earlier were written, and requires each outcome, the claims stored, and
// one event per claim written, in the order of the call.
func (f *claimFixture) check(cases []claimCase, earlier ...store.ClaimWrite) {
	t := f.t
	t.Helper()
	before := f.events()
	require.Len(t, before, len(earlier))

	writes := make([]store.ClaimWrite, len(cases))
	for i, c := range cases {
		writes[i] = c.w
	}
	outcomes := f.s.InsertClaims(f.ctx, writes)
	require.Len(t, outcomes, len(cases))

	var wantEvents []store.Event
	for i, c := range cases {
		if c.want == nil {
			require.NoError(t, outcomes[i], "claim %d (%s)", i, c.name)
			got, err := f.s.GetClaim(f.ctx, c.w.Claim.ID)
			require.NoError(t, err, "claim %d (%s)", i, c.name)
			require.Equal(t, c.w.Claim.Code, got.Code, "claim %d (%s)", i, c.name)
			require.Equal(t, c.w.Claim.UserID, got.UserID, "claim %d (%s)", i, c.name)
			e := c.w.Event
			if e.CreatedAt.IsZero() {
				e.CreatedAt = c.w.Claim.ClaimedAt
			}
			wantEvents = append(wantEvents, e)
			continue
		}
		require.ErrorIs(t, outcomes[i], c.want, "claim %d (%s)", i, c.name)
		for _, other := range []error{store.ErrCodeClaimed, store.ErrSeqTaken, store.ErrKeyUsed,
			store.ErrUnknownCode, store.ErrOverLimit, coupon.ErrConflict} {
			if other != c.want {
				require.NotErrorIs(t, outcomes[i], other, "claim %d (%s)", i, c.name)
			}
		}
		if got, err := f.s.GetClaim(f.ctx, c.w.Claim.ID); err == nil {
			require.NotEqual(t, c.w.Claim.Code, got.Code, "claim %d (%s) is not stored", i, c.name)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound)
		}
	}

	n, err := f.s.ClaimedCount(f.ctx, f.batch.ID)
	require.NoError(t, err)
	require.EqualValues(t, len(earlier)+len(wantEvents), n)

	got := f.events()[len(before):]
	require.Len(t, got, len(wantEvents))
	for i := range got {
		require.Equal(t, wantEvents[i].AggregateID, got[i].AggregateID, "event %d", i)
		require.JSONEq(t, string(wantEvents[i].Payload), string(got[i].Payload), "event %d", i)
		require.Equal(t, wantEvents[i].CreatedAt, got[i].CreatedAt, "event %d", i)
	}
}
