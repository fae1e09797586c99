package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/engine"
)

// The protection's keys. A batch's are in its hash tag, so its checks run
// in its claim script:
//
//	cp:{<batch>}:idn           hash: identity → claims held; "loaded" once loaded
//	cp:{<batch>}:sms:<id>      hash, expiring: an SMS challenge
//	cp:{<batch>}:rl:<key>      string, expiring: a rate limit's theoretical arrival time (µs)
//
// The others are global, each in a hash tag of its own:
//
//	cp:nonce:{<scope>}:<n>     string, expiring: a nonce was seen; the scope
//	                           of a claim's is its batch id, so the key is in
//	                           the batch's hash slot and its claim script sets it
//	cp:rl:{<key>}              string, expiring: a global rate limit (SMS resends)
//	cp:risk:{d:<device>}       sorted set: the device's sliding windows,
//	                           'u' user → last attempt (µs) and 'c' attempt →
//	                           minus its time (µs); see lua/risk_set.lua
//	cp:risk:{i:<ip>}           the same for an IP
var (
	protectAllowScript      = script("protect_allow.lua")
	protectChallengeScript  = script("protect_challenge.lua")
	protectIdentitiesScript = script("protect_identities.lua")
	protectRiskScript       = goredis.NewScript(source("risk_set.lua") + source("protect_risk.lua"))
	// protectedClaimScript is claim.lua wrapped as a function, called by
	// the checks of protect_claim.lua: the claim step stays the one of
	// claim.lua, and the checks run in the same script.
	protectedClaimScript = goredis.NewScript(source("risk_set.lua") + "local function claim_step(KEYS, ARGV)\n" +
		source("claim.lua") + "\nend\n" + source("protect_claim.lua") + source("protect_claim_tail.lua"))
)

// Statuses of the protection's refusals in a claim's reply.
const (
	statusReplayed          = -10
	statusRateLimited       = -11
	statusSMSInvalid        = -12
	statusIdentitiesUnknown = -13
	statusRiskRefused       = -14
)

func source(name string) string {
	src, err := luaFiles.ReadFile("lua/" + name)
	if err != nil {
		panic(err) // a file name above is wrong
	}
	return string(src)
}

// protectedClaim runs the checks of p.Protect and the claim step in one
// script, lua/protect_claim.lua around lua/claim.lua.
func (e *Engine) protectedClaim(ctx context.Context, keys batchKeys, args []any, p engine.ClaimParams) ([]any, error) {
	pr := p.Protect
	if pr.Nonce != "" && pr.NonceTTL <= 0 {
		return nil, fmt.Errorf("redis engine: claim: nonce ttl %v is not positive", pr.NonceTTL)
	}
	for _, l := range pr.Limits {
		if err := l.Validate(); err != nil {
			return nil, err
		}
	}
	base := strings.TrimSuffix(keys[keyMeta], "meta")
	idn := base + "idn"
	nonceKey, smsKey := idn, idn // unused keys still name a key of the tag
	if pr.Nonce != "" {
		nonceKey = e.prefix + ":nonce:{" + p.BatchID + "}:" + pr.Nonce // UseNonce's key of scope p.BatchID
	}
	var sms engine.SMSCheck
	if pr.SMS != nil {
		sms = *pr.SMS
		smsKey = base + "sms:" + sms.ChallengeID
	}
	replay := ""
	if p.IdempotencyKey != "" {
		replay = keyField(p.UserID, p.IdempotencyKey)
	}
	ks := make([]string, 0, len(keys)+8+len(pr.Limits))
	ks = append(ks, keys[:]...)
	ks = append(ks, idn, nonceKey, smsKey, keys[keyKeys])
	for _, l := range pr.Limits {
		ks = append(ks, base+"rl:"+l.Key)
	}
	g := pr.Risk
	if g != nil && !e.FoldsRisk() {
		return nil, errors.New("redis engine: claim: a risk gate needs one Redis server, not a cluster")
	}
	if g != nil && g.Observation.DeviceID != "" {
		ks = append(ks, e.riskKey("d:"+g.Observation.DeviceID))
	} else {
		ks = append(ks, idn)
	}
	if g != nil && g.Observation.IP != "" {
		ks = append(ks, e.riskKey("i:"+g.Observation.IP))
	} else {
		ks = append(ks, idn)
	}
	a := make([]any, 0, 2+len(args)+16+len(pr.Identities)+2*len(pr.Limits))
	a = append(a, len(keys), len(args))
	a = append(a, args...)
	a = append(a, pr.Nonce, max(pr.NonceTTL.Milliseconds(), 1), p.At.UnixMicro(),
		sms.ChallengeID, sms.CodeHash, sms.UserID, sms.Phone, replay, len(pr.Identities))
	for _, id := range pr.Identities {
		a = append(a, id)
	}
	a = append(a, len(pr.Limits))
	for _, l := range pr.Limits {
		a = append(a, l.Interval().Microseconds(), l.Burst)
	}
	a = append(a, flag(sms.IfChallenged), flag(g != nil))
	if g != nil {
		o := g.Observation
		a = append(a, max(o.Horizon, time.Millisecond).Microseconds(), o.UserID, o.EventID, engine.MaxRiskEvents,
			flag(o.DeviceID != ""), flag(o.IP != ""), flag(riskTrim()), len(o.Windows))
		for _, w := range o.Windows {
			a = append(a, riskCounterIndex[w.Counter], w.Window.Microseconds())
		}
		a = append(a, len(g.Thresholds))
		for _, t := range g.Thresholds {
			a = append(a, t.Window+1, t.Above, flag(t.Deny))
		}
	}
	return protectedClaimScript.Run(ctx, e.client, ks, a...).Slice()
}

