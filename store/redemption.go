package store

// RedemptionStore is the part of the store that redemption uses: orders'
// reservations of claims, their confirmation, cancellation and refunds, and
// the expiry of claims. It is embedded in Store.
type RedemptionStore interface {
}
