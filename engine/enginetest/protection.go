package enginetest

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/engine"
)

// protectionTests cover engine.Protection and the checks of a claim step.
var protectionTests = []struct {
	name string
	fn   func(t *testing.T, e engine.Engine)
}{
	{"Protect/Nonce", testProtectNonce},
	{"Protect/NonceConcurrent", testProtectNonceConcurrent},
	{"Protect/NonceSharedWithUseNonce", testProtectNonceShared},
	{"Protect/RetryableRefusalsChangeNothing", testProtectRetryableRefusals},
	{"Protect/RateLimit", testProtectRateLimit},
	{"Protect/RateLimitAllOrNothing", testProtectRateLimitAllOrNothing},
	{"Protect/RateLimitCountsAttempts", testProtectRateLimitCountsAttempts},
	{"Protect/RateLimitConcurrent", testProtectRateLimitConcurrent},
	{"Protect/SMS", testProtectSMS},
	{"Protect/SMSAttempts", testProtectSMSAttempts},
	{"Protect/SMSExpiry", testProtectSMSExpiry},
	{"Protect/Identities", testProtectIdentities},
	{"Protect/IdentitiesConcurrent", testProtectIdentitiesConcurrent},
	{"Protect/IdentitiesLarge", testProtectIdentitiesLarge},
	{"Protect/ReplayedKeySkipsChecks", testProtectReplayedKeySkipsChecks},
	{"Protect/UseNonce", testProtectUseNonce},
	{"Protect/Allow", testProtectAllow},
	{"Protect/Risk", testProtectRisk},
	{"Protect/RiskCap", testProtectRiskCap},
	{"Protect/RiskGate", testProtectRiskGate},
	{"Protect/RiskGateConcurrent", testProtectRiskGateConcurrent},
}

// t0 is the clock of the protection tests: a whole second, so that rate
// limits of round numbers are exact on every engine.
var t0 = time.Now().Truncate(time.Second).Add(time.Hour)

var nonceSeq atomic.Int64

func newNonce() string {
	return "nonce-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(nonceSeq.Add(1), 10)
}

func protectedClaim(t *testing.T, e engine.Engine, batchID, user, key string, at time.Time, pr engine.ClaimProtection) (engine.ClaimResult, error) {
	t.Helper()
	return e.Claim(t.Context(), engine.ClaimParams{
		BatchID: batchID, UserID: user, IdempotencyKey: key, ClaimID: "c-" + newNonce(), At: at, Protect: &pr,
	})
}

func poolDepth(t *testing.T, e engine.Engine, batchID string) int64 {
	t.Helper()
	st, err := e.Stats(t.Context(), batchID)
	require.NoError(t, err)
	return st.PoolDepth
}

func testProtectNonce(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("n", 5))
	other := load(t, e, 5, codes("o", 5))
	nonce := newNonce()
	pr := engine.ClaimProtection{Nonce: "k1:" + nonce, NonceTTL: time.Minute}
	_, err := protectedClaim(t, e, id, "u1", "", t0, pr)
	require.NoError(t, err)
	_, err = protectedClaim(t, e, id, "u2", "", t0, pr)
	require.ErrorIs(t, err, engine.ErrReplayed)
	require.ErrorIs(t, err, access.ErrReplayed)
	require.EqualValues(t, 4, poolDepth(t, e, id), "a replay takes nothing")
	// Another key's nonce, or the same one on another batch, is another request.
	_, err = protectedClaim(t, e, id, "u2", "", t0, engine.ClaimProtection{Nonce: "k2:" + nonce, NonceTTL: time.Minute})
	require.NoError(t, err)
	_, err = protectedClaim(t, e, other, "u2", "", t0, pr)
	require.NoError(t, err)
}

// A claim step's nonce and UseNonce with the batch's id as scope are one
// memory, both ways: a signed claim refused before its step uses its nonce
// with UseNonce, and the step then refuses it.
func testProtectNonceShared(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	id := load(t, e, 5, codes("ns", 5))
	first, second := "k:"+newNonce(), "k:"+newNonce()
	require.NoError(t, e.UseNonce(ctx, id, first, time.Minute))
	_, err := protectedClaim(t, e, id, "u1", "", t0, engine.ClaimProtection{Nonce: first, NonceTTL: time.Minute})
	require.ErrorIs(t, err, engine.ErrReplayed)
	require.EqualValues(t, 5, poolDepth(t, e, id))

	_, err = protectedClaim(t, e, id, "u1", "", t0, engine.ClaimProtection{Nonce: second, NonceTTL: time.Minute})
	require.NoError(t, err)
	require.ErrorIs(t, e.UseNonce(ctx, id, second, time.Minute), engine.ErrReplayed)
	require.NoError(t, e.UseNonce(ctx, "another-scope", second, time.Minute), "scopes are apart")
}