// riskKey is the sorted set of an identity's sliding windows (tag "d:"
// and a device id, or "i:" and an IP).
func (e *Engine) riskKey(tag string) string {
	return e.prefix + ":risk:{" + tag + "}"
}

// riskTrim says whether an attempt trims the sets it is recorded in: one
// in riskTrimEvery. Counts are by window and clamped to
// engine.MaxRiskEvents, so trimming is for memory only, and a set holds a
// few entries over the cap at most.
func riskTrim() bool {
	return rand.IntN(riskTrimEvery) == 0
}

const riskTrimEvery = 16

// riskCounterIndex numbers the counters as protect_claim.lua does.
var riskCounterIndex = map[engine.RiskCounter]int{
	engine.DeviceUsers: 1, engine.DeviceClaims: 2, engine.IPUsers: 3, engine.IPClaims: 4,
}

// FoldsRisk is true on one Redis server: a claim's script may then touch
// its device's and IP's risk counters, which are in other hash tags than
// its batch's. On a cluster they may be on other nodes.
func (e *Engine) FoldsRisk() bool {
	_, cluster := e.client.(*goredis.ClusterClient)
	return !cluster
}

// protectionRefusal is the error of a claim reply refused by the checks;
// ok is false for other replies.
func protectionRefusal(p engine.ClaimParams, res []any) (err error, ok bool) {
	r := reply{res: res}
	switch r.int(0) {
	case statusReplayed:
		return engine.ErrReplayed, true
	case statusIdentitiesUnknown:
		return engine.ErrIdentitiesUnknown, true
	case statusRateLimited:
		wait, i := r.int(1), int(r.int(2))
		if err := r.check("claim", 3); err != nil {
			return err, true
		}
		what := "rate"
		if p.Protect != nil && i >= 1 && i <= len(p.Protect.Limits) {
			what = p.Protect.Limits[i-1].What
		}
		return &access.RateLimitedError{What: what, After: time.Duration(wait) * time.Microsecond}, true
	case statusRiskRefused:
		var n int
		if p.Protect != nil && p.Protect.Risk != nil {
			n = len(p.Protect.Risk.Observation.Windows)
		}
		refusal := &engine.RiskRefusal{Deny: r.int(1) == 2, Counts: make([]int64, n)}
		for i := range n {
			refusal.Counts[i] = r.int(2 + i)
		}
		if err := r.check("claim", 2+n); err != nil {
			return err, true
		}
		return refusal, true
	case statusSMSInvalid:
		why, left := r.string(1), r.int(2)
		if err := r.check("claim", 3); err != nil {
			return err, true
		}
		return smsRefusal(why, left), true
	}
	return nil, false
}

