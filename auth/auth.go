// Package auth names who is calling: a principal with a role and, for a
// merchant, the merchant it acts for. The HTTP layer authenticates a request
// and puts its principal in the context; operations declare the roles they
// admit; the service scopes what a merchant may see.
package auth

import "context"

// Role is what a credential may do.
type Role string

const (
	// Admin may do everything, including managing credentials and lists.
	Admin Role = "admin"
	// Operator manages batches and looks things up across merchants.
	Operator Role = "operator"
	// Merchant sees and manages only its own merchant's batches, claims and stats.
	Merchant Role = "merchant"
	// App makes the client-facing calls: claim, query, redeem.
	App Role = "app"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case Admin, Operator, Merchant, App:
		return true
	}
	return false
}

// Principal is an authenticated caller.
type Principal struct {
	KeyID      string // the credential's id; "bootstrap" for COUPOND_ADMIN_TOKEN
	Role       Role
	MerchantID string // set for the merchant role only
}

type ctxKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal of ctx; ok is false for an unauthenticated context
// (background work, tests of the service layer), which acts with full rights.
func From(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// MerchantScope returns the merchant a caller is confined to: the merchant
// of a merchant principal, and ok false for everyone else.
func MerchantScope(ctx context.Context) (merchantID string, ok bool) {
	p, found := From(ctx)
	if !found || p.Role != Merchant {
		return "", false
	}
	return p.MerchantID, true
}

// Sees reports whether the caller of ctx may see something owned by
// merchantID: anyone but a merchant sees everything; a merchant sees its own.
func Sees(ctx context.Context, merchantID string) bool {
	m, scoped := MerchantScope(ctx)
	return !scoped || m == merchantID
}
