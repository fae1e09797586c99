package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/sms"
	"github.com/coupond/coupond/store"
)

// claimProtection is one claim's anti-fraud checks. Those that read only
// this process's memory (the lists) and an external risk service run in
// protectClaim, before the engine step; those whose state is the batch's
// (the request's nonce, rate limits, the SMS challenge, counts per phone or
// device) run inside the engine step, atomically with it and in its round
// trip (step). The risk counters of the claim's device and IP go into the
// step too where the engine can fold them in (engine.RiskGate); otherwise
// (Redis Cluster, a rule set that asks the external service) they are
// observed before it, in a round trip of their own. It also remembers what a refusal records and what
// undoing the claim must release.
type claimProtection struct {
	batch      *coupon.Batch
	ids        access.Identities
	ip         string
	step       *engine.ClaimProtection // nil: nothing for the step, or sent already
	identities []string                // counted by the step
	counted    bool                    // the step counted them for a claim that may yet fail
	device     bool                    // the claim's device is to be recorded for the batch's counts
	risk       *riskFold               // the risk rules the step applies, to word its refusal
}

// riskFold is what a claim step's risk gate decides with: the rule set and
// the facts known before the step, to which the step adds its counts.
type riskFold struct {
	rules   *risk.RuleSet
	facts   risk.Facts
	windows []risk.Window
}

// Limits of a claim's protection inputs.
const (
	maxDeviceIDBytes    = 128
	maxChallengeIDBytes = 64
)

// protectClaim runs the checks of a claim that come before the engine
// step, and prepares those of the step. req.Grant skips the checks that
// guard users' own requests (SMS, rate limits, risk rules); lists and the
// per-user limit across identities still apply.
func (s *Service) protectClaim(ctx context.Context, b *coupon.Batch, req *ClaimRequest, now time.Time) (*claimProtection, error) {
	p := &claimProtection{batch: b}
	if err := p.identify(req, now); err != nil {
		return nil, err
	}
	a := s.acc
	pr := b.Protection

	// Lists: in this process's replica, no round trip.
	if kind, ok := a.lists.Match(access.GlobalScope, access.Blacklist, p.ids); ok {
		return p, fmt.Errorf("the claim's %s is on the global blacklist: %w", kind, access.ErrBlocked)
	}
	if kind, ok := a.lists.Match(b.ID, access.Blacklist, p.ids); ok {
		return p, fmt.Errorf("the claim's %s is on the batch's blacklist: %w", kind, access.ErrBlocked)
	}
	_, trusted := a.lists.Match(access.GlobalScope, access.Whitelist, p.ids)
	if pr.WhitelistOnly && !trusted {
		if _, ok := a.lists.Match(b.ID, access.Whitelist, p.ids); !ok {
			return p, fmt.Errorf("none of the claim's user, phone, device or IP is on the batch's whitelist: %w", access.ErrNotWhitelisted)
		}
	}

	step := engine.ClaimProtection{}
	if req.Nonce != "" {
		step.Nonce, step.NonceTTL = req.Nonce, s.nonceTTL()
	}
	if !req.Grant {
		needSMS, why := pr.RequireSMS, "the batch requires one"
		// Identities on the global whitelist are trusted: no risk rules.
		if pr.RiskRules != "" && !trusted && a.cfg.RiskOn() {
			d, err := s.assess(ctx, b, req, p, now, needSMS)
			if err != nil {
				return p, err
			}
			switch d.Action {
			case risk.Deny:
				return p, fmt.Errorf("%s: %w", d.Reason(), access.ErrRiskDenied)
			case risk.Challenge:
				needSMS = true
				why = "the risk rules ask for one (" + d.Reason() + ")"
			}
		}
		if needSMS && req.SMSChallengeID == "" {
			return p, fmt.Errorf("%s: %w", why, access.ErrSMSRequired)
		}
		if p.risk != nil {
			step.Risk = p.risk.gate(req, p, now)
		}
		// A challenge nothing asks for yet is checked if the step's risk
		// gate asks for one.
		if needSMS || (step.Risk != nil && req.SMSChallengeID != "") {
			step.SMS = &engine.SMSCheck{ChallengeID: req.SMSChallengeID, CodeHash: challengeHash(req.SMSChallengeID, req.SMSCode),
				UserID: req.UserID, Phone: p.ids.Phone, At: now, IfChallenged: !needSMS}
		}
		step.Limits = rateLimits(b.ID, pr.RateLimits, p)
	}
	if pr.Counts(coupon.IdentityPhone) && p.ids.Phone != "" {
		p.identities = append(p.identities, "phone:"+p.ids.Phone)
	}
	if pr.Counts(coupon.IdentityDevice) && p.ids.DeviceID != "" {
		p.identities = append(p.identities, "device:"+p.ids.DeviceID)
		p.device = true
	}
	step.Identities = p.identities
	if step.Nonce != "" || len(step.Limits) > 0 || step.SMS != nil || len(step.Identities) > 0 || step.Risk != nil {
		p.step = &step
	}
	return p, nil
}

