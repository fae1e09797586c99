package engine

// Protection is the part of the engine that guards the claim path against
// abuse: rate limits, request nonces, black/white list membership and the
// sliding-window counters of risk rules. It is embedded in Engine.
type Protection interface {
}