func smsRefusal(why string, left int64) error {
	switch why {
	case "wrong":
		return fmt.Errorf("wrong code, %d attempts left: %w", left, engine.ErrSMSInvalid)
	case "expired":
		return fmt.Errorf("the challenge expired: %w", engine.ErrSMSInvalid)
	}
	return fmt.Errorf("no such challenge (expired, used or never made): %w", engine.ErrSMSInvalid)
}

// UseNonce remembers nonce with SET NX PX.
func (e *Engine) UseNonce(ctx context.Context, scope, nonce string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis engine: nonce ttl %v is not positive", ttl)
	}
	ok, err := e.client.SetNX(ctx, e.prefix+":nonce:{"+scope+"}:"+nonce, 1, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return fail("use nonce", err)
	}
	if !ok {
		return engine.ErrReplayed
	}
	return nil
}

// Allow runs lua/protect_allow.lua.
func (e *Engine) Allow(ctx context.Context, key string, l engine.RateLimit, at time.Time) error {
	if err := l.Validate(); err != nil {
		return err
	}
	wait, err := protectAllowScript.Run(ctx, e.client, []string{e.prefix + ":rl:{" + key + "}"},
		at.UnixMicro(), l.Interval().Microseconds(), l.Burst).Int64()
	if err != nil {
		return fail("allow", err)
	}
	if wait > 0 {
		return &access.RateLimitedError{What: l.What, After: time.Duration(wait) * time.Microsecond}
	}
	return nil
}

// PutChallenge stores the challenge in its batch's hash tag, expiring with it.
func (e *Engine) PutChallenge(ctx context.Context, c engine.Challenge) error {
	ttl := time.Until(c.ExpiresAt)
	if ttl <= 0 || c.MaxAttempts < 1 {
		return fmt.Errorf("redis engine: challenge %s: expiry %v and max attempts %d must be in the future and positive",
			c.ID, c.ExpiresAt, c.MaxAttempts)
	}
	key := strings.TrimSuffix(e.batchKeys(c.BatchID)[keyMeta], "meta") + "sms:" + c.ID
	err := protectChallengeScript.Run(ctx, e.client, []string{key}, c.UserID, c.Phone, c.CodeHash,
		c.ExpiresAt.UnixMicro(), c.MaxAttempts, max(ttl.Milliseconds(), 1)).Err()
	if err != nil {
		return fail("put challenge", err)
	}
	return nil
}

// LoadIdentities sets the batch's identity counts unless they are loaded,
// in one script. Counts beyond what one script takes as arguments are staged
// first in a hash of the batch's tag (expiring should the process die),
// which the script renames into place.
func (e *Engine) LoadIdentities(ctx context.Context, batchID string, counts map[string]int) error {
	base := strings.TrimSuffix(e.batchKeys(batchID)[keyMeta], "meta")
	staging := base + "idn:load:" + newToken()
	args := make([]any, 0, 1+2*min(len(counts), addCodesSlice))
	args = append(args, "load")
	pipe := e.client.Pipeline()
	fields := make([]any, 0, 2*rebuildSlice)
	for id, n := range counts {
		if n <= 0 {
			continue
		}
		if len(args) < 1+2*addCodesSlice {
			args = append(args, id, n)
			continue
		}
		fields = append(fields, id, n)
		if len(fields) == cap(fields) {
			pipe.HSet(ctx, staging, fields...)
			pipe.PExpire(ctx, staging, stagingTTL)
			fields = make([]any, 0, 2*rebuildSlice)
		}
	}
	if len(fields) > 0 {
		pipe.HSet(ctx, staging, fields...)
		pipe.PExpire(ctx, staging, stagingTTL)
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return fail("load identities", err)
		}
	}
	if err := protectIdentitiesScript.Run(ctx, e.client, []string{base + "idn", staging}, args...).Err(); err != nil {
		return fail("load identities", err)
	}
	return nil
}

