package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/access"
)

// Errors of the protection. ErrReplayed, ErrSMSInvalid and ErrRateLimited
// (inside *access.RateLimitedError) are the API's refusals, so they reach
// it unchanged.
var (
	ErrReplayed   = access.ErrReplayed
	ErrSMSInvalid = access.ErrSMSInvalid
	// ErrIdentitiesUnknown: a claim counts identities across user ids
	// (ClaimProtection.Identities) and the engine holds no identity counts
	// for the batch (never loaded, or lost with a restart of Redis). Load
	// them from the store with LoadIdentities, then retry. Nothing changed.
	ErrIdentitiesUnknown = errors.New("engine: identity counts of the batch not loaded")
)

// Protection is the part of the engine that guards the claim path against
// abuse: request nonces, rate limits (a generic cell rate algorithm), SMS
// challenges, the counts of claims per phone or device of batches whose
// per-user limit counts across user ids, and the sliding-window counters of
// risk rules. It is embedded in Engine.
//
// The checks of one batch run inside the claim step, atomically with it and
// in the same round trip: see ClaimParams.Protect and ClaimProtection. The
// methods below are the ones that cannot: their keys are not a batch's.
//
// Like leases, nonces, rate-limit states, challenges and risk counters are
// not rebuilt from the store: losing them forgets recent nonces (a request
// replayed just after a Redis restart within the clock skew would be
// accepted once more), refills rate limits, and drops challenges (users ask
// for a new code). Identity counts are rebuilt from the store
// (LoadIdentities).
type Protection interface {
	// UseNonce remembers nonce in scope for ttl; ErrReplayed if scope
	// remembers it already. Signed requests other than claims use it with
	// their key's id as scope (a claim's nonce is checked by its claim
	// step, in the scope of the batch's id: see ClaimProtection), and so do
	// signed claims refused before their claim step, with the batch's id.
	// A ttl must be positive.
	UseNonce(ctx context.Context, scope, nonce string, ttl time.Duration) error

	// Allow admits one event of the rate limit l on key at time at, or
	// refuses it with *access.RateLimitedError (RetryAfter set), changing
	// nothing. Keys are global (an SMS resend throttle per phone), not a
	// batch's.
	Allow(ctx context.Context, key string, l RateLimit, at time.Time) error

	// PutChallenge stores an SMS challenge under its batch until it
	// expires. A challenge with the id of a live one replaces it.
	PutChallenge(ctx context.Context, c Challenge) error

	// LoadIdentities sets the identity counts of a batch (identity → claims
	// held) and marks them loaded, unless they are loaded already: then it
	// changes nothing, so that a load read from the store before claims
	// that the engine has counted since cannot take them back. Claims
	// counting identities are refused with ErrIdentitiesUnknown until the
	// counts are loaded.
	LoadIdentities(ctx context.Context, batchID string, counts map[string]int) error

	// ReleaseIdentities lowers the count of each identity by one (not below
	// zero): the undo of a claim that counted them and whose row was never
	// committed. Identities not counted are ignored.
	ReleaseIdentities(ctx context.Context, batchID string, identities []string) error

	// ObserveRisk records one claim attempt in the sliding windows of its
	// device and its IP (whichever it has) and returns, for each of
	// o.Windows in order, the count within that window ending at o.At, this
	// attempt included. Events older than o.Horizon may be forgotten.
	ObserveRisk(ctx context.Context, o RiskObservation) ([]int64, error)

	// FoldsRisk reports whether Claim takes ClaimProtection.Risk: whether
	// the engine can observe a claim's risk counters in its claim step.
	// Redis Cluster cannot (a device's and an IP's counters are on other
	// nodes than the batch's keys); the caller then calls ObserveRisk
	// first.
	FoldsRisk() bool
}

// ClaimProtection are the checks of a claim step (Engine.Claim with
// ClaimParams.Protect set), made atomically with it. In order:
//  1. the batch is unknown: ErrUnknownBatch; not active: ErrNotClaimable;
//     Identities are set and the batch's identity counts are not loaded:
//     ErrIdentitiesUnknown — none of these changes anything;
//  2. Nonce is remembered in the scope named by the batch's id:
//     ErrReplayed; otherwise it is remembered for NonceTTL. UseNonce with
//     the batch's id as scope shares that memory, so that a signed claim
//     refused before its claim step still uses up its nonce;
//     then Risk, when set (engines whose FoldsRisk says so): the attempt
//     is observed as ObserveRisk observes it, and the thresholds decide
//     (see RiskGate): a refusal is a *RiskRefusal, and changes nothing more;
//  3. the idempotency key was seen: the earlier result, as Claim answers
//     it, without the checks below;
//  4. a rate limit of Limits refuses: *access.RateLimitedError with the
//     longest wait of those that refuse, no limit changed; otherwise
//     every limit counts the attempt;
//  5. SMS is set (and, if SMS.IfChallenged, Risk challenged) and no live
//     challenge of the batch has its id, user and (if set) phone with that
//     code hash: ErrSMSInvalid, a wrong code
//     counting one attempt (a challenge with MaxAttempts wrong codes is
//     dropped); otherwise the challenge is used up;
//  6. an identity of Identities holds the batch's per-user limit of
//     claims: ErrLimitReached;
//  7. the claim step itself; if it hands out a code, each identity's
//     count goes up by one.
//
// So refusals at 4 and later still use up the nonce; and a refused claim
// still counts against the rate limits: they limit attempts.
type ClaimProtection struct {
	Nonce      string
	NonceTTL   time.Duration
	Limits     []RateLimit
	SMS        *SMSCheck
	Identities []string // e.g. "phone:+8613800000000", "device:abc"
	Risk       *RiskGate
}