// identify validates and normalizes the identities of a claim.
func (p *claimProtection) identify(req *ClaimRequest, now time.Time) error {
	var v coupon.Validation
	p.ids.UserID = req.UserID
	if req.Phone != "" {
		p.ids.Phone = access.NormalizePhone(req.Phone) // Claimant.Validate checked it
	}
	if d := req.DeviceID; d != "" {
		if len(d) > maxDeviceIDBytes || !utf8.ValidString(d) || hasControl(d) {
			v.Add("device_id", "must be 1 to 128 bytes of printable UTF-8")
		}
		p.ids.DeviceID = d
	}
	if req.IP != "" {
		addr, err := netip.ParseAddr(req.IP)
		if err != nil {
			v.Add("ip", "must be an IPv4 or IPv6 address")
		} else {
			p.ids.IP = addr.Unmap().WithZone("")
			p.ip = p.ids.IP.String()
		}
	}
	if req.SMSChallengeID != "" || req.SMSCode != "" {
		if len(req.SMSChallengeID) == 0 || len(req.SMSChallengeID) > maxChallengeIDBytes || !printableASCII(req.SMSChallengeID) {
			v.Add("sms_challenge_id", "must be the id of a challenge (POST /v1/sms/challenges)")
		}
		if len(req.SMSCode) != sms.CodeDigits || !digits(req.SMSCode) {
			v.Addf("sms_code", "must be the %d digits of the code", sms.CodeDigits)
		}
	}
	if !req.AccountCreatedAt.IsZero() && req.AccountCreatedAt.After(now.Add(time.Minute)) {
		v.Add("account_created_at", "must not be in the future")
	}
	return v.Err()
}

// rateLimits are a batch's limits that apply to a claim, keyed within the
// batch.
func rateLimits(batchID string, rl coupon.RateLimits, p *claimProtection) []engine.RateLimit {
	var out []engine.RateLimit
	add := func(l *coupon.RateLimit, what, key string) {
		if l == nil {
			return
		}
		n := l.Normalized()
		out = append(out, engine.RateLimit{Key: key, What: what, Rate: n.Rate, Period: time.Duration(n.Period) * time.Second, Burst: n.Burst})
	}
	add(rl.Batch, "batch", "batch")
	add(rl.User, "user", "user:"+p.ids.UserID)
	if p.ids.DeviceID != "" {
		add(rl.Device, "device", "device:"+p.ids.DeviceID)
	}
	if p.ip != "" {
		add(rl.IP, "ip", "ip:"+p.ip)
	}
	return out
}

