package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// TestHeldIndexBacksReservations: if a claim's status were wrong (a bug, a
// hand edit), the unique index on held redemption lines still refuses a
// second redemption of it.
func TestHeldIndexBacksReservations(t *testing.T) {
	ctx := t.Context()
	s := open(t, sqlite.Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &coupon.Batch{ID: coupon.NewID(now), Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now, BatchSpec: coupon.BatchSpec{
		Name: "held", Type: coupon.TypeCash, TotalQuantity: 1, PerUserLimit: 1,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
	}}
	require.NoError(t, s.CreateBatch(ctx, b))
	codes, err := s.AddCodes(ctx, b.ID, []coupon.Code{{Code: "HELD-1", Amount: 500}})
	require.NoError(t, err)
	c := coupon.NewClaim(b, coupon.NewID(now), coupon.Claimant{UserID: "u"}, codes[0].Code, 500, 1, "", now)
	require.NoError(t, s.InsertClaims(ctx, []store.ClaimWrite{{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: json.RawMessage(`{}`)}}})[0])

	reserve := func(order string) error {
		r := &coupon.Redemption{ID: coupon.NewID(now), OrderID: order, UserID: "u", Status: coupon.RedemptionReserved,
			Cart: coupon.Cart{Items: []coupon.CartItem{{ID: "1", ProductID: "p", UnitPrice: 1000, Quantity: 1}}},
			Claims: []coupon.RedemptionClaim{{ClaimID: c.ID, BatchID: b.ID, Code: c.Code, Discount: 500, Status: coupon.LineReserved,
				Lines: []coupon.Line{{Kind: coupon.LineItem, Item: "1", Amount: 500}}}},
			ReservedAt: now, ExpiresAt: now, UpdatedAt: now, NextCheckAt: now}
		_, err := s.Reserve(ctx, store.ReserveRedemption{Redemption: r, At: now.Add(time.Hour),
			Event: store.Event{Type: "redemption.reserved", AggregateID: r.ID, Payload: json.RawMessage(`{}`)}})
		return err
	}
	require.NoError(t, reserve("o1"))
	_, err = s.Writer().ExecContext(ctx, `UPDATE claims SET status = 'available' WHERE id = ?`, c.ID)
	require.NoError(t, err)

	err = reserve("o2")
	var ue *store.ClaimUnavailableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, store.UnavailableHeld, ue.Reason)
	_, err = s.GetRedemptionByOrder(ctx, "o2")
	require.ErrorIs(t, err, store.ErrNotFound, "nothing of o2 was written")
}

// TestRedemptionQueryPlans checks that the redemption and expiry queries use
// their indexes: the sweeper reads one batch's claims by the batch's own
// index and never scans the table or sorts.
func TestRedemptionQueryPlans(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "coupond.db")
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}))
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	plan := func(query string, args ...any) string {
		rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		defer rows.Close()
		var out string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out += detail + "\n"
		}
		return out
	}
	for _, tc := range []struct {
		query string
		args  []any
		want  string
	}{
		{`SELECT id FROM claims WHERE batch_id = ? AND (user_id, user_seq) > (?, ?) ORDER BY user_id, user_seq LIMIT 500`,
			[]any{"b", "u", 1}, "USING INDEX sqlite_autoindex_claims_3 (batch_id=? AND (user_id,user_seq)>(?,?))"},
		{`SELECT id FROM redemptions WHERE status = 'reserved' AND review_reason IS NULL AND next_check_at <= ? ORDER BY next_check_at, id LIMIT 100`,
			[]any{1}, "USING INDEX redemptions_due"},
		{`SELECT id FROM redemptions WHERE review_reason IS NOT NULL AND id > ? ORDER BY id LIMIT 100`,
			[]any{"x"}, "USING INDEX redemptions_review"},
		{`SELECT id FROM redemptions WHERE user_id = '' AND updated_at < ? LIMIT 100`, []any{1}, "USING INDEX redemptions_tombstones"},
		{`SELECT claim_id FROM redemption_claims WHERE redemption_id IN (SELECT value FROM json_each(?)) ORDER BY redemption_id, position`,
			[]any{`["a"]`}, "sqlite_autoindex_redemption_claims_1 (redemption_id=?)"},
	} {
		p := plan(tc.query, tc.args...)
		require.Contains(t, p, tc.want, "%s\n%s", tc.query, p)
		require.NotContains(t, p, "SCAN claims\n", "%s\n%s", tc.query, p)
	}
}
