package enginetest

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// cacheTests cover engine.Cache.
var cacheTests = []struct {
	name string
	fn   func(t *testing.T, e engine.Engine)
}{
	{"Cache/FillAfterMiss", testCacheFillAfterMiss},
	{"Cache/ChangeDropsValue", testCacheChangeDropsValue},
	{"Cache/FillRefusedAfterChange", testCacheFillRefusedAfterChange},
	{"Cache/FillRace", testCacheFillRace},
	{"Cache/SettleAndTouch", testCacheSettleAndTouch},
	{"Cache/BadTTL", testCacheBadTTL},
	{"Tags/SetRemove", testTagsSetRemove},
}

func newUserID() string { return "user-" + newBatchID() }

func testCacheFillAfterMiss(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	u := newUserID()
	_, v, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.False(t, hit)
	ok, err := e.FillUserClaims(ctx, u, v, []byte(`[1]`), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	val, _, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.True(t, hit)
	require.Equal(t, `[1]`, string(val))

	// An empty value is a hit too: a user without claims is cached.
	u2 := newUserID()
	_, v, _, err = e.GetUserClaims(ctx, u2)
	require.NoError(t, err)
	ok, err = e.FillUserClaims(ctx, u2, v, []byte{}, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	val, _, hit, err = e.GetUserClaims(ctx, u2)
	require.NoError(t, err)
	require.True(t, hit)
	require.Empty(t, val)
}

func testCacheChangeDropsValue(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	u, other := newUserID(), newUserID()
	for _, user := range []string{u, other} {
		_, v, _, err := e.GetUserClaims(ctx, user)
		require.NoError(t, err)
		ok, err := e.FillUserClaims(ctx, user, v, []byte("old"), time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.NoError(t, e.UserClaimsChanged(ctx, []string{u}))
	_, v, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.False(t, hit, "a change drops the cached value")
	_, _, hit, err = e.GetUserClaims(ctx, other)
	require.NoError(t, err)
	require.True(t, hit, "another user's value stays")

	ok, err := e.FillUserClaims(ctx, u, v, []byte("new"), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	val, _, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.True(t, hit)
	require.Equal(t, "new", string(val))
}

// testCacheFillRefusedAfterChange is the classic fill race: the reader's
// store read predates a change, so its fill must not be stored.
func testCacheFillRefusedAfterChange(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	u := newUserID()
	_, v, _, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.NoError(t, e.UserClaimsChanged(ctx, []string{u}))
	ok, err := e.FillUserClaims(ctx, u, v, []byte("stale"), time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "a fill with the version before a change is refused")
	_, v2, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.False(t, hit)
	require.NotEqual(t, v, v2)

	// Two changes and a fill with the version between them: refused too.
	require.NoError(t, e.UserClaimsChanged(ctx, []string{u}))
	ok, err = e.FillUserClaims(ctx, u, v2, []byte("stale"), time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
}

// testCacheFillRace races fillers against changes: a hit never shows less
// than the changes completed before the read began.
func testCacheFillRace(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	u := newUserID()
	var truth, completed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const changes = 200
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for range changes {
			truth.Add(1)
			if err := e.UserClaimsChanged(ctx, []string{u}); err != nil {
				t.Error(err)
				return
			}
			completed.Store(truth.Load())
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := completed.Load()
				val, v, hit, err := e.GetUserClaims(ctx, u)
				if err != nil {
					t.Error(err)
					return
				}
				if hit {
					n, _ := strconv.ParseInt(string(val), 10, 64)
					if n < before {
						t.Errorf("hit shows %d changes, %d had completed before the read", n, before)
						return
					}
					continue
				}
				seen := truth.Load() // the "store read", after the miss
				if _, err := e.FillUserClaims(ctx, u, v, []byte(strconv.FormatInt(seen, 10)), time.Minute); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	val, _, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	if hit {
		require.Equal(t, strconv.Itoa(changes), string(val))
	}
}

func testCacheSettleAndTouch(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	b1 := load(t, e, 1, codes("st1", 2))
	b2 := load(t, e, 1, codes("st2", 2))
	r1 := mustClaim(t, e, b1, "u1", "", "c1")
	r2 := mustClaim(t, e, b2, "u2", "", "c2")
	u := newUserID()
	_, v, _, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	ok, err := e.FillUserClaims(ctx, u, v, []byte("x"), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, e.SettleAndTouch(ctx, []engine.Settlement{{BatchID: b1, Codes: []string{r1.Code}}, {BatchID: b2, Codes: []string{r2.Code}}}, []string{u}))
	for _, b := range []string{b1, b2} {
		p, err := e.Pending(ctx, b, time.Now().Add(time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, p, "settled")
	}
	_, _, hit, err := e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.False(t, hit, "touched")

	// An unknown batch is reported, and the users are bumped all the same.
	fill(t, e, u, "y")
	err = e.SettleAndTouch(ctx, []engine.Settlement{{BatchID: newBatchID(), Codes: []string{"x"}}}, []string{u})
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	_, _, hit, err = e.GetUserClaims(ctx, u)
	require.NoError(t, err)
	require.False(t, hit)
	require.NoError(t, e.SettleAndTouch(ctx, nil, nil))
}

func testCacheBadTTL(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	u := newUserID()
	_, err := e.FillUserClaims(ctx, u, 0, []byte("x"), 0)
	require.Error(t, err)
	_, err = e.FillUserClaims(ctx, u, 0, []byte("x"), engine.VersionTTL)
	require.Error(t, err)
}

func testTagsSetRemove(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	p1, p2, c1 := "product:"+newBatchID(), "product:"+newBatchID(), "category:"+newBatchID()
	b1, b2 := "b1-"+newBatchID(), "b2-"+newBatchID()
	require.NoError(t, e.SetTags(ctx, b2, []string{p1, c1}, []byte(`{"n":2}`)))
	require.NoError(t, e.SetTags(ctx, b1, []string{p1}, []byte(`{"n":1}`)))
	require.NoError(t, e.SetTags(ctx, b1, []string{p1}, []byte(`{"n":11}`)), "idempotent, the data replaced")
	got, err := e.Tags(ctx, []string{p1, p2, c1})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, []engine.Tag{{BatchID: b1, Data: []byte(`{"n":11}`)}, {BatchID: b2, Data: []byte(`{"n":2}`)}}, got[0])
	require.Empty(t, got[1])
	require.Equal(t, []engine.Tag{{BatchID: b2, Data: []byte(`{"n":2}`)}}, got[2])

	// A batch between the two: the order holds, and a slice handed out
	// before is not changed by it.
	b15 := "b15-" + newBatchID()
	require.NoError(t, e.SetTags(ctx, b15, []string{p1}, []byte(`{"n":15}`)))
	again, err := e.Tags(ctx, []string{p1})
	require.NoError(t, err)
	require.Equal(t, []string{b1, b15, b2}, []string{again[0][0].BatchID, again[0][1].BatchID, again[0][2].BatchID})
	require.Len(t, got[0], 2, "a slice handed out before")
	require.NoError(t, e.RemoveTags(ctx, b15, []string{p1}))
	again, err = e.Tags(ctx, []string{p1})
	require.NoError(t, err)
	require.Equal(t, got[0], again[0])

	require.NoError(t, e.RemoveTags(ctx, b2, []string{p1, c1, p2}))
	require.NoError(t, e.RemoveTags(ctx, b2, []string{p1}), "idempotent")
	got, err = e.Tags(ctx, []string{p1, c1})
	require.NoError(t, err)
	require.Equal(t, []engine.Tag{{BatchID: b1, Data: []byte(`{"n":11}`)}}, got[0])
	require.Empty(t, got[1])
	got, err = e.Tags(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

// fill caches value for user after a miss.
func fill(t *testing.T, e engine.Engine, user, value string) {
	t.Helper()
	_, v, _, err := e.GetUserClaims(t.Context(), user)
	require.NoError(t, err)
	ok, err := e.FillUserClaims(t.Context(), user, v, []byte(value), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
}
