package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/engine"
)

// protection is the engine.Protection state of the memory engine. A
// batch's checks run under its batch's mutex (then its own), so they are
// atomic with the claim step; the global state has one mutex. Expired
// entries are swept when a map has doubled since the last sweep, so memory
// stays proportional to what is live.
type protection struct {
	mu      sync.Mutex
	batches map[string]*batchProtection
	// nonces by scope (a key id, or a batch id for claims) → expiry, under
	// nonceMu of their own: claim steps take it, and must not wait for mu.
	nonceMu sync.Mutex
	nonces  expiring
	limits  expiring // global rate limits → theoretical arrival time
	risk    map[string]*riskEvents
	sweep   int // risk observations until the next sweep of stale identities
}

// batchProtection is one batch's part. Lock order: the batch's mutex, then
// its protection's mu, then protection.mu or protection.nonceMu.
type batchProtection struct {
	mu         sync.Mutex
	limits     expiring // limit key → theoretical arrival time
	challenges map[string]*challenge
	ids        map[string]int
	idsLoaded  bool
}

type challenge struct {
	engine.Challenge
	attempts int
}

// batch returns the protection state of a batch, made on first use.
func (p *protection) batch(id string) *batchProtection {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.batches == nil {
		p.batches = make(map[string]*batchProtection)
	}
	bp := p.batches[id]
	if bp == nil {
		bp = &batchProtection{challenges: make(map[string]*challenge), ids: make(map[string]int)}
		p.batches[id] = bp
	}
	return bp
}

// protectedClaim runs the checks of p.Protect, in the order of
// engine.ClaimProtection, then the claim step. The caller holds b.mu and
// has checked that b is active.
func (e *Engine) protectedClaim(b *batch, p engine.ClaimParams) (engine.ClaimResult, error) {
	pr := p.Protect
	if pr.Nonce != "" && pr.NonceTTL <= 0 {
		return engine.ClaimResult{}, fmt.Errorf("memory engine: claim: nonce ttl %v is not positive", pr.NonceTTL)
	}
	for _, l := range pr.Limits {
		if err := l.Validate(); err != nil {
			return engine.ClaimResult{}, err
		}
	}
	bp := e.prot.batch(p.BatchID)
	bp.mu.Lock()
	defer bp.mu.Unlock()
	now := p.At
	if len(pr.Identities) > 0 && !bp.idsLoaded {
		return engine.ClaimResult{}, engine.ErrIdentitiesUnknown
	}
	// Nonces expire by the engine's clock, as UseNonce's do (and Redis's).
	if pr.Nonce != "" && !e.prot.useNonce(p.BatchID, pr.Nonce, e.Now(), pr.NonceTTL) {
		return engine.ClaimResult{}, engine.ErrReplayed
	}
	challenged := false
	if g := pr.Risk; g != nil {
		counts := e.prot.observe(g.Observation)
		switch g.Decide(counts) {
		case 2:
			return engine.ClaimResult{}, &engine.RiskRefusal{Deny: true, Counts: counts}
		case 1:
			if pr.SMS == nil {
				return engine.ClaimResult{}, &engine.RiskRefusal{Counts: counts}
			}
			challenged = true
		}
	}
	_, replay := b.keys[keyID{user: p.UserID, key: p.IdempotencyKey}]
	if !replay || p.IdempotencyKey == "" {
		if err := bp.admit(pr.Limits, now); err != nil {
			return engine.ClaimResult{}, err
		}
		if pr.SMS != nil && (!pr.SMS.IfChallenged || challenged) {
			if err := bp.solve(*pr.SMS, now); err != nil {
				return engine.ClaimResult{}, err
			}
		}
		for _, id := range pr.Identities {
			if bp.ids[id] >= b.limit {
				return engine.ClaimResult{}, engine.ErrLimitReached
			}
		}
	}
	res, err := b.claim(p)
	if err == nil && !res.Replayed {
		for _, id := range pr.Identities {
			bp.ids[id]++
		}
	}
	return res, err
}

// admit decides an attempt against every limit: all must admit it, and
// only then does each count it. The caller holds bp.mu.
func (bp *batchProtection) admit(limits []engine.RateLimit, now time.Time) error {
	var worst time.Duration
	what, refused := "", false
	tats := make([]time.Time, len(limits))
	for i, l := range limits {
		tat, _ := bp.limits.get(l.Key, now)
		newTAT, wait, ok := engine.GCRA(l, tat, now)
		if !ok && (!refused || wait > worst) {
			worst, what, refused = wait, l.What, true
		}
		tats[i] = newTAT
	}
	if refused {
		return &access.RateLimitedError{What: what, After: worst}
	}
	for i, l := range limits {
		bp.limits.set(l.Key, tats[i], now)
	}
	return nil
}

