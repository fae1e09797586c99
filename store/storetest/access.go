package storetest

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/store"
)

// accessTests are the subtests of the access part of the contract.
var accessTests = []struct {
	name string
	fn   func(t *testing.T, f *fixture)
}{
	{"Access/Keys", testKeys},
	{"Access/KeysPages", testKeysPages},
	{"Access/KeyRotation", testKeyRotation},
	{"Access/ListEntries", testListEntries},
	{"Access/ListChanges", testListChanges},
	{"Access/ListChangesConcurrent", testListChangesConcurrent},
	{"Access/RuleSets", testRuleSets},
	{"Access/Refusals", testRefusals},
	{"Access/IdentityCounts", testIdentityCounts},
}

func newKey(f *fixture, role auth.Role, merchant string) *auth.Key {
	return &auth.Key{ID: f.id(), Name: "key " + string(role), Role: role, MerchantID: merchant,
		Salt: auth.NewSalt(), SecretHash: auth.HashSecret("secret"), CreatedAt: base}
}

func testKeys(t *testing.T, f *fixture) {
	k := newKey(f, auth.Merchant, "m1")
	require.NoError(t, f.s.CreateKey(f.ctx, k))
	require.ErrorIs(t, f.s.CreateKey(f.ctx, k), coupon.ErrConflict)
	got, err := f.s.GetKey(f.ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, k, got)
	requireUTC(t, got.CreatedAt)
	_, err = f.s.GetKey(f.ctx, "nope")
	require.ErrorIs(t, err, store.ErrNotFound)

	// A merchant key names its merchant; others none.
	require.Error(t, f.s.CreateKey(f.ctx, newKey(f, auth.Merchant, "")))
	require.Error(t, f.s.CreateKey(f.ctx, newKey(f, auth.App, "m1")))
	require.Error(t, f.s.CreateKey(f.ctx, newKey(f, auth.Role("root"), "")))

	revoked, err := f.s.RevokeKey(f.ctx, k.ID, base.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, base.Add(time.Hour), revoked.RevokedAt)
	again, err := f.s.RevokeKey(f.ctx, k.ID, base.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, base.Add(time.Hour), again.RevokedAt, "the first revocation stands")
	_, err = f.s.RevokeKey(f.ctx, "nope", base)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testKeysPages(t *testing.T, f *fixture) {
	var want []string
	for range 5 {
		k := newKey(f, auth.App, "")
		require.NoError(t, f.s.CreateKey(f.ctx, k))
		want = append(want, k.ID)
	}
	var got []string
	cursor := ""
	for {
		page, err := f.s.ListKeys(f.ctx, store.KeyFilter{Cursor: cursor, Limit: 2})
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.LessOrEqual(t, len(page), 2)
		for _, k := range page {
			got = append(got, k.ID)
		}
		cursor = page[len(page)-1].ID
	}
	require.Equal(t, want, got)
}

func testKeyRotation(t *testing.T, f *fixture) {
	k := newKey(f, auth.App, "")
	require.NoError(t, f.s.CreateKey(f.ctx, k))
	at := base.Add(time.Minute)
	rotated, err := f.s.RotateKey(f.ctx, store.RotateKey{ID: k.ID, Salt: "salt2", SecretHash: "hash2", At: at,
		PreviousExpiresAt: at.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, "salt2", rotated.Salt)
	require.Equal(t, "hash2", rotated.SecretHash)
	require.Equal(t, k.Salt, rotated.PreviousSalt)
	require.Equal(t, k.SecretHash, rotated.PreviousSecretHash)
	require.Equal(t, at.Add(time.Hour), rotated.PreviousExpiresAt)
	require.Equal(t, at, rotated.RotatedAt)
	got, err := f.s.GetKey(f.ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, rotated, got)

	// Without a grace period the previous secret goes at once.
	rotated, err = f.s.RotateKey(f.ctx, store.RotateKey{ID: k.ID, Salt: "salt3", SecretHash: "hash3", At: at})
	require.NoError(t, err)
	require.Empty(t, rotated.PreviousSalt)
	require.Empty(t, rotated.PreviousSecretHash)
	require.True(t, rotated.PreviousExpiresAt.IsZero())

	_, err = f.s.RotateKey(f.ctx, store.RotateKey{ID: "nope", Salt: "s", SecretHash: "h", At: at})
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.s.RevokeKey(f.ctx, k.ID, at)
	require.NoError(t, err)
	_, err = f.s.RotateKey(f.ctx, store.RotateKey{ID: k.ID, Salt: "s", SecretHash: "h", At: at})
	require.ErrorIs(t, err, store.ErrKeyRevoked)
}

func entry(scope string, list access.List, kind access.Kind, value string) access.Entry {
	return access.Entry{Scope: scope, List: list, Kind: kind, Value: value, Reason: "because"}
}

func entryKeys(es []access.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = string(e.Kind) + "=" + e.Value
	}
	return out
}

func testListEntries(t *testing.T, f *fixture) {
	batch := f.id()
	v1, err := f.s.PutListEntries(f.ctx, []access.Entry{
		entry("", access.Blacklist, access.KindUser, "mallory"),
		entry("", access.Blacklist, access.KindIP, "203.0.113.0/24"),
		entry("", access.Blacklist, access.KindPhone, "+8613800000000"),
		entry("", access.Whitelist, access.KindUser, "alice"),
		entry(batch, access.Blacklist, access.KindDevice, "dev-1"),
	}, base)
	require.NoError(t, err)
	require.Positive(t, v1)

	list := func(scope string, l access.List, kind access.Kind, afterKind access.Kind, after string, limit int) []access.Entry {
		t.Helper()
		es, err := f.s.ListEntries(f.ctx, store.ListEntryFilter{Scope: scope, List: l, Kind: kind, AfterKind: afterKind,
			AfterValue: after, Limit: limit})
		require.NoError(t, err)
		return es
	}
	got := list("", access.Blacklist, "", "", "", 0)
	require.Equal(t, []string{"ip=203.0.113.0/24", "phone=+8613800000000", "user=mallory"}, entryKeys(got))
	require.Equal(t, "because", got[0].Reason)
	require.Equal(t, base, got[0].CreatedAt)
	requireUTC(t, got[0].CreatedAt, got[0].UpdatedAt)
	require.Equal(t, []string{"user=mallory"}, entryKeys(list("", access.Blacklist, access.KindUser, "", "", 0)))
	require.Equal(t, []string{"ip=203.0.113.0/24"}, entryKeys(list("", access.Blacklist, "", "", "", 1)))
	require.Equal(t, []string{"phone=+8613800000000", "user=mallory"}, entryKeys(list("", access.Blacklist, "", access.KindIP, "203.0.113.0/24", 0)))
	require.Equal(t, []string{"device=dev-1"}, entryKeys(list(batch, access.Blacklist, "", "", "", 0)))
	require.Equal(t, []string{"user=alice"}, entryKeys(list("", access.Whitelist, "", "", "", 0)))

	// Putting an entry again updates its reason, keeps its creation.
	later := base.Add(time.Hour)
	e := entry("", access.Blacklist, access.KindUser, "mallory")
	e.Reason = "again"
	v2, err := f.s.PutListEntries(f.ctx, []access.Entry{e}, later)
	require.NoError(t, err)
	require.Greater(t, v2, v1)
	got = list("", access.Blacklist, access.KindUser, "", "", 0)
	require.Equal(t, "again", got[0].Reason)
	require.Equal(t, base, got[0].CreatedAt)
	require.Equal(t, later, got[0].UpdatedAt)

	removed, v3, err := f.s.RemoveListEntries(f.ctx, []access.Entry{
		entry("", access.Blacklist, access.KindUser, "mallory"),
		entry("", access.Blacklist, access.KindUser, "nobody"),
		entry("", access.Whitelist, access.KindIP, "203.0.113.0/24"), // another list
	}, later)
	require.NoError(t, err)
	require.Equal(t, 1, removed)
	require.Greater(t, v3, v2)
	require.Equal(t, []string{"ip=203.0.113.0/24", "phone=+8613800000000"}, entryKeys(list("", access.Blacklist, "", "", "", 0)))
	removed, v4, err := f.s.RemoveListEntries(f.ctx, []access.Entry{entry("", access.Blacklist, access.KindUser, "mallory")}, later)
	require.NoError(t, err)
	require.Zero(t, removed)
	require.Zero(t, v4)

	// Added again after its removal, it is new.
	v5, err := f.s.PutListEntries(f.ctx, []access.Entry{entry("", access.Blacklist, access.KindUser, "mallory")}, later.Add(time.Hour))
	require.NoError(t, err)
	require.Greater(t, v5, v3)
	got = list("", access.Blacklist, access.KindUser, "", "", 0)
	require.Equal(t, later.Add(time.Hour), got[0].CreatedAt)
}

func testListChanges(t *testing.T, f *fixture) {
	_, err := f.s.PutListEntries(f.ctx, []access.Entry{
		entry("", access.Blacklist, access.KindUser, "a"),
		entry("", access.Blacklist, access.KindUser, "b"),
		entry("", access.Blacklist, access.KindUser, "a"), // the same entry twice in one call: the last wins
	}, base)
	require.NoError(t, err)
	_, _, err = f.s.RemoveListEntries(f.ctx, []access.Entry{entry("", access.Blacklist, access.KindUser, "b")}, base)
	require.NoError(t, err)
	_, err = f.s.PutListEntries(f.ctx, []access.Entry{entry("b1", access.Whitelist, access.KindDevice, "d")}, base)
	require.NoError(t, err)

	all, err := f.s.ListChanges(f.ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 3, "one change per entry: its latest state")
	require.True(t, slices.IsSortedFunc(all, func(x, y access.Change) int { return int(x.Version - y.Version) }))
	require.Equal(t, "a", all[0].Value)
	require.False(t, all[0].Removed)
	require.Equal(t, "b", all[1].Value)
	require.True(t, all[1].Removed, "a removal is a change too")
	require.Equal(t, "b1", all[2].Scope)
	require.Equal(t, access.Whitelist, all[2].List)
	require.Equal(t, access.KindDevice, all[2].Kind)

	after, err := f.s.ListChanges(f.ctx, all[0].Version, 1)
	require.NoError(t, err)
	require.Len(t, after, 1)
	require.Equal(t, all[1], after[0])
	none, err := f.s.ListChanges(f.ctx, all[2].Version, 0)
	require.NoError(t, err)
	require.Empty(t, none)
}

// Writers racing each other give versions that a reader following them
// never sees out of order: a replica fed from ListChanges ends up with
// exactly the entries the store holds.
func testListChangesConcurrent(t *testing.T, f *fixture) {
	const writers, rounds = 4, 10
	var wg sync.WaitGroup
	stop := make(chan struct{})
	replica := access.NewLists()
	var readErr error
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			cs, err := f.s.ListChanges(f.ctx, replica.Version(), 100)
			if err != nil {
				readErr = err
				return
			}
			replica.Apply(cs)
		}
	})
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				v := fmt.Sprintf("w%d-%d", w, r)
				if _, err := f.s.PutListEntries(f.ctx, []access.Entry{entry("", access.Blacklist, access.KindUser, v),
					entry("", access.Blacklist, access.KindUser, v+"-gone")}, base); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := f.s.RemoveListEntries(f.ctx, []access.Entry{entry("", access.Blacklist, access.KindUser, v+"-gone")}, base); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	require.NoError(t, readErr)
	cs, err := f.s.ListChanges(f.ctx, replica.Version(), 0)
	require.NoError(t, err)
	replica.Apply(cs)
	require.Equal(t, writers*rounds, replica.Len())
	for w := range writers {
		for r := range rounds {
			v := fmt.Sprintf("w%d-%d", w, r)
			require.True(t, replica.Has("", access.Blacklist, access.KindUser, v), v)
			require.False(t, replica.Has("", access.Blacklist, access.KindUser, v+"-gone"), v)
		}
	}
}

