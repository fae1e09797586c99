package coupon

import (
	"fmt"
	"time"
)

// ClaimStatus is where a user's coupon is in its life:
// available → locked → used; available → expired; locked → available
// (cancel, timeout); used → available or refunded (refund).
type ClaimStatus string

const (
	ClaimAvailable ClaimStatus = "available"
	ClaimLocked    ClaimStatus = "locked"
	ClaimUsed      ClaimStatus = "used"
	ClaimExpired   ClaimStatus = "expired"
	ClaimRefunded  ClaimStatus = "refunded"
)

// ParseClaimStatus accepts "" (any status) or one of the claim statuses.
func ParseClaimStatus(s string) (ClaimStatus, error) {
	switch st := ClaimStatus(s); st {
	case "", ClaimAvailable, ClaimLocked, ClaimUsed, ClaimExpired, ClaimRefunded:
		return st, nil
	}
	return "", fieldError("status", "must be one of available, locked, used, expired, refunded")
}

// Claim binds a user identity to a code of a batch: the user's coupon. It
// carries what "my coupons" shows, so listing them needs no join.
type Claim struct {
	ID      string `json:"id"`
	BatchID string `json:"batch_id"`
	Code    string `json:"code"`

	UserID string `json:"user_id"`
	Phone  string `json:"phone,omitempty"`
	OpenID string `json:"open_id,omitempty"`
	// UserSeq is this claim's place among the user's claims of the batch,
	// 1..PerUserLimit; the store keeps (batch, user, seq) unique.
	UserSeq int `json:"-"`
	// UserLimit is the batch's per-user limit when the claim was made; the
	// store checks UserSeq against it.
	UserLimit int `json:"-"`

	Status    ClaimStatus `json:"status"`
	Amount    int64       `json:"amount"`
	ValidFrom time.Time   `json:"valid_from"`
	ValidTo   time.Time   `json:"valid_to"`
	ClaimedAt time.Time   `json:"claimed_at"`
	UpdatedAt time.Time   `json:"updated_at"`
	Platform  string      `json:"platform,omitempty" doc:"platform the claim came from"`
	Channel   string      `json:"channel,omitempty"`

	IdempotencyKey string `json:"-"`

	// Denormalised from the batch.
	BatchName      string   `json:"batch_name"`
	MerchantID     string   `json:"merchant_id,omitempty"`
	Type           Type     `json:"type"`
	MinSpend       int64    `json:"min_spend,omitempty"`
	PercentOff     int      `json:"percent_off,omitempty"`
	UsagePlatforms []string `json:"usage_platforms,omitempty"`
}

// EffectiveStatus is the status as of t: an available claim past its
// validity is expired even before a sweeper has written so.
func (c *Claim) EffectiveStatus(t time.Time) ClaimStatus {
	if c.Status == ClaimAvailable && !t.Before(c.ValidTo) {
		return ClaimExpired
	}
	return c.Status
}

// Claimant is the identity a claim is made for.
type Claimant struct {
	UserID   string
	Phone    string
	OpenID   string
	Platform string
}

// Validate names the bad fields of a claimant.
func (c Claimant) Validate() error {
	var v Validation
	identifier(&v, "user_id", c.UserID, true)
	if c.Phone != "" && !validPhone(c.Phone) {
		v.Add("phone", "must be 5 to 20 digits, optionally after a '+'")
	}
	identifier(&v, "open_id", c.OpenID, false)
	if c.Platform != "" && !ValidPlatform(c.Platform) {
		v.Add("platform", "must be 1 to 32 characters of a-z, 0-9, '-' and '_'")
	}
	return v.Err()
}

func validPhone(p string) bool {
	if len(p) > 0 && p[0] == '+' {
		p = p[1:]
	}
	if len(p) < 5 || len(p) > 20 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// NewClaim builds the claim of code for claimant, at time t, from batch.
func NewClaim(b *Batch, id string, who Claimant, code string, amount int64, seq int, key string, t time.Time) *Claim {
	from, to := b.Validity.Window(t)
	return &Claim{
		ID: id, BatchID: b.ID, Code: code,
		UserID: who.UserID, Phone: who.Phone, OpenID: who.OpenID, UserSeq: seq, UserLimit: b.PerUserLimit,
		Status: ClaimAvailable, Amount: amount,
		ValidFrom: from, ValidTo: to, ClaimedAt: t, UpdatedAt: t,
		Platform: who.Platform, Channel: b.Channel, IdempotencyKey: key,
		BatchName: b.Name, MerchantID: b.MerchantID, Type: b.Type,
		MinSpend: b.MinSpend, PercentOff: b.PercentOff, UsagePlatforms: b.UsagePlatforms,
	}
}

// ValidIdempotencyKey checks an Idempotency-Key header value: 1 to 128
// printable ASCII characters.
func ValidIdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > 128 {
		return fieldError("Idempotency-Key", "must be 1 to 128 characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fieldError("Idempotency-Key", fmt.Sprintf("must be printable ASCII (byte %d is not)", i))
		}
	}
	return nil
}