// The same signed claim sent many times at once claims once.
func testProtectNonceConcurrent(t *testing.T, e engine.Engine) {
	id := load(t, e, 100, codes("nc", 100))
	pr := engine.ClaimProtection{Nonce: "k:" + newNonce(), NonceTTL: time.Minute}
	var ok, replayed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			_, err := protectedClaim(t, e, id, "u", "", t0, pr)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, engine.ErrReplayed):
				replayed.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, ok.Load())
	require.EqualValues(t, 31, replayed.Load())
	require.EqualValues(t, 99, poolDepth(t, e, id))
}

// Refusals the caller answers by loading and retrying — an unknown batch,
// identity counts not loaded — change nothing: the retry's nonce is fresh.
func testProtectRetryableRefusals(t *testing.T, e engine.Engine) {
	id := newBatchID()
	limit := engine.RateLimit{Key: "batch", What: "batch", Rate: 1, Period: time.Second, Burst: 1}
	pr := engine.ClaimProtection{Nonce: "k:" + newNonce(), NonceTTL: time.Minute, Limits: []engine.RateLimit{limit},
		Identities: []string{"phone:+100"}}
	_, err := protectedClaim(t, e, id, "u", "", t0, pr)
	require.ErrorIs(t, err, engine.ErrUnknownBatch)
	require.NoError(t, e.Rebuild(t.Context(), engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 1}, Pool: codes("r", 3)}))
	_, err = protectedClaim(t, e, id, "u", "", t0, pr)
	require.ErrorIs(t, err, engine.ErrIdentitiesUnknown)
	require.NoError(t, e.LoadIdentities(t.Context(), id, nil))
	_, err = protectedClaim(t, e, id, "u", "", t0, pr)
	require.NoError(t, err, "neither refusal used the nonce or the rate limit")
	require.NoError(t, e.SetBatch(t.Context(), engine.BatchState{BatchID: id, Active: false, PerUserLimit: 1}))
	pr.Nonce = "k:" + newNonce()
	_, err = protectedClaim(t, e, id, "u2", "", t0, pr)
	require.ErrorIs(t, err, engine.ErrNotClaimable)
}

func testProtectRateLimit(t *testing.T, e engine.Engine) {
	id := load(t, e, 100, codes("rl", 100))
	limit := engine.RateLimit{Key: "user:u", What: "user", Rate: 2, Period: time.Second, Burst: 2}
	pr := engine.ClaimProtection{Limits: []engine.RateLimit{limit}}
	for range 2 {
		_, err := protectedClaim(t, e, id, "u", "", t0, pr)
		require.NoError(t, err)
	}
	for range 2 { // a refusal does not push the wait further
		_, err := protectedClaim(t, e, id, "u", "", t0, pr)
		var rl *access.RateLimitedError
		require.ErrorAs(t, err, &rl)
		require.ErrorIs(t, err, access.ErrRateLimited)
		require.Equal(t, "user", rl.What)
		require.Equal(t, 500*time.Millisecond, rl.After)
	}
	require.EqualValues(t, 98, poolDepth(t, e, id), "a refused claim takes nothing")
	_, err := protectedClaim(t, e, id, "u", "", t0.Add(499*time.Millisecond), pr)
	require.ErrorIs(t, err, access.ErrRateLimited)
	_, err = protectedClaim(t, e, id, "u", "", t0.Add(500*time.Millisecond), pr)
	require.NoError(t, err)
	// Another key is another bucket.
	other := engine.ClaimProtection{Limits: []engine.RateLimit{{Key: "user:v", What: "user", Rate: 2, Period: time.Second, Burst: 2}}}
	_, err = protectedClaim(t, e, id, "v", "", t0, other)
	require.NoError(t, err)
}

