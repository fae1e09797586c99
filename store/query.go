package store

// QueryStore is the part of the store that back-office search, exports,
// statistics and product tagging use. It is embedded in Store.
type QueryStore interface {
}