// solve checks an SMS challenge and uses it up; a wrong answer counts an
// attempt. The caller holds bp.mu.
func (bp *batchProtection) solve(s engine.SMSCheck, now time.Time) error {
	c, ok := bp.challenges[s.ChallengeID]
	if !ok {
		return fmt.Errorf("no such challenge (expired, used or never made): %w", engine.ErrSMSInvalid)
	}
	if !now.Before(c.ExpiresAt) {
		delete(bp.challenges, s.ChallengeID)
		return fmt.Errorf("the challenge expired: %w", engine.ErrSMSInvalid)
	}
	if c.UserID != s.UserID || (s.Phone != "" && c.Phone != s.Phone) || c.CodeHash != s.CodeHash {
		c.attempts++
		left := c.MaxAttempts - c.attempts
		if left <= 0 {
			delete(bp.challenges, s.ChallengeID)
			left = 0
		}
		return fmt.Errorf("wrong code, %d attempts left: %w", left, engine.ErrSMSInvalid)
	}
	delete(bp.challenges, s.ChallengeID)
	return nil
}

// UseNonce remembers nonce in scope until ttl passes.
func (e *Engine) UseNonce(_ context.Context, scope, nonce string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory engine: nonce ttl %v is not positive", ttl)
	}
	if !e.prot.useNonce(scope, nonce, e.Now(), ttl) {
		return engine.ErrReplayed
	}
	return nil
}

// useNonce remembers nonce in scope until now+ttl; false if it is
// remembered already. A claim step calls it under its batch's mutexes,
// which the lock order allows (they come before mu).
func (p *protection) useNonce(scope, nonce string, now time.Time, ttl time.Duration) bool {
	key := scope + "\x00" + nonce
	p.nonceMu.Lock()
	defer p.nonceMu.Unlock()
	if _, seen := p.nonces.get(key, now); seen {
		return false
	}
	p.nonces.set(key, now.Add(ttl), now)
	return true
}

// Allow decides one event of a global rate limit.
func (e *Engine) Allow(_ context.Context, key string, l engine.RateLimit, at time.Time) error {
	if err := l.Validate(); err != nil {
		return err
	}
	p := &e.prot
	p.mu.Lock()
	defer p.mu.Unlock()
	tat, _ := p.limits.get(key, at)
	newTAT, wait, ok := engine.GCRA(l, tat, at)
	if !ok {
		return &access.RateLimitedError{What: l.What, After: wait}
	}
	p.limits.set(key, newTAT, at)
	return nil
}

// PutChallenge stores the challenge until it expires.
func (e *Engine) PutChallenge(_ context.Context, c engine.Challenge) error {
	now := e.Now()
	if !c.ExpiresAt.After(now) || c.MaxAttempts < 1 {
		return fmt.Errorf("memory engine: challenge %s: expiry %v and max attempts %d must be in the future and positive",
			c.ID, c.ExpiresAt, c.MaxAttempts)
	}
	bp := e.prot.batch(c.BatchID)
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if len(bp.challenges) >= 1024 && len(bp.challenges)%1024 == 0 {
		for id, old := range bp.challenges {
			if !now.Before(old.ExpiresAt) {
				delete(bp.challenges, id)
			}
		}
	}
	bp.challenges[c.ID] = &challenge{Challenge: c}
	return nil
}

// LoadIdentities sets the batch's identity counts unless they are loaded.
func (e *Engine) LoadIdentities(_ context.Context, batchID string, counts map[string]int) error {
	bp := e.prot.batch(batchID)
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if bp.idsLoaded {
		return nil
	}
	bp.ids = make(map[string]int, len(counts))
	for id, n := range counts {
		if n > 0 {
			bp.ids[id] = n
		}
	}
	bp.idsLoaded = true
	return nil
}

// ReleaseIdentities lowers each identity's count by one.
func (e *Engine) ReleaseIdentities(_ context.Context, batchID string, identities []string) error {
	bp := e.prot.batch(batchID)
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if !bp.idsLoaded {
		return nil
	}
	for _, id := range identities {
		if n := bp.ids[id]; n <= 1 {
			delete(bp.ids, id)
		} else {
			bp.ids[id] = n - 1
		}
	}
	return nil
}

// riskEvents are the recent claim attempts of one device or IP.
type riskEvents struct {
	users  map[string]time.Time // user → last attempt
	claims []time.Time          // attempts, oldest first
	last   time.Time
}