// A claim refused by one limit counts against none.
func testProtectRateLimitAllOrNothing(t *testing.T, e engine.Engine) {
	id := load(t, e, 100, codes("ra", 100))
	wide := engine.RateLimit{Key: "batch", What: "batch", Rate: 2, Period: time.Second, Burst: 2}
	narrow := engine.RateLimit{Key: "device:d", What: "device", Rate: 1, Period: time.Second, Burst: 1}
	_, err := protectedClaim(t, e, id, "u1", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{wide, narrow}})
	require.NoError(t, err)
	_, err = protectedClaim(t, e, id, "u2", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{wide, narrow}})
	var rl *access.RateLimitedError
	require.ErrorAs(t, err, &rl)
	require.Equal(t, "device", rl.What)
	require.Equal(t, time.Second, rl.After)
	// The wide limit still has its second event.
	_, err = protectedClaim(t, e, id, "u3", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{wide}})
	require.NoError(t, err)
	_, err = protectedClaim(t, e, id, "u4", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{wide}})
	require.ErrorAs(t, err, &rl)
	require.Equal(t, "batch", rl.What)
}

// Limits count attempts: a claim refused after them (sold out) counts.
func testProtectRateLimitCountsAttempts(t *testing.T, e engine.Engine) {
	id := load(t, e, 100, nil)
	limit := engine.RateLimit{Key: "ip:1.2.3.4", What: "ip", Rate: 1, Period: time.Minute, Burst: 1}
	_, err := protectedClaim(t, e, id, "u", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{limit}})
	require.ErrorIs(t, err, engine.ErrSoldOut)
	_, err = protectedClaim(t, e, id, "u", "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{limit}})
	require.ErrorIs(t, err, access.ErrRateLimited)
}

func testProtectRateLimitConcurrent(t *testing.T, e engine.Engine) {
	id := load(t, e, 1000, codes("rc", 500))
	limit := engine.RateLimit{Key: "batch", What: "batch", Rate: 10, Period: time.Second, Burst: 7}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			_, err := protectedClaim(t, e, id, "u"+strconv.Itoa(i), "", t0, engine.ClaimProtection{Limits: []engine.RateLimit{limit}})
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, access.ErrRateLimited):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 7, ok.Load(), "the burst, exactly")
	require.EqualValues(t, 493, poolDepth(t, e, id))
}

func putChallenge(t *testing.T, e engine.Engine, batchID, id, user, phone, hash string, maxAttempts int) {
	t.Helper()
	require.NoError(t, e.PutChallenge(t.Context(), engine.Challenge{ID: id, BatchID: batchID, UserID: user, Phone: phone,
		CodeHash: hash, ExpiresAt: time.Now().Add(time.Hour), MaxAttempts: maxAttempts}))
}

func smsCheck(id, hash, user, phone string) engine.ClaimProtection {
	return engine.ClaimProtection{SMS: &engine.SMSCheck{ChallengeID: id, CodeHash: hash, UserID: user, Phone: phone}}
}

func testProtectSMS(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("s", 5))
	ch := "ch-" + newNonce()
	putChallenge(t, e, id, ch, "u", "+8613800000000", "good", 5)
	for _, tc := range []struct {
		name, ch, hash, user, phone string
	}{
		{"wrong code", ch, "bad", "u", ""},
		{"another user", ch, "good", "v", ""},
		{"another phone", ch, "good", "u", "+8613900000000"},
		{"unknown challenge", "ch-none", "good", "u", ""},
	} {
		_, err := protectedClaim(t, e, id, tc.user, "", t0, smsCheck(tc.ch, tc.hash, tc.user, tc.phone))
		require.ErrorIs(t, err, engine.ErrSMSInvalid, tc.name)
	}
	require.EqualValues(t, 5, poolDepth(t, e, id))
	_, err := protectedClaim(t, e, id, "u", "", t0, smsCheck(ch, "good", "u", "+8613800000000"))
	require.NoError(t, err)
	_, err = protectedClaim(t, e, id, "u", "", t0, smsCheck(ch, "good", "u", ""))
	require.ErrorIs(t, err, engine.ErrSMSInvalid, "a challenge is used once")
	// A challenge of another batch is not this batch's.
	other := load(t, e, 5, codes("s2", 5))
	ch2 := "ch-" + newNonce()
	putChallenge(t, e, other, ch2, "u", "", "good", 5)
	_, err = protectedClaim(t, e, id, "u", "", t0, smsCheck(ch2, "good", "u", ""))
	require.ErrorIs(t, err, engine.ErrSMSInvalid)
}

