package engine

// Cache is the part of the engine that serves "my coupons" fast: a user's
// claims and count badges, filled on read and kept exact on every change.
// It is embedded in Engine.
type Cache interface {
}

// DelayQueue is the part of the engine that holds jobs due at a time (the
// product tagging of batches whose claim windows open and close). It is
// embedded in Engine.
type DelayQueue interface {
}