// ObserveRisk records the attempt for its device and its IP and counts.
func (e *Engine) ObserveRisk(_ context.Context, o engine.RiskObservation) ([]int64, error) {
	return e.prot.observe(o), nil
}

// FoldsRisk is true: a claim step observes its risk counters under the
// protection's mutex, which the lock order allows.
func (e *Engine) FoldsRisk() bool { return true }

// observe is ObserveRisk.
func (p *protection) observe(o engine.RiskObservation) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.risk == nil {
		p.risk = make(map[string]*riskEvents)
	}
	horizon := max(o.Horizon, time.Millisecond)
	p.sweep--
	if p.sweep <= 0 {
		for k, ev := range p.risk {
			if ev.last.Before(o.At.Add(-horizon)) {
				delete(p.risk, k)
			}
		}
		p.sweep = max(1024, len(p.risk))
	}
	observe := func(key string) *riskEvents {
		ev := p.risk[key]
		if ev == nil {
			ev = &riskEvents{users: make(map[string]time.Time)}
			p.risk[key] = ev
		}
		ev.record(o.UserID, o.At, horizon)
		return ev
	}
	var device, ip *riskEvents
	if o.DeviceID != "" {
		device = observe("d\x00" + o.DeviceID)
	}
	if o.IP != "" {
		ip = observe("i\x00" + o.IP)
	}
	out := make([]int64, len(o.Windows))
	for i, w := range o.Windows {
		from := o.At.Add(-w.Window)
		switch {
		case w.Counter == engine.DeviceUsers && device != nil:
			out[i] = device.countUsers(from)
		case w.Counter == engine.DeviceClaims && device != nil:
			out[i] = device.countClaims(from)
		case w.Counter == engine.IPUsers && ip != nil:
			out[i] = ip.countUsers(from)
		case w.Counter == engine.IPClaims && ip != nil:
			out[i] = ip.countClaims(from)
		}
	}
	return out
}

func (ev *riskEvents) record(user string, at time.Time, horizon time.Duration) {
	ev.users[user] = at
	i, _ := slices.BinarySearchFunc(ev.claims, at, func(a, b time.Time) int {
		if a.After(b) {
			return 1
		}
		return -1 // equal times go after the ones held
	})
	ev.claims = slices.Insert(ev.claims, i, at)
	if at.After(ev.last) {
		ev.last = at
	}
	old := at.Add(-horizon)
	// Forget what is older than the horizon, and beyond MaxRiskEvents the
	// oldest: a count reaches at most the cap.
	drop := 0
	for drop < len(ev.claims) && ev.claims[drop].Before(old) {
		drop++
	}
	drop = max(drop, len(ev.claims)-engine.MaxRiskEvents)
	if drop > 0 {
		ev.claims = slices.Delete(ev.claims, 0, drop)
	}
	if len(ev.users) > engine.MaxRiskEvents {
		for u, t := range ev.users {
			if t.Before(old) {
				delete(ev.users, u)
			}
		}
		for len(ev.users) > engine.MaxRiskEvents {
			oldest, first := "", true
			var ot time.Time
			for u, t := range ev.users {
				if first || t.Before(ot) {
					oldest, ot, first = u, t, false
				}
			}
			delete(ev.users, oldest)
		}
	}
}

func (ev *riskEvents) countUsers(from time.Time) int64 {
	var n int64
	for _, t := range ev.users {
		if t.After(from) {
			n++
		}
	}
	return n
}

func (ev *riskEvents) countClaims(from time.Time) int64 {
	i, _ := slices.BinarySearchFunc(ev.claims, from, func(a, b time.Time) int {
		if a.After(b) {
			return 1
		}
		return -1
	})
	return int64(len(ev.claims) - i)
}

// expiring is a map of keys to times, each live while its time is after
// now; expired keys are swept when the map has doubled since the last sweep.
type expiring struct {
	m       map[string]time.Time
	sweepAt int
}

func (x *expiring) get(key string, now time.Time) (time.Time, bool) {
	t, ok := x.m[key]
	if !ok || !t.After(now) {
		return time.Time{}, false
	}
	return t, true
}

func (x *expiring) set(key string, t, now time.Time) {
	if x.m == nil {
		x.m = make(map[string]time.Time)
	}
	if len(x.m) >= x.sweepAt {
		for k, v := range x.m {
			if !v.After(now) {
				delete(x.m, k)
			}
		}
		x.sweepAt = max(1024, 2*len(x.m))
	}
	x.m[key] = t
}