func testProtectSMSAttempts(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("sa", 5))
	ch := "ch-" + newNonce()
	putChallenge(t, e, id, ch, "u", "", "good", 3)
	for i := range 3 {
		_, err := protectedClaim(t, e, id, "u", "", t0, smsCheck(ch, "bad"+strconv.Itoa(i), "u", ""))
		require.ErrorIs(t, err, engine.ErrSMSInvalid)
	}
	_, err := protectedClaim(t, e, id, "u", "", t0, smsCheck(ch, "good", "u", ""))
	require.ErrorIs(t, err, engine.ErrSMSInvalid, "three wrong codes use the challenge up")
	require.EqualValues(t, 5, poolDepth(t, e, id))
}

func testProtectSMSExpiry(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("se", 5))
	ch := "ch-" + newNonce()
	require.NoError(t, e.PutChallenge(t.Context(), engine.Challenge{ID: ch, BatchID: id, UserID: "u", CodeHash: "good",
		ExpiresAt: t0, MaxAttempts: 5}))
	_, err := protectedClaim(t, e, id, "u", "", t0, smsCheck(ch, "good", "u", ""))
	require.ErrorIs(t, err, engine.ErrSMSInvalid, "expired at t0")
	require.Error(t, e.PutChallenge(t.Context(), engine.Challenge{ID: "x", BatchID: id, UserID: "u", CodeHash: "h",
		ExpiresAt: time.Now().Add(-time.Second), MaxAttempts: 5}), "a challenge expired already")
}

func testProtectIdentities(t *testing.T, e engine.Engine) {
	id := load(t, e, 2, codes("i", 10))
	require.NoError(t, e.LoadIdentities(t.Context(), id, map[string]int{"phone:+1": 1}))
	ids := func(phone, device string) engine.ClaimProtection {
		return engine.ClaimProtection{Identities: []string{"phone:" + phone, "device:" + device}}
	}
	_, err := protectedClaim(t, e, id, "a", "", t0, ids("+1", "d1"))
	require.NoError(t, err, "phone +1 holds 1 of 2")
	_, err = protectedClaim(t, e, id, "b", "", t0, ids("+1", "d2"))
	require.ErrorIs(t, err, engine.ErrLimitReached, "phone +1 holds 2 under any user")
	_, err = protectedClaim(t, e, id, "c", "", t0, ids("+2", "d1"))
	require.NoError(t, err, "device d1 holds 1")
	_, err = protectedClaim(t, e, id, "d", "", t0, ids("+3", "d1"))
	require.ErrorIs(t, err, engine.ErrLimitReached, "device d1 holds 2")
	require.EqualValues(t, 8, poolDepth(t, e, id))
	require.NoError(t, e.ReleaseIdentities(t.Context(), id, []string{"device:d1", "device:none"}))
	_, err = protectedClaim(t, e, id, "d", "", t0, ids("+3", "d1"))
	require.NoError(t, err, "an undone claim no longer counts")
	// The user's own limit still applies.
	_, err = protectedClaim(t, e, id, "d", "", t0, ids("+4", "d4"))
	require.NoError(t, err)
	_, err = protectedClaim(t, e, id, "d", "", t0, ids("+5", "d5"))
	require.ErrorIs(t, err, engine.ErrLimitReached)
	// Loading counts read before these claims changes nothing.
	require.NoError(t, e.LoadIdentities(t.Context(), id, map[string]int{}))
	_, err = protectedClaim(t, e, id, "e", "", t0, ids("+1", "d9"))
	require.ErrorIs(t, err, engine.ErrLimitReached)
}

func testProtectIdentitiesConcurrent(t *testing.T, e engine.Engine) {
	id := load(t, e, 3, codes("ic", 200))
	require.NoError(t, e.LoadIdentities(t.Context(), id, nil))
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, err := protectedClaim(t, e, id, "user"+strconv.Itoa(i), "", t0,
				engine.ClaimProtection{Identities: []string{"device:shared"}})
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, engine.ErrLimitReached):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 3, ok.Load(), "one device, forty users: the limit")
}