// ReleaseIdentities lowers each identity's count by one.
func (e *Engine) ReleaseIdentities(ctx context.Context, batchID string, identities []string) error {
	if len(identities) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(identities))
	args = append(args, "release")
	for _, id := range identities {
		args = append(args, id)
	}
	return e.identities(ctx, batchID, "release identities", args)
}

func (e *Engine) identities(ctx context.Context, batchID, op string, args []any) error {
	key := strings.TrimSuffix(e.batchKeys(batchID)[keyMeta], "meta") + "idn"
	if err := protectIdentitiesScript.Run(ctx, e.client, []string{key, key}, args...).Err(); err != nil {
		return fail(op, err)
	}
	return nil
}

// ObserveRisk runs lua/protect_risk.lua for the device and for the IP, in
// one pipeline: their keys are in hash tags of their own (on a cluster,
// perhaps on two nodes, asked at once), so the observation costs one round
// trip.
func (e *Engine) ObserveRisk(ctx context.Context, o engine.RiskObservation) ([]int64, error) {
	type part struct {
		tag            string
		users, claims  engine.RiskCounter
		userW, claimsW []int // indexes into o.Windows
		cmd            *goredis.Cmd
	}
	parts := []*part{
		{tag: "d:" + o.DeviceID, users: engine.DeviceUsers, claims: engine.DeviceClaims},
		{tag: "i:" + o.IP, users: engine.IPUsers, claims: engine.IPClaims},
	}
	for i, w := range o.Windows {
		for _, pt := range parts {
			switch w.Counter {
			case pt.users:
				pt.userW = append(pt.userW, i)
			case pt.claims:
				pt.claimsW = append(pt.claimsW, i)
			}
		}
	}
	horizon := max(o.Horizon, time.Millisecond)
	run := func(sha bool) error {
		pipe := e.client.Pipeline()
		for j, pt := range parts {
			pt.cmd = nil
			if (j == 0 && o.DeviceID == "") || (j == 1 && o.IP == "") {
				continue
			}
			args := []any{o.At.UnixMicro(), horizon.Microseconds(), o.UserID, o.EventID, engine.MaxRiskEvents,
				flag(riskTrim()), len(pt.userW)}
			for _, i := range pt.userW {
				args = append(args, o.Windows[i].Window.Microseconds())
			}
			for _, i := range pt.claimsW {
				args = append(args, o.Windows[i].Window.Microseconds())
			}
			keys := []string{e.riskKey(pt.tag)}
			if sha {
				pt.cmd = protectRiskScript.EvalSha(ctx, pipe, keys, args...)
			} else {
				pt.cmd = protectRiskScript.Eval(ctx, pipe, keys, args...)
			}
		}
		if pipe.Len() == 0 {
			return nil
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	// EVALSHA first, as Script.Run does; a server that lacks the script
	// (a restart, a new node) gets it once with EVAL.
	err := run(true)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		err = run(false)
	}
	if err != nil {
		return nil, fail("observe risk", err)
	}
	out := make([]int64, len(o.Windows))
	for _, pt := range parts {
		if pt.cmd == nil {
			continue
		}
		vals, err := pt.cmd.Int64Slice()
		if err != nil {
			return nil, fail("observe risk", err)
		}
		if len(vals) != len(pt.userW)+len(pt.claimsW) {
			return nil, fmt.Errorf("redis engine: observe risk: %d counts, want %d", len(vals), len(pt.userW)+len(pt.claimsW))
		}
		for k, i := range append(pt.userW, pt.claimsW...) {
			out[i] = vals[k]
		}
	}
	return out, nil
}
