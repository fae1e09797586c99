package coupon

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Type is what a batch's coupons take off an order.
type Type string

const (
	TypeCash      Type = "cash"      // amount off
	TypeThreshold Type = "threshold" // spend MinSpend, get amount off
	TypePercent   Type = "percent"   // PercentOff off, at most amount
	TypeShipping  Type = "shipping"  // free shipping, at most amount
)

// Status is where a batch is in its life: draft → active ⇄ paused → ended.
type Status string

const (
	StatusDraft  Status = "draft"
	StatusActive Status = "active"
	StatusPaused Status = "paused"
	StatusEnded  Status = "ended"
)

// Transition is a change of a batch's status asked for by an operator.
type Transition string

const (
	Publish Transition = "publish"
	Pause   Transition = "pause"
	Resume  Transition = "resume"
	End     Transition = "end"
)

// From returns the statuses the transition may start from and the status it leads to.
func (t Transition) From() (from []Status, to Status) {
	switch t {
	case Publish:
		return []Status{StatusDraft}, StatusActive
	case Pause:
		return []Status{StatusActive}, StatusPaused
	case Resume:
		return []Status{StatusPaused}, StatusActive
	case End:
		return []Status{StatusDraft, StatusActive, StatusPaused}, StatusEnded
	}
	return nil, ""
}

// Limits of a batch's configuration.
const (
	MaxNameLength      = 200
	MaxAdCopyLength    = 2000
	MaxPerUserLimit    = 1000
	MaxTotalQuantity   = 100_000_000
	MaxValidityDays    = 3650
	MaxPlatforms       = 16
	MaxRules           = 1000
	MaxIdentifierBytes = 128 // user ids, merchant ids, channels, rule refs
)

// BatchSpec is the part of a batch its owner configures.
type BatchSpec struct {
	Name       string `json:"name" minLength:"1" maxLength:"200" doc:"name shown to operators"`
	MerchantID string `json:"merchant_id,omitempty" maxLength:"128" doc:"merchant that owns the batch; empty for a platform batch"`
	Type       Type   `json:"type,omitempty" enum:"cash,threshold,percent,shipping" doc:"cash (amount off, the default), threshold (spend min_spend, get amount off), percent (percent_off off, at most amount), shipping (free shipping, at most amount)"`

	// Claim attributes.
	TotalQuantity  int64     `json:"total_quantity" minimum:"1" maximum:"100000000" doc:"codes in the batch"`
	PerUserLimit   int       `json:"per_user_limit,omitempty" minimum:"1" maximum:"1000" doc:"claims one user may hold; default 1"`
	ClaimStart     time.Time `json:"claim_start,omitzero" doc:"start of the claim window (RFC 3339); default: when published"`
	ClaimEnd       time.Time `json:"claim_end,omitzero" doc:"end of the claim window, exclusive (RFC 3339); default: none"`
	ClaimPlatforms []string  `json:"claim_platforms,omitempty" maxItems:"16" doc:"platforms a claim may come from; empty: any"`
	Channel        string    `json:"channel,omitempty" maxLength:"128" doc:"distribution channel recorded on claims"`
	AdCopy         string    `json:"ad_copy,omitempty" maxLength:"2000" doc:"text shown to users"`

	// Usage attributes.
	Validity       Validity   `json:"validity" doc:"how long a claimed coupon can be used"`
	Amount         AmountSpec `json:"amount" doc:"value of each code, minor units"`
	MinSpend       int64      `json:"min_spend,omitempty" minimum:"0" doc:"smallest order total the coupon applies to, minor units (required for threshold)"`
	PercentOff     int        `json:"percent_off,omitempty" minimum:"0" maximum:"99" doc:"percent taken off (percent type)"`
	UsagePlatforms []string   `json:"usage_platforms,omitempty" maxItems:"16" doc:"platforms a coupon may be redeemed on; empty: any"`

	CodeFormat CodeFormat `json:"code_format,omitzero" doc:"look of generated codes"`
	Rules      []Rule     `json:"rules,omitempty" maxItems:"1000" doc:"redemption rules"`

	BatchOptions
}