// A load of many identities (more than one script's arguments) is whole.
func testProtectIdentitiesLarge(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("il", 10))
	counts := map[string]int{}
	for i := range 10_000 {
		counts["device:d"+strconv.Itoa(i)] = 1
	}
	require.NoError(t, e.LoadIdentities(t.Context(), id, counts))
	for _, d := range []string{"d0", "d4095", "d4096", "d9999"} {
		_, err := protectedClaim(t, e, id, "u-"+d, "", t0, engine.ClaimProtection{Identities: []string{"device:" + d}})
		require.ErrorIs(t, err, engine.ErrLimitReached, d)
	}
	_, err := protectedClaim(t, e, id, "u-new", "", t0, engine.ClaimProtection{Identities: []string{"device:d10000"}})
	require.NoError(t, err)
}

// A claim repeating an idempotency key gets its first result, even though
// its challenge was used and its limits are exhausted.
func testProtectReplayedKeySkipsChecks(t *testing.T, e engine.Engine) {
	id := load(t, e, 5, codes("rk", 5))
	ch := "ch-" + newNonce()
	putChallenge(t, e, id, ch, "u", "", "good", 5)
	limit := engine.RateLimit{Key: "user:u", What: "user", Rate: 1, Period: time.Minute, Burst: 1}
	require.NoError(t, e.LoadIdentities(t.Context(), id, nil))
	pr := func() engine.ClaimProtection {
		return engine.ClaimProtection{Nonce: "k:" + newNonce(), NonceTTL: time.Minute, Limits: []engine.RateLimit{limit},
			SMS: &engine.SMSCheck{ChallengeID: ch, CodeHash: "good", UserID: "u"}, Identities: []string{"device:d"}}
	}
	first, err := protectedClaim(t, e, id, "u", "key-1", t0, pr())
	require.NoError(t, err)
	again, err := protectedClaim(t, e, id, "u", "key-1", t0, pr())
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Equal(t, first.Code, again.Code)
	_, err = protectedClaim(t, e, id, "u", "key-2", t0, pr())
	require.ErrorIs(t, err, access.ErrRateLimited, "a new key is checked")
}

