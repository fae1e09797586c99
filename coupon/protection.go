package coupon

import (
	"fmt"
	"slices"
)

// Protection is how a batch guards its claims against scripts, farms of
// accounts and replays: an SMS challenge, a whitelist, rate limits, a risk
// rule set, and a per-user limit that counts a phone or a device used by
// several user ids as one person. The zero value protects nothing beyond
// the global lists, which every batch honours.
type Protection struct {
	RequireSMS    bool     `json:"require_sms,omitempty" doc:"every claim must carry a solved SMS challenge (POST /v1/sms/challenges) for the claiming user's phone"`
	WhitelistOnly bool     `json:"whitelist_only,omitempty" doc:"only identities on the batch's whitelist (or the global one) may claim: the user id, phone, device or IP of the claim"`
	RiskRules     string   `json:"risk_rules,omitempty" maxLength:"64" doc:"name of the risk rule set applied to claims (PUT /v1/risk/rule-sets/{name}); empty: none"`
	CountAcross   []string `json:"count_across,omitempty" maxItems:"2" doc:"identities the per-user limit also counts across user ids: phone, device. A phone or device that reached the limit under any user id is refused limit_reached"`

	RateLimits RateLimits `json:"rate_limits,omitzero" doc:"claim attempts admitted per user, device, IP and for the whole batch"`
}

// RateLimits are a batch's rate limits; a nil one does not limit.
type RateLimits struct {
	Batch  *RateLimit `json:"batch,omitempty" doc:"ceiling of claim attempts for the whole batch (a hot batch's claims per second)"`
	User   *RateLimit `json:"user,omitempty" doc:"claim attempts per user id"`
	Device *RateLimit `json:"device,omitempty" doc:"claim attempts per device id"`
	IP     *RateLimit `json:"ip,omitempty" doc:"claim attempts per IP address"`
}

// RateLimit admits Rate events per Period seconds on average, and up to
// Burst at once (default: Rate, at least 1). It is a generic cell rate
// algorithm: an event is admitted when it is no more than Burst emission
// intervals early.
type RateLimit struct {
	Rate   int `json:"rate" minimum:"1" maximum:"1000000" doc:"events per period"`
	Period int `json:"period_seconds,omitempty" minimum:"0" maximum:"86400" doc:"length of the period in seconds; default 1"`
	Burst  int `json:"burst,omitempty" minimum:"0" maximum:"1000000" doc:"events admitted at once; default rate"`
}

// Identities the per-user limit can count across.
const (
	IdentityPhone  = "phone"
	IdentityDevice = "device"
)

// MaxRuleSetName bounds a risk rule set's name.
const MaxRuleSetName = 64

// Normalized fills a rate limit's defaults.
func (l RateLimit) Normalized() RateLimit {
	if l.Period == 0 {
		l.Period = 1
	}
	if l.Burst == 0 {
		l.Burst = max(l.Rate, 1)
	}
	return l
}

// Active reports whether the batch asks for any check of its own.
func (p Protection) Active() bool {
	return p.RequireSMS || p.WhitelistOnly || p.RiskRules != "" || len(p.CountAcross) > 0 || p.RateLimits != (RateLimits{})
}

// Counts reports whether the per-user limit counts across identity.
func (p Protection) Counts(identity string) bool { return slices.Contains(p.CountAcross, identity) }

func (p *Protection) validate(v *Validation) {
	if p.RiskRules != "" && !ValidRuleSetName(p.RiskRules) {
		v.Add("protection.risk_rules", "must be 1 to 64 characters of a-z, 0-9, '-' and '_'")
	}
	for i, id := range p.CountAcross {
		f := fmt.Sprintf("protection.count_across[%d]", i)
		switch {
		case id != IdentityPhone && id != IdentityDevice:
			v.Add(f, "must be phone or device")
		case slices.Contains(p.CountAcross[:i], id):
			v.Addf(f, "repeats %q", id)
		}
	}
	for _, l := range []struct {
		name string
		l    *RateLimit
	}{{"batch", p.RateLimits.Batch}, {"user", p.RateLimits.User}, {"device", p.RateLimits.Device}, {"ip", p.RateLimits.IP}} {
		if l.l == nil {
			continue
		}
		f := "protection.rate_limits." + l.name
		if l.l.Rate < 1 || l.l.Rate > 1_000_000 {
			v.Add(f+".rate", "must be between 1 and 1000000")
		}
		if l.l.Period < 0 || l.l.Period > 86400 {
			v.Add(f+".period_seconds", "must be between 1 and 86400 (0: 1)")
		}
		if l.l.Burst < 0 || l.l.Burst > 1_000_000 {
			v.Add(f+".burst", "must be between 1 and 1000000 (0: rate)")
		}
	}
}

// ValidRuleSetName reports whether s can name a risk rule set: 1 to 64
// characters of a-z, 0-9, '-' and '_'.
func ValidRuleSetName(s string) bool {
	if s == "" || len(s) > MaxRuleSetName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