// RiskGate is a risk observation made in a claim step, and the thresholds
// that decide on its counts: the risk rules of the claim's batch that look
// at counters. A threshold fires when the count of its window is above
// Above; the heaviest fired decides. Deny refuses the claim; challenge
// refuses it unless the claim solves an SMS challenge (ClaimProtection.SMS
// set), which step 5 then checks. Both refusals are a *RiskRefusal with the
// counts, so that the caller can say which rules fired.
type RiskGate struct {
	Observation RiskObservation
	Thresholds  []RiskThreshold
}

// RiskThreshold is one counter rule: Window indexes Observation.Windows.
type RiskThreshold struct {
	Window int
	Above  int64
	Deny   bool // else challenge
}

// RiskRefusal is a claim step refused by its RiskGate. It wraps
// access.ErrRiskDenied (Deny) or access.ErrSMSRequired.
type RiskRefusal struct {
	Deny   bool
	Counts []int64 // of Observation.Windows, in order, the attempt included
}

func (r *RiskRefusal) Error() string {
	if r.Deny {
		return "engine: the risk counters deny the claim"
	}
	return "engine: the risk counters ask for an SMS challenge"
}

func (r *RiskRefusal) Unwrap() error {
	if r.Deny {
		return access.ErrRiskDenied
	}
	return access.ErrSMSRequired
}

// Decide applies the gate's thresholds to counts: 2 deny, 1 challenge,
// 0 neither.
func (g *RiskGate) Decide(counts []int64) int {
	worst := 0
	for _, t := range g.Thresholds {
		if t.Window < 0 || t.Window >= len(counts) || counts[t.Window] <= t.Above {
			continue
		}
		if t.Deny {
			return 2
		}
		worst = 1
	}
	return worst
}

// RateLimit is a generic cell rate algorithm: Rate events per Period on
// average, Burst at once. Key names the limited thing within its batch
// ("batch", "user:alice", …) or, for Allow, globally.
type RateLimit struct {
	Key    string
	What   string // reported in *access.RateLimitedError
	Rate   int
	Period time.Duration
	Burst  int
}

// Interval is the emission interval: the time one event uses up.
func (l RateLimit) Interval() time.Duration {
	return max(l.Period/time.Duration(max(l.Rate, 1)), time.Microsecond)
}

// Validate checks the limit's numbers.
func (l RateLimit) Validate() error {
	if l.Rate < 1 || l.Burst < 1 || l.Period <= 0 || l.Key == "" {
		return fmt.Errorf("engine: rate limit %q: rate %d, burst %d and period %v must be positive", l.Key, l.Rate, l.Burst, l.Period)
	}
	return nil
}

// GCRA decides one event at now against a limit whose theoretical arrival
// time is tat (zero: none yet). It returns the new tat if admitted, or how
// long until the event would be. Engines store tat with an expiry of
// newTAT − now, past which it no longer matters.
func GCRA(l RateLimit, tat, now time.Time) (newTAT time.Time, wait time.Duration, ok bool) {
	interval := l.Interval()
	if tat.Before(now) {
		tat = now
	}
	newTAT = tat.Add(interval)
	allowAt := newTAT.Add(-interval * time.Duration(l.Burst))
	if now.Before(allowAt) {
		return time.Time{}, allowAt.Sub(now), false
	}
	return newTAT, 0, true
}

// SMSCheck names the challenge a claim solves.
type SMSCheck struct {
	ChallengeID string
	CodeHash    string // ChallengeCodeHash of the code the claim gives
	UserID      string
	Phone       string // "": any (the challenge's phone is then the claim's)
	At          time.Time
	// IfChallenged checks the challenge only when the claim's RiskGate
	// challenges it: the claim carries one that nothing else asks for.
	IfChallenged bool
}

// Challenge is an SMS challenge waiting to be solved.
type Challenge struct {
	ID          string
	BatchID     string
	UserID      string
	Phone       string
	CodeHash    string
	ExpiresAt   time.Time
	MaxAttempts int
}

// RiskObservation is one claim attempt for the risk counters.
type RiskObservation struct {
	At       time.Time
	EventID  string // unique per attempt (the claim id)
	UserID   string
	DeviceID string // "": none
	IP       string // "": none
	// Horizon is how long events must be kept for the longest window.
	Horizon time.Duration
	Windows []RiskWindow
}

// RiskWindow is one count ObserveRisk returns.
type RiskWindow struct {
	Counter RiskCounter
	Window  time.Duration
}

// RiskCounter is a sliding-window counter of a device or an IP.
type RiskCounter string

const (
	DeviceUsers  RiskCounter = "device_users"  // distinct user ids of the device
	DeviceClaims RiskCounter = "device_claims" // claim attempts of the device
	IPUsers      RiskCounter = "ip_users"      // distinct user ids of the IP
	IPClaims     RiskCounter = "ip_claims"     // claim attempts of the IP
)

// MaxRiskEvents bounds the events an engine keeps per counter: a count
// reaches at most this.
const MaxRiskEvents = 1000
