package coupon

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// CodeNotUsable: a coupon cannot be used for this order (locked by another
// order, used, expired, out of scope, below its minimum spend, or a
// combination the stacking rules forbid). The problem's errors name which.
const CodeNotUsable = "not_usable"

// ErrNotUsable is the sentinel of CodeNotUsable.
var ErrNotUsable = &Error{Code: CodeNotUsable, Message: "the coupon cannot be used for this order"}

// RedemptionStatus is where an order's use of coupons is:
// reserved → confirmed | cancelled; confirmed → partially_refunded → refunded.
type RedemptionStatus string

const (
	RedemptionReserved          RedemptionStatus = "reserved"
	RedemptionConfirmed         RedemptionStatus = "confirmed"
	RedemptionCancelled         RedemptionStatus = "cancelled"
	RedemptionPartiallyRefunded RedemptionStatus = "partially_refunded"
	RedemptionRefunded          RedemptionStatus = "refunded"
)

// LineStatus is where one claim of a redemption is. A reserved or confirmed
// line holds its claim: a claim is in at most one such line.
type LineStatus string

const (
	LineReserved  LineStatus = "reserved"  // claim locked
	LineConfirmed LineStatus = "confirmed" // claim used
	LineReleased  LineStatus = "released"  // order cancelled: claim available again
	LineReturned  LineStatus = "returned"  // refunded, coupon given back: claim available again
	LineRefunded  LineStatus = "refunded"  // refunded, coupon not given back: claim refunded
)

// Holds reports whether a line in status s holds its claim.
func (s LineStatus) Holds() bool { return s == LineReserved || s == LineConfirmed }

// RefundPolicy says what a refunded order does to a coupon it used.
type RefundPolicy string

const (
	RefundReturn RefundPolicy = "return" // give it back while it is still valid; else mark it refunded
	RefundVoid   RefundPolicy = "void"   // always mark it refunded
)

// Limits of redemption.
const (
	MaxCartItems          = 200
	MaxItemQuantity       = 10_000
	MaxItemCategories     = 8
	MaxRedemptionCoupons  = 20
	MaxReservationTimeout = 7 * 24 * 3600 // seconds
	MaxOrderSystemURL     = 500
)

// RedemptionOptions are a batch's redemption settings, kept with the other
// batch options in one JSON column.
type RedemptionOptions struct {
	RefundPolicy RefundPolicy `json:"refund_policy,omitempty" enum:"return,void" doc:"what a refund does to a used coupon: return (the default) gives it back while it is still valid, else marks it refunded; void always marks it refunded"`
	// ReservationTimeout is in seconds; 0: the service's default.
	ReservationTimeout int    `json:"reservation_timeout_seconds,omitempty" minimum:"0" maximum:"604800" doc:"seconds a reservation may wait for its confirmation before coupond asks the order system; default: the service's"`
	OrderSystemURL     string `json:"order_system_url,omitempty" maxLength:"500" doc:"the order system's order-state endpoint for orders using this batch, with {order_id} where the id goes (else it is appended as a path segment); default: the service's"`
	MaxPerOrder        int    `json:"max_per_order,omitempty" minimum:"0" maximum:"20" doc:"coupons of this batch one order may use; default 1"`
}

func (o *RedemptionOptions) validate(v *Validation) {
	switch o.RefundPolicy {
	case "", RefundReturn, RefundVoid:
	default:
		v.Add("redemption.refund_policy", "must be return or void")
	}
	if o.ReservationTimeout < 0 || o.ReservationTimeout > MaxReservationTimeout {
		v.Addf("redemption.reservation_timeout_seconds", "must be between 0 and %d", MaxReservationTimeout)
	}
	if o.OrderSystemURL != "" {
		if err := ValidOrderSystemURL(o.OrderSystemURL); err != "" {
			v.Add("redemption.order_system_url", err)
		}
	}
	if o.MaxPerOrder < 0 || o.MaxPerOrder > MaxRedemptionCoupons {
		v.Addf("redemption.max_per_order", "must be between 0 and %d", MaxRedemptionCoupons)
	}
}

// ValidOrderSystemURL returns why u is not an http(s) URL of an order-state
// endpoint, or "".
func ValidOrderSystemURL(u string) string {
	if len(u) > MaxOrderSystemURL {
		return fmt.Sprintf("must be at most %d characters", MaxOrderSystemURL)
	}
	p, err := url.Parse(strings.ReplaceAll(u, "{order_id}", "x"))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "must be an absolute http or https URL"
	}
	return ""
}

// Policy returns the refund policy, defaulted.
func (o RedemptionOptions) Policy() RefundPolicy {
	if o.RefundPolicy == "" {
		return RefundReturn
	}
	return o.RefundPolicy
}

// PerOrder returns how many coupons of the batch one order may use.
func (o RedemptionOptions) PerOrder() int {
	if o.MaxPerOrder <= 0 {
		return 1
	}
	return o.MaxPerOrder
}