// BatchOptions are the settings of a batch that no query filters on; stores
// keep them together in one JSON column, so adding one needs no migration.
type BatchOptions struct {
	Source         CodeSource `json:"source,omitempty" enum:"internal,external" doc:"internal: coupond generates the codes (default); external: codes are imported from a partner"`
	Generation     Generation `json:"generation,omitzero" doc:"how internal codes are generated"`
	TriggerSubject string     `json:"trigger_subject,omitempty" maxLength:"200" doc:"NATS subject whose events grant this batch to the event's user, e.g. user.registered"`

	Redemption RedemptionOptions `json:"redemption,omitzero" doc:"how the batch's coupons are redeemed: refund policy, reservation timeout, order system, per-order limit"`

	Protection Protection `json:"protection,omitzero" doc:"anti-fraud checks of the batch's claims: SMS challenge, whitelist, rate limits, risk rules, per-user limit across phones and devices"`
}

// CodeSource says where a batch's codes come from.
type CodeSource string

const (
	SourceInternal CodeSource = "internal"
	SourceExternal CodeSource = "external"
)

// Generation says how internal codes are generated: all at publication
// (full), or in chunks whenever the pool runs low (incremental).
type Generation struct {
	Mode     GenerationMode `json:"mode,omitempty" enum:"full,incremental" doc:"full: every code at publication; incremental: chunks when the pool runs low. Default: full up to 100,000 codes"`
	Chunk    int            `json:"chunk,omitempty" minimum:"0" maximum:"1000000" doc:"codes per chunk (incremental); default 10,000"`
	LowWater int            `json:"low_water,omitempty" minimum:"0" maximum:"1000000" doc:"generate a chunk when the pool holds fewer codes (incremental); default half a chunk"`
}

// GenerationMode is full or incremental.
type GenerationMode string

const (
	GenerationFull        GenerationMode = "full"
	GenerationIncremental GenerationMode = "incremental"
)

// Defaults of generation.
const (
	FullGenerationMax    = 100_000 // above this, incremental by default
	DefaultChunk         = 10_000
	MaxFullTotalQuantity = 1_000_000 // full generation writes every code inside the publish request
)

// Validity is how long a claimed coupon can be used: Days from the claim, or
// the absolute window [Start, End).
type Validity struct {
	Days  int       `json:"days,omitempty" minimum:"0" maximum:"3650" doc:"days from the claim"`
	Start time.Time `json:"start,omitzero" doc:"absolute start (RFC 3339)"`
	End   time.Time `json:"end,omitzero" doc:"absolute end, exclusive (RFC 3339)"`
}

// Window returns the validity of a coupon claimed at t.
func (v Validity) Window(t time.Time) (from, to time.Time) {
	if v.Days > 0 {
		return t, t.AddDate(0, 0, v.Days)
	}
	return v.Start, v.End
}

