package service

import (
	"context"
	"fmt"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
)

// Merchant isolation: a merchant's credential sees and manages its own
// merchant's batches, and the claims, codes, redemptions, lists and
// refusals of those batches only. What belongs to another merchant answers
// not_found, exactly as what does not exist: a merchant cannot learn that
// another's batch, claim or code exists. Calls without a principal
// (workers, tests of the service) and every other role see everything.

// scopeSpec makes a batch a merchant creates its own, whatever merchant
// the spec names.
func scopeSpec(ctx context.Context, spec *coupon.BatchSpec) {
	if m, scoped := auth.MerchantScope(ctx); scoped {
		spec.MerchantID = m
	}
}

// scopeMerchantFilter confines a merchant's listing to its merchant:
// ok false means the listing asks for another merchant's and is empty.
func scopeMerchantFilter(ctx context.Context, merchantID *string) (ok bool) {
	m, scoped := auth.MerchantScope(ctx)
	if !scoped {
		return true
	}
	if *merchantID != "" && *merchantID != m {
		return false
	}
	*merchantID = m
	return true
}

// hidden is the not_found answer for something of another merchant.
func hidden(what, id string) error {
	return fmt.Errorf("%s %s: %w", what, id, coupon.ErrNotFound)
}

// seesBatch reports whether the caller sees the batch batchID, reading it
// from the batch cache only for a merchant.
func (s *Service) seesBatch(ctx context.Context, batchID string) (bool, error) {
	if _, scoped := auth.MerchantScope(ctx); !scoped {
		return true, nil
	}
	b, err := s.batches.get(ctx, batchID)
	if err != nil {
		if coupon.ErrorCode(err) == coupon.CodeNotFound {
			return false, nil
		}
		return false, unavailable("get batch", err)
	}
	return auth.Sees(ctx, b.MerchantID), nil
}

// seesRedemption reports whether the caller sees a redemption: a merchant
// sees one that uses a coupon of its batches.
func (s *Service) seesRedemption(ctx context.Context, r *coupon.Redemption) (bool, error) {
	if _, scoped := auth.MerchantScope(ctx); !scoped {
		return true, nil
	}
	for _, c := range r.Claims {
		ok, err := s.seesBatch(ctx, c.BatchID)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// visibleClaims keeps the claims the caller sees: a merchant its batches'.
func visibleClaims(ctx context.Context, cs []*coupon.Claim) []*coupon.Claim {
	if _, scoped := auth.MerchantScope(ctx); !scoped {
		return cs
	}
	out := cs[:0:0]
	for _, c := range cs {
		if auth.Sees(ctx, c.MerchantID) {
			out = append(out, c)
		}
	}
	return out
}