func testProtectUseNonce(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	n := newNonce()
	require.NoError(t, e.UseNonce(ctx, "k1", n, time.Minute))
	require.ErrorIs(t, e.UseNonce(ctx, "k1", n, time.Minute), engine.ErrReplayed)
	require.NoError(t, e.UseNonce(ctx, "k2", n, time.Minute))
	require.Error(t, e.UseNonce(ctx, "k1", newNonce(), 0))

	var ok atomic.Int64
	var wg sync.WaitGroup
	m := newNonce()
	for range 16 {
		wg.Go(func() {
			if e.UseNonce(ctx, "k1", m, time.Minute) == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, ok.Load())
}

func testProtectAllow(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	key := "sms:" + newNonce()
	l := engine.RateLimit{Key: key, What: "sms", Rate: 1, Period: time.Minute, Burst: 2}
	require.NoError(t, e.Allow(ctx, key, l, t0))
	require.NoError(t, e.Allow(ctx, key, l, t0))
	err := e.Allow(ctx, key, l, t0.Add(time.Second))
	var rl *access.RateLimitedError
	require.ErrorAs(t, err, &rl)
	require.Equal(t, "sms", rl.What)
	require.Equal(t, 59*time.Second, rl.After)
	require.NoError(t, e.Allow(ctx, key, l, t0.Add(time.Minute)))
	require.Error(t, e.Allow(ctx, key, engine.RateLimit{Key: key}, t0))
}

func testProtectRisk(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	dev, ip := "dev-"+newNonce(), "10.0.0."+strconv.FormatInt(nonceSeq.Add(1)%250, 10)+"-"+newNonce()
	windows := []engine.RiskWindow{
		{Counter: engine.DeviceUsers, Window: time.Hour},
		{Counter: engine.DeviceClaims, Window: time.Minute},
		{Counter: engine.IPUsers, Window: time.Hour},
		{Counter: engine.IPClaims, Window: time.Hour},
		{Counter: engine.DeviceUsers, Window: 10 * time.Minute},
	}
	observe := func(user string, at time.Time, device, addr string) []int64 {
		t.Helper()
		got, err := e.ObserveRisk(ctx, engine.RiskObservation{At: at, EventID: newNonce(), UserID: user, DeviceID: device,
			IP: addr, Horizon: 24 * time.Hour, Windows: windows})
		require.NoError(t, err)
		return got
	}
	require.Equal(t, []int64{1, 1, 1, 1, 1}, observe("u1", t0, dev, ip))
	require.Equal(t, []int64{2, 2, 2, 2, 2}, observe("u2", t0.Add(time.Second), dev, ip))
	require.Equal(t, []int64{2, 3, 2, 3, 2}, observe("u1", t0.Add(2*time.Second), dev, ip))
	// Twenty minutes on: the one-minute and ten-minute windows have emptied.
	require.Equal(t, []int64{2, 1, 2, 4, 1}, observe("u2", t0.Add(20*time.Minute), dev, ip))
	// Without a device only the IP counts; without either nothing does.
	require.Equal(t, []int64{0, 0, 3, 5, 0}, observe("u3", t0.Add(21*time.Minute), "", ip))
	require.Equal(t, []int64{0, 0, 0, 0, 0}, observe("u4", t0.Add(21*time.Minute), "", ""))
	// Two hours on, the hour windows have emptied but for this attempt.
	require.Equal(t, []int64{1, 1, 1, 1, 1}, observe("u5", t0.Add(3*time.Hour), dev, ip))
}

func testProtectRiskCap(t *testing.T, e engine.Engine) {
	ctx := t.Context()
	dev := "dev-" + newNonce()
	windows := []engine.RiskWindow{{Counter: engine.DeviceUsers, Window: time.Hour}, {Counter: engine.DeviceClaims, Window: time.Hour}}
	var got []int64
	for i := range engine.MaxRiskEvents + 20 {
		var err error
		got, err = e.ObserveRisk(ctx, engine.RiskObservation{At: t0.Add(time.Duration(i) * time.Millisecond), EventID: newNonce(),
			UserID: "u" + strconv.Itoa(i), DeviceID: dev, Horizon: time.Hour, Windows: windows})
		require.NoError(t, err)
	}
	require.Equal(t, []int64{engine.MaxRiskEvents, engine.MaxRiskEvents}, got, "counts stop at the cap")
}

// gate is a risk gate over the distinct users of a device (deny above two)
// and the attempts of an IP (challenge above three), in the hour.
func gate(user, device, ip string, at time.Time) *engine.RiskGate {
	return &engine.RiskGate{
		Observation: engine.RiskObservation{At: at, EventID: newNonce(), UserID: user, DeviceID: device, IP: ip,
			Horizon: 24 * time.Hour, Windows: []engine.RiskWindow{
				{Counter: engine.DeviceUsers, Window: time.Hour}, {Counter: engine.IPClaims, Window: time.Hour},
			}},
		Thresholds: []engine.RiskThreshold{{Window: 0, Above: 2, Deny: true}, {Window: 1, Above: 3}},
	}
}

func testProtectRiskGate(t *testing.T, e engine.Engine) {
	id := load(t, e, 1, codes("rg", 10))
	dev, dev2, ip := "dev-"+newNonce(), "dev-"+newNonce(), "ip-"+newNonce()
	if !e.FoldsRisk() {
		_, err := protectedClaim(t, e, id, "u1", "", t0, engine.ClaimProtection{Risk: gate("u1", dev, ip, t0)})
		require.Error(t, err, "an engine that does not fold risk refuses a gate")
		require.EqualValues(t, 10, poolDepth(t, e, id))
		return
	}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	claimWith := func(i int, user, device, addr string, sms *engine.SMSCheck) error {
		t.Helper()
		_, err := protectedClaim(t, e, id, user, "", at(i), engine.ClaimProtection{Risk: gate(user, device, addr, at(i)), SMS: sms})
		return err
	}
	// An unknown batch is refused before the gate: nothing is observed.
	_, err := protectedClaim(t, e, "b-unknown-"+newNonce(), "u0", "", at(0), engine.ClaimProtection{Risk: gate("u0", dev, ip, at(0))})
	require.ErrorIs(t, err, engine.ErrUnknownBatch)

	require.NoError(t, claimWith(1, "u1", dev, ip, nil))
	require.NoError(t, claimWith(2, "u2", dev, ip, nil))
	require.NoError(t, claimWith(3, "u3", dev2, ip, nil)) // the IP's third attempt: not above three
	require.EqualValues(t, 7, poolDepth(t, e, id))

	// The IP's fourth attempt is challenged; without a challenge solved it is refused.
	err = claimWith(4, "u4", dev2, ip, nil)
	var rr *engine.RiskRefusal
	require.ErrorAs(t, err, &rr)
	require.ErrorIs(t, err, access.ErrSMSRequired)
	require.False(t, rr.Deny)
	require.Equal(t, []int64{2, 4}, rr.Counts, "the refused attempt is counted")
	require.EqualValues(t, 7, poolDepth(t, e, id), "a refusal takes nothing")

	// A wrong code for a challenge the gate asks for is checked, and refused.
	put := func(ch, user string) {
		require.NoError(t, e.PutChallenge(t.Context(), engine.Challenge{ID: ch, BatchID: id, UserID: user, CodeHash: "good",
			ExpiresAt: t0.Add(2 * time.Hour), MaxAttempts: 5}))
	}
	ch := "ch-" + newNonce()
	put(ch, "u4")
	err = claimWith(5, "u4", dev2, ip, &engine.SMSCheck{ChallengeID: ch, CodeHash: "bad", UserID: "u4", IfChallenged: true})
	require.ErrorIs(t, err, engine.ErrSMSInvalid)
	require.NoError(t, claimWith(6, "u4", dev2, ip, &engine.SMSCheck{ChallengeID: ch, CodeHash: "good", UserID: "u4", IfChallenged: true}))
	require.EqualValues(t, 6, poolDepth(t, e, id))

	// A third user on the device is denied, a solved challenge or not.
	ch2 := "ch-" + newNonce()
	put(ch2, "u5")
	err = claimWith(7, "u5", dev, "ip-"+newNonce(), &engine.SMSCheck{ChallengeID: ch2, CodeHash: "good", UserID: "u5"})
	require.ErrorAs(t, err, &rr)
	require.ErrorIs(t, err, access.ErrRiskDenied)
	require.True(t, rr.Deny)
	require.Equal(t, []int64{3, 1}, rr.Counts)
	require.EqualValues(t, 6, poolDepth(t, e, id))
	// The denial did not use the challenge up.
	_, err = protectedClaim(t, e, id, "u5", "", at(8), smsCheck(ch2, "good", "u5", ""))
	require.NoError(t, err)

	// A challenge nothing asks for is not checked: a wrong code passes.
	require.NoError(t, claimWith(9, "u6", "dev-"+newNonce(), "ip-"+newNonce(),
		&engine.SMSCheck{ChallengeID: "ch-none", CodeHash: "bad", UserID: "u6", IfChallenged: true}))

	// Every attempt that reached the gate was observed, refusals included.
	got, err := e.ObserveRisk(t.Context(), engine.RiskObservation{At: at(10), EventID: newNonce(), UserID: "u1", DeviceID: dev,
		IP: ip, Horizon: 24 * time.Hour, Windows: []engine.RiskWindow{{Counter: engine.DeviceUsers, Window: time.Hour},
			{Counter: engine.DeviceClaims, Window: time.Hour}, {Counter: engine.IPClaims, Window: time.Hour}}})
	require.NoError(t, err)
	require.Equal(t, []int64{3, 4, 7}, got)
}

// testProtectRiskGateConcurrent: many claims from one device at once, the
// gate denying a third user: exactly two users get a coupon, whatever the
// interleaving.
func testProtectRiskGateConcurrent(t *testing.T, e engine.Engine) {
	if !e.FoldsRisk() {
		t.Skip("the engine does not fold risk into its claim step")
	}
	id := load(t, e, 1, codes("rc", 64))
	dev := "dev-" + newNonce()
	var wg sync.WaitGroup
	var ok, denied atomic.Int64
	for i := range 32 {
		wg.Go(func() {
			user := "u" + strconv.Itoa(i)
			_, err := protectedClaim(t, e, id, user, "", t0, engine.ClaimProtection{Risk: gate(user, dev, "", t0)})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, access.ErrRiskDenied):
				denied.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 2, ok.Load())
	require.EqualValues(t, 30, denied.Load())
	require.EqualValues(t, 62, poolDepth(t, e, id))
}