// Cart is what an order buys: its items and its shipping fees.
type Cart struct {
	Items    []CartItem    `json:"items" minItems:"1" maxItems:"200" doc:"the order's lines"`
	Shipping []ShippingFee `json:"shipping,omitempty" maxItems:"200" doc:"shipping fees: one per merchant shipment, or one for the order (empty merchant_id)"`
}

// CartItem is one line of an order.
type CartItem struct {
	ID          string   `json:"id" minLength:"1" maxLength:"128" doc:"the order line's id, unique in the cart; refunds name it"`
	ProductID   string   `json:"product_id" minLength:"1" maxLength:"128" doc:"the product (SKU)"`
	CategoryIDs []string `json:"category_ids,omitempty" maxItems:"8" doc:"the product's categories, the leaf and its ancestors"`
	MerchantID  string   `json:"merchant_id,omitempty" maxLength:"128" doc:"the merchant selling it; empty: the platform itself"`
	UnitPrice   int64    `json:"unit_price" minimum:"0" maximum:"10000000000" doc:"minor units"`
	Quantity    int64    `json:"quantity" minimum:"1" maximum:"10000" doc:"units bought"`
}

// Value is the line's price before discounts.
func (it CartItem) Value() int64 { return it.UnitPrice * it.Quantity }

// ShippingFee is the shipping of one merchant's shipment, or of the order.
type ShippingFee struct {
	MerchantID string `json:"merchant_id,omitempty" maxLength:"128" doc:"the merchant shipping; empty: the order's shipping"`
	Amount     int64  `json:"amount" minimum:"0" maximum:"10000000000" doc:"minor units"`
}

// Validate names the bad fields of a cart.
func (c *Cart) Validate(v *Validation, field string) {
	switch n := len(c.Items); {
	case n == 0:
		v.Add(field+".items", "must hold at least one item")
	case n > MaxCartItems:
		v.Addf(field+".items", "must hold at most %d items", MaxCartItems)
		return
	}
	ids := make(map[string]bool, len(c.Items))
	for i, it := range c.Items {
		f := fmt.Sprintf("%s.items[%d]", field, i)
		identifier(v, f+".id", it.ID, true)
		if ids[it.ID] {
			v.Addf(f+".id", "repeats %q", it.ID)
		}
		ids[it.ID] = true
		identifier(v, f+".product_id", it.ProductID, true)
		identifier(v, f+".merchant_id", it.MerchantID, false)
		if len(it.CategoryIDs) > MaxItemCategories {
			v.Addf(f+".category_ids", "must list at most %d categories", MaxItemCategories)
		}
		for j, cat := range it.CategoryIDs {
			identifier(v, fmt.Sprintf("%s.category_ids[%d]", f, j), cat, true)
		}
		if it.UnitPrice < 0 || it.UnitPrice > MaxAmount {
			v.Addf(f+".unit_price", "must be between 0 and %d", int64(MaxAmount))
		}
		if it.Quantity < 1 || it.Quantity > MaxItemQuantity {
			v.Addf(f+".quantity", "must be between 1 and %d", MaxItemQuantity)
		}
	}
	if len(c.Shipping) > MaxCartItems {
		v.Addf(field+".shipping", "must hold at most %d fees", MaxCartItems)
		return
	}
	for i, s := range c.Shipping {
		f := fmt.Sprintf("%s.shipping[%d]", field, i)
		identifier(v, f+".merchant_id", s.MerchantID, false)
		if slices.ContainsFunc(c.Shipping[:i], func(o ShippingFee) bool { return o.MerchantID == s.MerchantID }) {
			v.Addf(f+".merchant_id", "repeats %q", s.MerchantID)
		}
		if s.Amount < 0 || s.Amount > MaxAmount {
			v.Addf(f+".amount", "must be between 0 and %d", int64(MaxAmount))
		}
	}
}

// Item returns the cart item with id, or false.
func (c *Cart) Item(id string) (CartItem, bool) {
	for _, it := range c.Items {
		if it.ID == id {
			return it, true
		}
	}
	return CartItem{}, false
}

// LineKind says what a discount line discounts.
type LineKind string

const (
	LineItem     LineKind = "item"
	LineShipping LineKind = "shipping"
)

// Line is the part of one coupon's discount that falls on one cart item or
// one shipping fee, and who bears its cost.
type Line struct {
	Kind       LineKind `json:"kind" enum:"item,shipping" doc:"what the line discounts: a cart item or a shipping fee"`
	Item       string   `json:"item,omitempty" doc:"the cart item's id (kind item)"`
	MerchantID string   `json:"merchant_id,omitempty" doc:"whose shipping fee (kind shipping); empty: the order's"`
	Amount     int64    `json:"amount" doc:"discount on this line, minor units"`
	Costs      []Cost   `json:"costs" doc:"who bears the discount of this line; the amounts sum to amount"`
}