// Batch is one campaign's coupons.
type Batch struct {
	ID string `json:"id"`
	BatchSpec
	Status Status `json:"status"`
	// Version counts the changes of the configuration: 1 at creation, one
	// more at each edit of the draft. Status changes and codes leave it.
	Version         int64     `json:"version"`
	GeneratedCount  int64     `json:"generated_count"`
	GeneratedAmount int64     `json:"generated_amount" doc:"sum of the amounts of the generated codes"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// Normalize fills defaults and converts times to UTC at microsecond precision,
// the precision every store keeps.
func (s *BatchSpec) Normalize() {
	if s.Type == "" {
		s.Type = TypeCash
	}
	if s.PerUserLimit == 0 {
		s.PerUserLimit = 1
	}
	if s.CodeFormat.Length == 0 {
		s.CodeFormat.Length = DefaultCodeLength
	}
	if s.Source == "" {
		s.Source = SourceInternal
	}
	if s.Source == SourceInternal {
		g := &s.Generation
		if g.Mode == "" {
			g.Mode = GenerationFull
			if s.TotalQuantity > FullGenerationMax {
				g.Mode = GenerationIncremental
			}
		}
		if g.Mode == GenerationIncremental {
			if g.Chunk == 0 {
				g.Chunk = int(min(DefaultChunk, max(s.TotalQuantity, 1)))
			}
			if g.LowWater == 0 {
				g.LowWater = max(g.Chunk/2, 1)
			}
		}
	}
	for _, t := range []*time.Time{&s.ClaimStart, &s.ClaimEnd, &s.Validity.Start, &s.Validity.End} {
		*t = UTC(*t)
	}
	for i := range s.Rules {
		s.Rules[i].normalize()
	}
}

// UTC returns t in UTC, truncated to microseconds; the zero time stays zero.
func UTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Validate checks a normalised spec and names every bad field with its reason.
func (s *BatchSpec) Validate() error {
	var v Validation
	switch n := utf8.RuneCountInString(s.Name); {
	case n == 0:
		v.Add("name", "is required")
	case n > MaxNameLength:
		v.Addf("name", "must be at most %d characters", MaxNameLength)
	}
	identifier(&v, "merchant_id", s.MerchantID, false)
	identifier(&v, "channel", s.Channel, false)
	if utf8.RuneCountInString(s.AdCopy) > MaxAdCopyLength {
		v.Addf("ad_copy", "must be at most %d characters", MaxAdCopyLength)
	}
	switch s.Type {
	case TypeCash, TypeThreshold, TypePercent, TypeShipping:
	default:
		v.Add("type", "must be one of cash, threshold, percent, shipping")
	}
	if s.TotalQuantity < 1 || s.TotalQuantity > MaxTotalQuantity {
		v.Addf("total_quantity", "must be between 1 and %d", MaxTotalQuantity)
	}
	if s.PerUserLimit < 1 || s.PerUserLimit > MaxPerUserLimit {
		v.Addf("per_user_limit", "must be between 1 and %d", MaxPerUserLimit)
	}
	if !s.ClaimStart.IsZero() && !s.ClaimEnd.IsZero() && !s.ClaimEnd.After(s.ClaimStart) {
		v.Add("claim_end", "must be after claim_start")
	}
	platforms(&v, "claim_platforms", s.ClaimPlatforms)
	platforms(&v, "usage_platforms", s.UsagePlatforms)
	s.validateValidity(&v)
	s.Amount.validate(&v, s.TotalQuantity)
	if s.MinSpend < 0 || s.MinSpend > MaxBudget {
		v.Addf("min_spend", "must be between 0 and %d", int64(MaxBudget))
	}
	if s.Type == TypeThreshold && s.MinSpend < 1 {
		v.Add("min_spend", "is required for a threshold batch")
	}
	if s.Type == TypePercent && (s.PercentOff < 1 || s.PercentOff > 99) {
		v.Add("percent_off", "must be between 1 and 99 for a percent batch")
	} else if s.Type != TypePercent && s.PercentOff != 0 {
		v.Add("percent_off", "applies only to a percent batch")
	}
	s.CodeFormat.validate(&v, "code_format")
	s.validateOptions(&v)
	if len(s.Rules) > MaxRules {
		v.Addf("rules", "must hold at most %d rules", MaxRules)
	} else {
		for i := range s.Rules {
			s.Rules[i].validate(&v, fmt.Sprintf("rules[%d]", i))
		}
	}
	return v.Err()
}

func (s *BatchSpec) validateValidity(v *Validation) {
	vd := s.Validity
	switch {
	case vd.Days != 0 && (!vd.Start.IsZero() || !vd.End.IsZero()):
		v.Add("validity", "must give either days or start and end, not both")
	case vd.Days != 0:
		if vd.Days < 1 || vd.Days > MaxValidityDays {
			v.Addf("validity.days", "must be between 1 and %d", MaxValidityDays)
		}
	case vd.Start.IsZero() && vd.End.IsZero():
		v.Add("validity", "is required: give days, or start and end")
	case vd.Start.IsZero():
		v.Add("validity.start", "is required with validity.end")
	case vd.End.IsZero():
		v.Add("validity.end", "is required with validity.start")
	case !vd.End.After(vd.Start):
		v.Add("validity.end", "must be after validity.start")
	case !s.ClaimStart.IsZero() && !vd.End.After(s.ClaimStart):
		v.Add("validity.end", "must be after claim_start, or no claimed coupon could ever be used")
	}
}

func (s *BatchSpec) validateOptions(v *Validation) {
	switch s.Source {
	case SourceInternal:
		g := s.Generation
		switch g.Mode {
		case GenerationFull:
			if s.TotalQuantity > MaxFullTotalQuantity {
				v.Addf("generation.mode", "full generation allows at most %d codes; use incremental", MaxFullTotalQuantity)
			}
			if g.Chunk != 0 || g.LowWater != 0 {
				v.Add("generation", "chunk and low_water apply only to incremental generation")
			}
		case GenerationIncremental:
			if g.Chunk < 1 || g.Chunk > 1_000_000 {
				v.Add("generation.chunk", "must be between 1 and 1000000")
			}
			if g.LowWater < 1 || g.LowWater > 1_000_000 {
				v.Add("generation.low_water", "must be between 1 and 1000000")
			}
		default:
			v.Add("generation.mode", "must be full or incremental")
		}
	case SourceExternal:
		if s.Generation != (Generation{}) {
			v.Add("generation", "applies only to internal codes")
		}
		if s.Amount.Type == AmountSplit {
			v.Add("amount.type", "an external batch cannot split a budget: its codes come with their amounts or the fixed amount")
		}
	default:
		v.Add("source", "must be internal or external")
	}
	s.Redemption.validate(v)
	s.Protection.validate(v)
	if s.TriggerSubject != "" && !ValidSubject(s.TriggerSubject) {
		v.Add("trigger_subject", "must be a NATS subject: tokens of letters, digits, '-' and '_' separated by dots, at most 200 characters")
	}
}

// ValidSubject reports whether s is a plain NATS subject (no wildcards).
func ValidSubject(s string) bool {
	if s == "" || len(s) > 200 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if prev == '.' {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		prev = c
	}
	return true
}

func identifier(v *Validation, field, s string, required bool) {
	switch {
	case s == "" && required:
		v.Add(field, "is required")
	case len(s) > MaxIdentifierBytes:
		v.Addf(field, "must be at most %d bytes", MaxIdentifierBytes)
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	default:
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				v.Add(field, "must not contain control characters")
				return
			}
		}
	}
}

// ValidPlatform reports whether p is a well-formed platform name: 1 to 32
// characters of a-z, 0-9, '-' and '_'.
func ValidPlatform(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func platforms(v *Validation, field string, ps []string) {
	if len(ps) > MaxPlatforms {
		v.Addf(field, "must list at most %d platforms", MaxPlatforms)
		return
	}
	for i, p := range ps {
		if !ValidPlatform(p) {
			v.Addf(fmt.Sprintf("%s[%d]", field, i), "must be 1 to 32 characters of a-z, 0-9, '-' and '_'")
		} else if slices.Contains(ps[:i], p) {
			v.Addf(fmt.Sprintf("%s[%d]", field, i), "repeats %q", p)
		}
	}
}

// ClaimableAt says why a claim at t on platform is refused, or nil. The
// batch's status is checked again, atomically, by the engine.
func (b *Batch) ClaimableAt(t time.Time, platform string) error {
	switch {
	case b.Status != StatusActive:
		return fmt.Errorf("batch is %s: %w", b.Status, ErrNotClaimable)
	case !b.ClaimStart.IsZero() && t.Before(b.ClaimStart):
		return fmt.Errorf("the claim window opens at %s: %w", b.ClaimStart.Format(time.RFC3339), ErrNotClaimable)
	case !b.ClaimEnd.IsZero() && !t.Before(b.ClaimEnd):
		return fmt.Errorf("the claim window closed at %s: %w", b.ClaimEnd.Format(time.RFC3339), ErrNotClaimable)
	case !b.Validity.End.IsZero() && !t.Before(b.Validity.End):
		return fmt.Errorf("the coupons of this batch expired at %s: %w", b.Validity.End.Format(time.RFC3339), ErrNotClaimable)
	case len(b.ClaimPlatforms) > 0 && !slices.Contains(b.ClaimPlatforms, platform):
		return fmt.Errorf("platform %q may not claim this batch: %w", platform, ErrNotClaimable)
	}
	return nil
}
