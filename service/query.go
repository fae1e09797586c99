package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// UserClaimQuery selects a user's claims.
type UserClaimQuery struct {
	UserID string
	Status string // available, locked, used, expired, refunded; "" any
	Cursor string
	Limit  int
	// History lists archived claims too, in the same order (archive.go).
	History bool
}

// UserClaims lists a user's coupons ordered by expiry, soonest first, with
// the cursor of the next page ("" on the last page). Statuses are as of now:
// an available coupon past its validity is listed as expired. The claims
// come from the engine's cache of the user's claims, filled from the store
// on a miss and dropped by every change (see cache.go): a user sees a claim
// or a redemption of their own in the next list. When the cache fails, the
// store answers (a replica, unless the user changed something lately).
func (s *Service) UserClaims(ctx context.Context, q UserClaimQuery) ([]*coupon.Claim, string, error) {
	var v coupon.Validation
	if err := (coupon.Claimant{UserID: q.UserID}).Validate(); err != nil {
		return nil, "", err
	}
	status, err := coupon.ParseClaimStatus(q.Status)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(&v, q.Limit)
	afterTo, afterID, ok := decodeClaimCursor(q.Cursor)
	if !ok {
		v.Add("cursor", "is not a cursor this API returned")
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	now := s.clock()
	if q.History {
		return s.userClaimHistory(ctx, q.UserID, status, afterTo, afterID, limit, now)
	}
	view, err := s.userClaims(ctx, q.UserID)
	if err != nil {
		return nil, "", err
	}
	var cs []*coupon.Claim
	if view.all {
		// The cached claims are shared (decodedMemo): the page is copies.
		cs = page(view.claims, status, now, afterTo, afterID, limit+1)
		for i, c := range cs {
			cp := *c
			cs[i] = &cp
		}
	} else {
		f := store.UserClaimFilter{UserID: q.UserID, Status: status, Now: now,
			AfterValidTo: afterTo, AfterID: afterID, Limit: limit + 1}
		if r := replicaOf(s.store); view.primary && r != nil {
			cs, err = r.ListUserClaimsPrimary(ctx, f)
		} else {
			cs, err = s.store.ListUserClaims(ctx, f)
		}
		if err != nil {
			return nil, "", unavailable("list claims", err)
		}
	}
	next := ""
	if len(cs) > limit {
		cs = cs[:limit]
		last := cs[limit-1]
		next = encodeClaimCursor(last.ValidTo, last.ID)
	}
	// A merchant sees the claims of its batches only: its pages may be
	// short (the cursor follows every claim of the user).
	cs = visibleClaims(ctx, cs)
	for _, c := range cs {
		c.Status = c.EffectiveStatus(now)
	}
	return cs, next, nil
}

// GetClaim returns one claim.
func (s *Service) GetClaim(ctx context.Context, id string) (*coupon.Claim, error) {
	if !coupon.ValidID(id) {
		return nil, fmt.Errorf("claim %q: %w", id, coupon.ErrNotFound)
	}
	c, err := s.store.GetClaim(ctx, id)
	if err != nil {
		return nil, unavailable("get claim", notFound("claim", id, err))
	}
	if !auth.Sees(ctx, c.MerchantID) {
		return nil, hidden("claim", id)
	}
	c.Status = c.EffectiveStatus(s.clock())
	return c, nil
}

// GetCode looks a code up, as a person may have typed it. A code whose check
// character does not match is refused without a store lookup.
func (s *Service) GetCode(ctx context.Context, code string) (*coupon.Code, error) {
	canonical, err := coupon.ParseCode(code)
	if err != nil {
		if !s.isPartnerCode(ctx, code) { // import.go: a partner's code is kept as given
			return nil, err
		}
		canonical = code
	}
	c, err := s.store.GetCode(ctx, canonical)
	if err != nil {
		return nil, unavailable("get code", notFound("code", canonical, err))
	}
	switch ok, err := s.seesBatch(ctx, c.BatchID); {
	case err != nil:
		return nil, err
	case !ok:
		return nil, hidden("code", canonical)
	}
	return c, nil
}

// A claim cursor is the (valid_to, id) of the last claim of a page.
func encodeClaimCursor(validTo time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(validTo.UnixMicro(), 10) + "." + id))
}

func decodeClaimCursor(c string) (time.Time, string, bool) {
	if c == "" {
		return time.Time{}, "", true
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", false
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	if !ok || !coupon.ValidID(id) {
		return time.Time{}, "", false
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.UnixMicro(us).UTC(), id, true
}