// Cost is the share of a line's discount one party bears.
type Cost struct {
	Bearer     string `json:"bearer" enum:"platform,merchant" doc:"who bears it"`
	MerchantID string `json:"merchant_id,omitempty" doc:"the merchant bearing it (bearer merchant)"`
	Amount     int64  `json:"amount" doc:"minor units"`
}

// Cost bearers.
const (
	BearerPlatform = "platform"
	BearerMerchant = "merchant"
)

// RedemptionClaim is one claim an order uses.
type RedemptionClaim struct {
	ClaimID  string     `json:"claim_id" doc:"the claim used"`
	BatchID  string     `json:"batch_id" doc:"its batch"`
	Code     string     `json:"code" doc:"its code"`
	Discount int64      `json:"discount" doc:"minor units"`
	Status   LineStatus `json:"status" enum:"reserved,confirmed,released,returned,refunded" doc:"reserved (claim locked), confirmed (used), released (order cancelled), returned (refunded, coupon given back), refunded (refunded, coupon not given back)"`
	Lines    []Line     `json:"lines" doc:"the discount split over the cart, exactly"`
}

// Refund is one refund of an order, whole or of some items.
type Refund struct {
	ID    string       `json:"id,omitempty" doc:"the order system's refund id"`
	Items []RefundItem `json:"items,omitempty" doc:"refunded quantities; empty: the whole order"`
	At    time.Time    `json:"at" doc:"when coupond applied it"`
}

// RefundItem is a refunded quantity of one cart item.
type RefundItem struct {
	ID       string `json:"id" minLength:"1" maxLength:"128" doc:"the cart item's id"`
	Quantity int64  `json:"quantity" minimum:"1" maximum:"10000" doc:"units refunded"`
}

// Review says why a redemption waits for an operator.
type Review struct {
	Reason   string    `json:"reason" doc:"why an operator must look at it"`
	Since    time.Time `json:"since" doc:"when it went on the review list"`
	Attempts int       `json:"attempts" doc:"times the order system was asked"`
}

// Redemption is one order's use of one or more claims.
type Redemption struct {
	ID       string            `json:"id" doc:"the redemption's id"`
	OrderID  string            `json:"order_id" doc:"the order; one redemption per order"`
	UserID   string            `json:"user_id,omitempty" doc:"empty for a cancellation that came before any reservation"`
	Status   RedemptionStatus  `json:"status" enum:"reserved,confirmed,cancelled,partially_refunded,refunded" doc:"reserved (coupons locked), confirmed (used), cancelled (released), partially_refunded, refunded"`
	Platform string            `json:"platform,omitempty" doc:"where the order was placed"`
	Node     string            `json:"node,omitempty" doc:"the checkout step of the reservation"`
	Discount int64             `json:"discount" doc:"the order's whole discount, minor units"`
	Cart     Cart              `json:"cart" doc:"the order's cart as reserved"`
	Claims   []RedemptionClaim `json:"claims" doc:"the coupons used, in the order they applied"`
	Refunds  []Refund          `json:"refunds,omitempty" doc:"the refunds applied"`
	Reason   string            `json:"reason,omitempty" doc:"what confirmed or cancelled it: api, message, reconciler, review, direct"`
	Review   *Review           `json:"review,omitempty" doc:"present while the redemption waits for an operator"`

	ReservedAt  time.Time `json:"reserved_at" doc:"when the coupons were reserved"`
	ExpiresAt   time.Time `json:"expires_at" doc:"when an unconfirmed reservation stops being trusted to a message and the order system is asked"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero" doc:"when it was confirmed"`
	CancelledAt time.Time `json:"cancelled_at,omitzero" doc:"when it was cancelled"`
	RefundedAt  time.Time `json:"refunded_at,omitzero" doc:"when the last refund was applied"`
	UpdatedAt   time.Time `json:"updated_at" doc:"when it last changed"`

	// Bookkeeping, not shown.
	OrderSystemURL string    `json:"-"`
	RequestHash    string    `json:"-"`
	CheckAttempts  int       `json:"-"`
	NextCheckAt    time.Time `json:"-"`
	Version        int64     `json:"-"`
}

// Tombstone reports whether r records only that its order was cancelled
// before any reservation of it arrived.
func (r *Redemption) Tombstone() bool { return len(r.Claims) == 0 && r.Status == RedemptionCancelled }

// ValidOrderID checks an order id: 1 to 128 bytes, no control characters.
func ValidOrderID(field, id string) error {
	var v Validation
	identifier(&v, field, id, true)
	return v.Err()
}

// ValidIdentifier checks an optional or required identifier field.
func ValidIdentifier(v *Validation, field, s string, required bool) {
	identifier(v, field, s, required)
}
