package redis

// ClaimScript and BatchKeys let the tests run the claim script alone.
var ClaimScript = claimScript

func BatchKeys(e *Engine, batchID string) []string {
	k := e.batchKeys(batchID)
	return k[:]
}

// KeyPrefix is the engine's key prefix.
func KeyPrefix(e *Engine) string { return e.prefix }