// assess applies the batch's risk rules: the sliding-window counters of the
// claim's device and IP, the account's age, then the external service if
// the rule set asks for it. The counters are observed in the claim step
// (p.risk is set, and the decision is that of the other rules) when the
// engine can fold them in and the claim will reach the step; otherwise in
// a round trip of their own, here. needSMS: something else asks the claim
// for an SMS challenge.
func (s *Service) assess(ctx context.Context, b *coupon.Batch, req *ClaimRequest, p *claimProtection, now time.Time, needSMS bool) (risk.Decision, error) {
	allow := risk.Decision{Action: risk.Allow}
	rs, err := s.ruleSet(ctx, b.Protection.RiskRules)
	if err != nil {
		return allow, err
	}
	if rs == nil {
		s.log.WarnContext(ctx, "the batch's risk rule set does not exist; no rules applied", "batch", b.ID, "rule_set", b.Protection.RiskRules)
		return allow, nil
	}
	hasDevice, hasIP := p.ids.DeviceID != "", p.ip != ""
	facts := risk.Facts{HasDevice: hasDevice, HasIP: hasIP, AccountAge: -1, Counts: map[risk.Window]int64{}}
	if !req.AccountCreatedAt.IsZero() {
		facts.AccountAge = max(now.Sub(req.AccountCreatedAt), 0)
	}
	windows := rs.Windows(hasDevice, hasIP)
	if len(windows) > 0 && !(rs.External && s.acc.cfg.Risk != nil) && s.engine.FoldsRisk() {
		// Folded only when the claim reaches the step: a claim refused
		// before it is observed here, as it always was.
		pre := rs.Evaluate(facts) // no counts yet: the other rules
		smsNeeded := needSMS || pre.Action == risk.Challenge
		if pre.Action != risk.Deny && (!smsNeeded || req.SMSChallengeID != "") {
			p.risk = &riskFold{rules: rs, facts: facts, windows: windows}
			return pre, nil
		}
	}
	if len(windows) > 0 {
		ew := make([]engine.RiskWindow, len(windows))
		for i, w := range windows {
			ew[i] = engine.RiskWindow{Counter: engine.RiskCounter(w.Signal), Window: w.Window}
		}
		counts, err := s.engine.ObserveRisk(ctx, engine.RiskObservation{At: now, EventID: coupon.NewID(now),
			UserID: req.UserID, DeviceID: p.ids.DeviceID, IP: p.ip, Horizon: risk.MaxWindow, Windows: ew})
		if err != nil {
			return allow, unavailable("risk counters", err)
		}
		for i, w := range windows {
			facts.Counts[w] = counts[i]
		}
	}
	d := rs.Evaluate(facts)
	if x := s.acc.cfg.Risk; rs.External && x != nil {
		signals := make(map[string]int64, len(facts.Counts))
		for w, n := range facts.Counts {
			signals[fmt.Sprintf("%s/%d", w.Signal, int64(w.Window/time.Second))] = n
		}
		age := int64(-1)
		if facts.AccountAge >= 0 {
			age = int64(facts.AccountAge / time.Second)
		}
		v, err := x.Assess(ctx, risk.Assessment{BatchID: b.ID, MerchantID: b.MerchantID, UserID: req.UserID, Phone: p.ids.Phone,
			DeviceID: p.ids.DeviceID, IP: p.ip, AccountAge: age, Signals: signals, Local: d.Action})
		switch {
		case err != nil && x.FailOpen():
			s.log.WarnContext(ctx, "risk service failed; the local rules decide (fail-open)", "batch", b.ID, "err", err)
		case err != nil:
			return allow, fmt.Errorf("risk service (fail-closed): %w", err)
		case v.Action != risk.Allow:
			d.Action = risk.Worse(d.Action, v.Action)
			d.Reasons = append(d.Reasons, "the risk service says "+string(v.Action)+": "+v.Reason)
		}
	}
	return d, nil
}

// gate is the claim step's risk gate: the observation of the claim's
// device and IP, and the thresholds of the rule set's counter rules.
func (f *riskFold) gate(req *ClaimRequest, p *claimProtection, now time.Time) *engine.RiskGate {
	g := &engine.RiskGate{Observation: engine.RiskObservation{At: now, EventID: coupon.NewID(now), UserID: req.UserID,
		DeviceID: p.ids.DeviceID, IP: p.ip, Horizon: risk.MaxWindow, Windows: make([]engine.RiskWindow, len(f.windows))}}
	for i, w := range f.windows {
		g.Observation.Windows[i] = engine.RiskWindow{Counter: engine.RiskCounter(w.Signal), Window: w.Window}
	}
	for _, r := range f.rules.Rules {
		if !r.Signal.Counter() {
			continue
		}
		i := slices.Index(f.windows, risk.Window{Signal: r.Signal, Window: time.Duration(r.Window) * time.Second})
		if i < 0 { // the claim lacks the rule's identity
			continue
		}
		g.Thresholds = append(g.Thresholds, engine.RiskThreshold{Window: i, Above: int64(r.Above), Deny: r.Action == risk.Deny})
	}
	return g
}

// refusal words the refusal of a claim step's risk gate as the rules that
// fired.
func (f *riskFold) refusal(r *engine.RiskRefusal) error {
	facts := f.facts
	facts.Counts = make(map[risk.Window]int64, len(f.windows))
	for i, w := range f.windows {
		if i < len(r.Counts) {
			facts.Counts[w] = r.Counts[i]
		}
	}
	d := f.rules.Evaluate(facts)
	if r.Deny {
		return fmt.Errorf("%s: %w", d.Reason(), access.ErrRiskDenied)
	}
	return fmt.Errorf("the risk rules ask for one (%s): %w", d.Reason(), access.ErrSMSRequired)
}

