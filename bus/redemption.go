package bus

import (
	"time"

	"github.com/coupond/coupond/coupon"
)

// Event types of redemption and expiry.
const (
	TypeRedemptionReserved  = "redemption.reserved"
	TypeRedemptionConfirmed = "redemption.confirmed"
	TypeRedemptionCancelled = "redemption.cancelled"
	TypeRedemptionRefunded  = "redemption.refunded"
	TypeClaimExpired        = "claim.expired"
	TypeClaimExpiring       = "claim.expiring"
)

// RedemptionChanged is the data of redemption.reserved, .confirmed,
// .cancelled and .refunded: the redemption after the change.
type RedemptionChanged struct {
	RedemptionID string            `json:"redemption_id"`
	OrderID      string            `json:"order_id"`
	UserID       string            `json:"user_id"`
	Status       string            `json:"status"`   // the redemption's status after the change
	Discount     int64             `json:"discount"` // the order's whole discount, minor units
	Claims       []RedemptionClaim `json:"claims"`
	Reason       string            `json:"reason,omitempty"` // what caused the change: api, message, reconciler, review, direct
	Refund       *coupon.Refund    `json:"refund,omitempty"` // redemption.refunded: the refund applied
	At           time.Time         `json:"at"`
}

// RedemptionClaim is one claim of a redemption event.
type RedemptionClaim struct {
	ClaimID  string        `json:"claim_id"`
	BatchID  string        `json:"batch_id"`
	Code     string        `json:"code"`
	Discount int64         `json:"discount"`
	Status   string        `json:"status"` // the line's status: reserved, confirmed, released, returned, refunded
	Lines    []coupon.Line `json:"lines"`  // the discount per cart line with its cost bearers
}

// ClaimExpiry is the data of claim.expired and claim.expiring.
type ClaimExpiry struct {
	ClaimID    string    `json:"claim_id"`
	BatchID    string    `json:"batch_id"`
	MerchantID string    `json:"merchant_id,omitempty"`
	UserID     string    `json:"user_id"`
	Amount     int64     `json:"amount"`
	ValidTo    time.Time `json:"valid_to"`
	At         time.Time `json:"at"` // when the sweeper saw it
}
