package service

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// ClaimSearch selects claims for the back office. Every field is optional;
// the filters combine. Times are ranges [From, To).
type ClaimSearch struct {
	BatchID, MerchantID, UserID, Phone, Code, Channel string
	Status                                            string
	ClaimedFrom, ClaimedTo                            time.Time
	ValidToFrom, ValidToTo                            time.Time
	Cursor                                            string
	Limit                                             int
}

// SearchClaims finds claims by any combination of filters, newest first,
// with the cursor of the next page ("" on the last). It reads the replica
// where one is configured. A merchant sees its own merchant's claims only.
func (s *Service) SearchClaims(ctx context.Context, q ClaimSearch) ([]*coupon.Claim, string, error) {
	f, limit, err := s.claimFilter(ctx, q)
	if err != nil {
		return nil, "", err
	}
	f.Limit = limit + 1
	cs, err := s.store.SearchClaims(ctx, f)
	if err != nil {
		return nil, "", unavailable("search claims", err)
	}
	next := ""
	if len(cs) > limit {
		cs = cs[:limit]
		next = cs[limit-1].ID
	}
	for _, c := range cs {
		c.Status = c.EffectiveStatus(f.Now)
	}
	return cs, next, nil
}

func (s *Service) claimFilter(ctx context.Context, q ClaimSearch) (store.ClaimSearch, int, error) {
	var v coupon.Validation
	status, err := coupon.ParseClaimStatus(q.Status)
	if err != nil {
		return store.ClaimSearch{}, 0, err
	}
	if q.Cursor != "" && !coupon.ValidID(q.Cursor) {
		v.Add("cursor", "is not a cursor this API returned")
	}
	if q.Code != "" {
		if c, err := coupon.ParseCode(q.Code); err == nil {
			q.Code = c
		}
	}
	limit := clampLimit(&v, q.Limit)
	ranges(&v, "claimed", q.ClaimedFrom, q.ClaimedTo)
	ranges(&v, "valid_to", q.ValidToFrom, q.ValidToTo)
	if err := v.Err(); err != nil {
		return store.ClaimSearch{}, 0, err
	}
	merchant, ok := scopeMerchant(ctx, q.MerchantID)
	if !ok {
		merchant = "\x00" // another merchant's: matches nothing
	}
	return store.ClaimSearch{
		BatchID: q.BatchID, MerchantID: merchant, UserID: q.UserID, Phone: q.Phone, Code: q.Code, Channel: q.Channel,
		Status: status, Now: s.clock(),
		ClaimedFrom: coupon.UTC(q.ClaimedFrom), ClaimedTo: coupon.UTC(q.ClaimedTo),
		ValidToFrom: coupon.UTC(q.ValidToFrom), ValidToTo: coupon.UTC(q.ValidToTo),
		BeforeID: q.Cursor,
	}, limit, nil
}

// scopeMerchant returns the merchant filter a caller may use: a merchant's
// own, whatever it asked (ok false if it asked for another's); others' as asked.
func scopeMerchant(ctx context.Context, asked string) (string, bool) {
	m, scoped := auth.MerchantScope(ctx)
	if !scoped {
		return asked, true
	}
	return m, asked == "" || asked == m
}

func ranges(v *coupon.Validation, field string, from, to time.Time) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		v.Addf(field+"_to", "must be after %s_from", field)
	}
}

// CodeSearch selects codes.
type CodeSearch struct {
	BatchID, MerchantID, Code string
	Status                    string // claimed, unclaimed
	CreatedFrom, CreatedTo    time.Time
	Cursor                    string
	Limit                     int
}

// SearchCodes finds codes, by code, with the cursor of the next page.
func (s *Service) SearchCodes(ctx context.Context, q CodeSearch) ([]*coupon.Code, string, error) {
	var v coupon.Validation
	switch coupon.CodeStatus(q.Status) {
	case "", coupon.CodeClaimed, coupon.CodeUnclaimed:
	default:
		v.Add("status", "must be claimed or unclaimed")
	}
	limit := clampLimit(&v, q.Limit)
	ranges(&v, "created", q.CreatedFrom, q.CreatedTo)
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if q.Code != "" {
		if c, err := coupon.ParseCode(q.Code); err == nil {
			q.Code = c
		}
	}
	merchant, ok := scopeMerchant(ctx, q.MerchantID)
	if !ok {
		return nil, "", nil
	}
	cs, err := s.store.SearchCodes(ctx, store.CodeSearch{BatchID: q.BatchID, MerchantID: merchant, Code: q.Code,
		Status: coupon.CodeStatus(q.Status), CreatedFrom: coupon.UTC(q.CreatedFrom), CreatedTo: coupon.UTC(q.CreatedTo),
		AfterCode: q.Cursor, Limit: limit + 1})
	if err != nil {
		return nil, "", unavailable("search codes", err)
	}
	next := ""
	if len(cs) > limit {
		cs = cs[:limit]
		next = cs[limit-1].Code
	}
	return cs, next, nil
}