// claimStep is the engine's claim step with the claim's protection. The
// checks run with the first attempt that reaches the batch; later attempts
// of the same claim (after a refill, a store conflict) are not checked
// again. Identity counts the engine lacks are loaded from the store.
func (s *Service) claimStep(ctx context.Context, p engine.ClaimParams, prot *claimProtection) (engine.ClaimResult, error) {
	if prot == nil || prot.step == nil {
		return s.engine.Claim(ctx, p)
	}
	p.Protect = prot.step
	res, err := s.engine.Claim(ctx, p)
	if errors.Is(err, engine.ErrIdentitiesUnknown) {
		if err = s.loadIdentities(ctx, p.BatchID); err == nil {
			res, err = s.engine.Claim(ctx, p)
		}
	}
	if errors.Is(err, engine.ErrUnknownBatch) || errors.Is(err, engine.ErrIdentitiesUnknown) {
		return res, err // nothing was checked: the next attempt checks
	}
	prot.step = nil
	if rr, ok := errors.AsType[*engine.RiskRefusal](err); ok && prot.risk != nil {
		return res, prot.risk.refusal(rr)
	}
	if err == nil && !res.Replayed && len(prot.identities) > 0 {
		prot.counted = true
	}
	return res, err
}

// loadIdentities loads a batch's identity counts from the store into the
// engine, once per batch at a time in this process.
func (s *Service) loadIdentities(ctx context.Context, batchID string) error {
	_, _, err := s.acc.identityLoads.do(ctx, batchID, func() (struct{}, error) {
		counts, err := s.store.IdentityCounts(ctx, batchID)
		if err != nil {
			return struct{}{}, unavailable("identity counts", err)
		}
		return struct{}{}, s.engine.LoadIdentities(ctx, batchID, counts)
	})
	return err
}

// finishProtection follows a claim's outcome: a refusal is recorded for
// operators; identities counted for a claim that did not commit are
// released; the device of a committed claim is recorded for the batch's
// counts.
func (s *Service) finishProtection(ctx context.Context, p *claimProtection, req *ClaimRequest, c *coupon.Claim, replayed bool, err error) {
	if p == nil {
		return
	}
	if err != nil {
		if p.counted {
			if rerr := s.engine.ReleaseIdentities(context.WithoutCancel(ctx), p.batch.ID, p.identities); rerr != nil {
				s.log.WarnContext(ctx, "releasing the identity counts of a failed claim failed", "batch", p.batch.ID, "err", rerr)
			}
		}
		if access.IsRefusal(err) {
			s.RecordRefusal(ctx, access.Refusal{Code: coupon.ErrorCode(err), Reason: err.Error(), BatchID: p.batch.ID,
				MerchantID: p.batch.MerchantID, UserID: req.UserID, Phone: p.ids.Phone, DeviceID: p.ids.DeviceID, IP: p.ip})
		}
		return
	}
	if p.device && !replayed && c != nil {
		s.acc.devices.add(store.ClaimDevice{BatchID: p.batch.ID, ClaimID: c.ID, DeviceID: p.ids.DeviceID})
	}
}

// spendNonce uses up the nonce of a signed claim that failed, in the scope
// the claim step uses (the batch's id): a claim refused before its step
// (by a list, a risk rule, validation, a paused batch…) would otherwise
// leave its nonce unused, and the same signed request, replayed within the
// clock skew once the refusal no longer holds, would claim. Only failures
// pay for the round trip; a nonce the step used already answers replayed,
// which is ignored.
func (s *Service) spendNonce(ctx context.Context, req *ClaimRequest, err error) {
	if err == nil || errors.Is(err, access.ErrReplayed) || !coupon.ValidID(req.BatchID) {
		return
	}
	uerr := s.engine.UseNonce(context.WithoutCancel(ctx), req.BatchID, req.Nonce, s.nonceTTL())
	if uerr != nil && !errors.Is(uerr, engine.ErrReplayed) {
		s.log.WarnContext(ctx, "using up the nonce of a refused signed claim failed", "batch", req.BatchID, "err", uerr)
	}
}

// checkProtection checks a new batch's protection against what exists:
// its risk rule set.
func (s *Service) checkProtection(ctx context.Context, spec *coupon.BatchSpec) error {
	name := spec.Protection.RiskRules
	if name == "" {
		return nil
	}
	rs, err := s.ruleSet(ctx, name)
	if err != nil {
		return err
	}
	if rs == nil {
		var v coupon.Validation
		v.Addf("protection.risk_rules", "names no rule set (create %q with PUT /v1/risk/rule-sets/%s)", name, name)
		return v.Err()
	}
	return nil
}

// challengeHash is what the engine keeps of a challenge's code: the code
// never leaves this process in clear but to the SMS sender.
func challengeHash(id, code string) string {
	sum := sha256.Sum256([]byte("coupond sms\x00" + id + "\x00" + code))
	return hex.EncodeToString(sum[:])
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