func testRuleSets(t *testing.T, f *fixture) {
	rs := &risk.RuleSet{Name: "strict", External: true, CreatedAt: base, UpdatedAt: base, Rules: []risk.Rule{
		{Signal: risk.DeviceUsers, Window: 3600, Above: 3, Action: risk.Deny},
		{Signal: risk.AccountAge, Below: 86400, Action: risk.Challenge},
	}}
	require.NoError(t, f.s.PutRuleSet(f.ctx, rs))
	got, err := f.s.GetRuleSet(f.ctx, "strict")
	require.NoError(t, err)
	require.Equal(t, rs, got)
	requireUTC(t, got.CreatedAt, got.UpdatedAt)

	replaced := &risk.RuleSet{Name: "strict", CreatedAt: base.Add(time.Hour), UpdatedAt: base.Add(time.Hour),
		Rules: []risk.Rule{{Signal: risk.NoDevice, Action: risk.Challenge}}}
	require.NoError(t, f.s.PutRuleSet(f.ctx, replaced))
	require.Equal(t, base, replaced.CreatedAt, "a replaced set keeps its creation")
	got, err = f.s.GetRuleSet(f.ctx, "strict")
	require.NoError(t, err)
	require.Equal(t, replaced, got)

	require.NoError(t, f.s.PutRuleSet(f.ctx, &risk.RuleSet{Name: "lax", CreatedAt: base, UpdatedAt: base, Rules: []risk.Rule{}}))
	all, err := f.s.ListRuleSets(f.ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"lax", "strict"}, []string{all[0].Name, all[1].Name})

	require.NoError(t, f.s.DeleteRuleSet(f.ctx, "lax"))
	require.ErrorIs(t, f.s.DeleteRuleSet(f.ctx, "lax"), store.ErrNotFound)
	_, err = f.s.GetRuleSet(f.ctx, "lax")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testRefusals(t *testing.T, f *fixture) {
	var rs []access.Refusal
	for i := range 6 {
		rs = append(rs, access.Refusal{At: base.Add(time.Duration(i) * time.Second), Code: []string{"blocked", "rate_limited"}[i%2],
			Reason: "r" + strconv.Itoa(i), BatchID: []string{"b1", "b2"}[i%2], MerchantID: []string{"m1", "m2", "m1"}[i%3],
			UserID: "u" + strconv.Itoa(i%3), Phone: "*******0000", DeviceID: "d", IP: "203.0.113.9", KeyID: "k"})
	}
	require.NoError(t, f.s.InsertRefusals(f.ctx, rs))
	for i := 1; i < len(rs); i++ {
		require.Greater(t, rs[i].ID, rs[i-1].ID, "ids in insertion order")
	}
	all, err := f.s.ListRefusals(f.ctx, store.RefusalFilter{})
	require.NoError(t, err)
	require.Len(t, all, 6)
	require.Equal(t, rs[5], all[0], "newest first")
	requireUTC(t, all[0].At)

	count := func(flt store.RefusalFilter) int {
		t.Helper()
		got, err := f.s.ListRefusals(f.ctx, flt)
		require.NoError(t, err)
		return len(got)
	}
	require.Equal(t, 3, count(store.RefusalFilter{BatchID: "b1"}))
	require.Equal(t, 4, count(store.RefusalFilter{MerchantID: "m1"}))
	require.Equal(t, 2, count(store.RefusalFilter{UserID: "u0"}))
	require.Equal(t, 3, count(store.RefusalFilter{Code: "rate_limited"}))
	require.Equal(t, 2, count(store.RefusalFilter{Code: "rate_limited", MerchantID: "m1", BatchID: "b2"}))
	page, err := f.s.ListRefusals(f.ctx, store.RefusalFilter{Cursor: all[1].ID, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []int64{all[2].ID, all[3].ID}, []int64{page[0].ID, page[1].ID})
	require.NoError(t, f.s.InsertRefusals(f.ctx, nil))
}

func testIdentityCounts(t *testing.T, f *fixture) {
	b := f.createBatch(func(b *coupon.Batch) { b.PerUserLimit = 3 })
	cs := f.addCodes(b, 5)
	var writes []store.ClaimWrite
	for i, who := range []struct{ user, phone string }{{"a", "+100"}, {"b", "+100"}, {"c", "+200"}, {"d", ""}} {
		w := f.claim(b, cs[i], who.user, 1, "")
		w.Claim.Phone = who.phone
		writes = append(writes, w)
	}
	f.insert(writes...)
	require.NoError(t, f.s.AddClaimDevices(f.ctx, []store.ClaimDevice{
		{BatchID: b.ID, ClaimID: writes[0].Claim.ID, DeviceID: "d1"},
		{BatchID: b.ID, ClaimID: writes[1].Claim.ID, DeviceID: "d1"},
		{BatchID: b.ID, ClaimID: writes[2].Claim.ID, DeviceID: "d2"},
		{BatchID: b.ID, ClaimID: "never-committed", DeviceID: "d1"},
	}))
	// Recording a claim twice counts it once.
	require.NoError(t, f.s.AddClaimDevices(f.ctx, []store.ClaimDevice{{BatchID: b.ID, ClaimID: writes[0].Claim.ID, DeviceID: "d1"}}))
	got, err := f.s.IdentityCounts(f.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"phone:+100": 2, "phone:+200": 1, "device:d1": 2, "device:d2": 1}, got)
	other, err := f.s.IdentityCounts(f.ctx, f.id())
	require.NoError(t, err)
	require.Empty(t, other)
}