// RedemptionSearch selects redemptions.
type RedemptionSearch struct {
	UserID, OrderID, BatchID, MerchantID string
	Status                               string
	ReservedFrom, ReservedTo             time.Time
	Cursor                               string
	Limit                                int
}

// SearchRedemptions finds redemptions, newest first, with the cursor of
// the next page.
func (s *Service) SearchRedemptions(ctx context.Context, q RedemptionSearch) ([]*coupon.Redemption, string, error) {
	var v coupon.Validation
	switch coupon.RedemptionStatus(q.Status) {
	case "", coupon.RedemptionReserved, coupon.RedemptionConfirmed, coupon.RedemptionCancelled,
		coupon.RedemptionPartiallyRefunded, coupon.RedemptionRefunded:
	default:
		v.Add("status", "must be reserved, confirmed, cancelled, partially_refunded or refunded")
	}
	if q.Cursor != "" && !coupon.ValidID(q.Cursor) {
		v.Add("cursor", "is not a cursor this API returned")
	}
	limit := clampLimit(&v, q.Limit)
	ranges(&v, "reserved", q.ReservedFrom, q.ReservedTo)
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	merchant, ok := scopeMerchant(ctx, q.MerchantID)
	if !ok {
		return nil, "", nil
	}
	rs, err := s.store.SearchRedemptions(ctx, store.RedemptionSearch{UserID: q.UserID, OrderID: q.OrderID, BatchID: q.BatchID,
		MerchantID: merchant, Status: coupon.RedemptionStatus(q.Status),
		ReservedFrom: coupon.UTC(q.ReservedFrom), ReservedTo: coupon.UTC(q.ReservedTo), BeforeID: q.Cursor, Limit: limit + 1})
	if err != nil {
		return nil, "", unavailable("search redemptions", err)
	}
	next := ""
	if len(rs) > limit {
		rs = rs[:limit]
		next = rs[limit-1].ID
	}
	return rs, next, nil
}

// CheckClaimSearch validates a claims search without running it: what an
// export checks before its answer starts.
func (s *Service) CheckClaimSearch(ctx context.Context, q ClaimSearch) error {
	_, _, err := s.claimFilter(ctx, q)
	return err
}

// exportPage is the number of claims an export reads per store call.
const exportPage = store.MaxSearchLimit

// ClaimCSVHeader is the first line of a claims export.
var ClaimCSVHeader = []string{"id", "batch_id", "merchant_id", "code", "user_id", "phone", "status", "amount",
	"platform", "channel", "claimed_at", "valid_from", "valid_to", "updated_at"}

// ExportClaims writes every claim matching q (its cursor and limit aside)
// to w as CSV, newest first, reading keyset pages of 5,000 from the store
// (the replica where configured) and writing each before reading the next:
// memory stays flat for millions of rows. It returns the number of claims
// written. A write error (the client went away) ends the export.
func (s *Service) ExportClaims(ctx context.Context, q ClaimSearch, w io.Writer) (int64, error) {
	q.Cursor, q.Limit = "", 0
	f, _, err := s.claimFilter(ctx, q)
	if err != nil {
		return 0, err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(ClaimCSVHeader); err != nil {
		return 0, err
	}
	var n int64
	row := make([]string, len(ClaimCSVHeader))
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	f.Limit = exportPage
	for {
		cs, err := s.store.SearchClaims(ctx, f)
		if err != nil {
			return n, unavailable("export claims", err)
		}
		for _, c := range cs {
			row[0], row[1], row[2], row[3], row[4], row[5] = c.ID, c.BatchID, c.MerchantID, c.Code, c.UserID, c.Phone
			row[6], row[7] = string(c.EffectiveStatus(f.Now)), strconv.FormatInt(c.Amount, 10)
			row[8], row[9] = csvSafe(c.Platform), csvSafe(c.Channel)
			row[10], row[11], row[12], row[13] = ts(c.ClaimedAt), ts(c.ValidFrom), ts(c.ValidTo), ts(c.UpdatedAt)
			if err := cw.Write(row); err != nil {
				return n, err
			}
			n++
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, err
		}
		if len(cs) < exportPage {
			return n, nil
		}
		f.BeforeID = cs[len(cs)-1].ID
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
}

// csvSafe keeps a spreadsheet from reading a value as a formula.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@", rune(v[0])) {
		return "'" + v
	}
	return v
}

// ExportName is the file name of a claims export made at t.
func ExportName(t time.Time) string {
	return fmt.Sprintf("claims-%s.csv", t.UTC().Format("20060102T150405Z"))
}
