package store

// AccessStore is the part of the store that access control uses: API keys,
// black and white lists, SMS challenges and the record of refusals. It is
// embedded in Store.
type AccessStore interface {
}
