package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Queries of the back office, statistics and tagging (store.QueryStore).
// Searches build one statement of the filters given, each an indexed
// column (migration 00007), ordered by id so that the page is a keyset.

func searchLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > store.MaxSearchLimit:
		return store.MaxSearchLimit
	}
	return n
}

// where collects the terms of a search.
type where struct {
	terms []string
	args  []any
}

func (w *where) add(term string, args ...any) {
	w.terms = append(w.terms, term)
	w.args = append(w.args, args...)
}

func (w *where) eq(col, v string) {
	if v != "" {
		w.add(col+" = ?", v)
	}
}

// sparse is eq for a column whose index leaves the empty value out (00012):
// the query repeats the index's predicate so that SQLite may use it.
func (w *where) sparse(col, v string) {
	if v != "" {
		w.add(col+" = ? AND "+col+" <> ''", v)
	}
}

func (w *where) String() string {
	if len(w.terms) == 0 {
		return "1"
	}
	return strings.Join(w.terms, " AND ")
}

// SearchClaims returns claims matching f, newest first, from the hot table
// and the archive as one list: each side's first page from its own index,
// their union cut to the page, in one statement (one read transaction, in
// which a claim is in exactly one of the two), so a claim archived between
// two pages is listed once. Available and locked claims are never archived.
func (s *Store) SearchClaims(ctx context.Context, f store.ClaimSearch) ([]*coupon.Claim, error) {
	var w where
	w.eq("batch_id", f.BatchID)
	w.sparse("merchant_id", f.MerchantID)
	w.eq("user_id", f.UserID)
	w.sparse("phone", f.Phone)
	w.eq("code", f.Code)
	w.sparse("channel", f.Channel)
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	switch f.Status {
	case "":
	case coupon.ClaimAvailable:
		w.add("status = ? AND valid_to > ?", string(coupon.ClaimAvailable), micros(now))
	case coupon.ClaimExpired:
		w.add("(status = ? OR (status = ? AND valid_to <= ?))", string(coupon.ClaimExpired), string(coupon.ClaimAvailable), micros(now))
	default:
		w.add("status = ?", string(f.Status))
	}
	if !f.ClaimedFrom.IsZero() {
		w.add("id >= ? AND claimed_at >= ?", store.IDFloor(f.ClaimedFrom), micros(f.ClaimedFrom))
	}
	if !f.ClaimedTo.IsZero() {
		w.add("id < ? AND claimed_at < ?", store.IDFloor(f.ClaimedTo.Add(time.Millisecond)), micros(f.ClaimedTo))
	}
	if !f.ValidToFrom.IsZero() {
		w.add("valid_to >= ?", micros(f.ValidToFrom))
	}
	if !f.ValidToTo.IsZero() {
		w.add("valid_to < ?", micros(f.ValidToTo))
	}
	if f.BeforeID != "" {
		w.add("id < ?", f.BeforeID)
	}
	limit := searchLimit(f.Limit)
	if f.Status == coupon.ClaimAvailable || f.Status == coupon.ClaimLocked { // never archived
		return s.queryClaims(ctx, "search claims", `SELECT `+claimColumns+` FROM claims WHERE `+w.String()+
			` ORDER BY id DESC LIMIT ?`, append(w.args, limit)...)
	}
	args := append(append(append(slices.Clone(w.args), limit), w.args...), limit, limit)
	return s.queryClaims(ctx, "search claims", `SELECT `+claimColumns+` FROM (
		SELECT * FROM (SELECT `+claimColumns+` FROM claims WHERE `+w.String()+` ORDER BY id DESC LIMIT ?)
		UNION ALL
		SELECT * FROM (SELECT `+claimColumns+` FROM claims_archive WHERE `+w.String()+` ORDER BY id DESC LIMIT ?)
	) ORDER BY id DESC LIMIT ?`, args...)
}

// SearchCodes returns codes matching f, by code; a code whose claim is
// archived is claimed.
func (s *Store) SearchCodes(ctx context.Context, f store.CodeSearch) ([]*coupon.Code, error) {
	var w where
	w.eq("c.batch_id", f.BatchID)
	w.eq("c.code", f.Code)
	if f.MerchantID != "" {
		w.add("c.batch_id IN (SELECT id FROM batches WHERE merchant_id = ?)", f.MerchantID)
	}
	switch f.Status {
	case coupon.CodeClaimed:
		w.add("coalesce(cl.id, ca.id) IS NOT NULL")
	case coupon.CodeUnclaimed:
		w.add("cl.id IS NULL AND ca.id IS NULL")
	}
	if !f.CreatedFrom.IsZero() {
		w.add("c.created_at >= ?", micros(f.CreatedFrom))
	}
	if !f.CreatedTo.IsZero() {
		w.add("c.created_at < ?", micros(f.CreatedTo))
	}
	if f.AfterCode != "" {
		w.add("c.code > ?", f.AfterCode)
	}
	// A code's claim is in the hot table or in the archive (both unique by code).
	rows, err := s.reader.QueryContext(ctx, `SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at,
			coalesce(cl.id, ca.id), coalesce(cl.claimed_at, ca.claimed_at)
		FROM codes c LEFT JOIN claims cl ON cl.code = c.code LEFT JOIN claims_archive ca ON ca.code = c.code
		WHERE `+w.String()+` ORDER BY c.code LIMIT ?`, append(w.args, searchLimit(f.Limit))...)
	if err != nil {
		return nil, wrap("search codes", err)
	}
	var out []*coupon.Code
	err = eachRow(rows, func() error {
		var (
			c         coupon.Code
			tags      sql.NullString
			createdAt int64
			claimID   sql.NullString
			claimedAt sql.NullInt64
		)
		if err := rows.Scan(&c.Code, &c.BatchID, &c.Seq, &c.Amount, &tags, &createdAt, &claimID, &claimedAt); err != nil {
			return err
		}
		var err error
		if c.Tags, err = decodeTags(tags); err != nil {
			return err
		}
		c.CreatedAt = fromMicros(createdAt)
		c.Status = coupon.CodeUnclaimed
		if claimID.Valid {
			c.Status, c.ClaimID = coupon.CodeClaimed, claimID.String
			issued := fromNullMicros(claimedAt)
			c.IssuedAt = &issued
		}
		out = append(out, &c)
		return nil
	})
	if err != nil {
		return nil, wrap("search codes", err)
	}
	return out, nil
}

// SearchRedemptions returns redemptions matching f, newest first.
func (s *Store) SearchRedemptions(ctx context.Context, f store.RedemptionSearch) ([]*coupon.Redemption, error) {
	var w where
	w.eq("user_id", f.UserID)
	w.eq("order_id", f.OrderID)
	w.eq("status", string(f.Status))
	if f.BatchID != "" {
		w.add("id IN (SELECT redemption_id FROM redemption_claims WHERE batch_id = ?)", f.BatchID)
	}
	if f.MerchantID != "" {
		w.add(`id IN (SELECT rc.redemption_id FROM redemption_claims rc JOIN batches b ON b.id = rc.batch_id
			WHERE b.merchant_id = ?)`, f.MerchantID)
	}
	if !f.ReservedFrom.IsZero() {
		w.add("id >= ? AND reserved_at >= ?", store.IDFloor(f.ReservedFrom), micros(f.ReservedFrom))
	}
	if !f.ReservedTo.IsZero() {
		w.add("id < ? AND reserved_at < ?", store.IDFloor(f.ReservedTo.Add(time.Millisecond)), micros(f.ReservedTo))
	}
	if f.BeforeID != "" {
		w.add("id < ?", f.BeforeID)
	}
	// Tombstones (cancellations before any reservation) are bookkeeping.
	w.add("user_id <> ''")
	return s.listRedemptions(ctx, w.String()+` ORDER BY id DESC LIMIT ?`, append(w.args, searchLimit(f.Limit))...)
}

// CountUserClaims counts the user's available and soon expiring claims.
func (s *Store) CountUserClaims(ctx context.Context, userID string, now, soon time.Time) (int64, int64, error) {
	var available, expiring sql.NullInt64
	err := s.reader.QueryRowContext(ctx, `SELECT count(*), sum(valid_to <= ?) FROM claims
		WHERE user_id = ? AND valid_to > ? AND status = ?`, micros(soon), userID, micros(now), string(coupon.ClaimAvailable)).
		Scan(&available, &expiring)
	if err != nil {
		return 0, 0, wrap("count user claims", err)
	}
	return available.Int64, expiring.Int64, nil
}

const statsColumns = `claimed, claimed_amount, redeemed, discount, discount_platform, discount_merchant,
	expired, refunded, refunded_discount, reserved, released`

const statsUpsert = ` ON CONFLICT (batch_id, hour, platform, channel) DO UPDATE SET
	claimed = claimed + excluded.claimed, claimed_amount = claimed_amount + excluded.claimed_amount,
	redeemed = redeemed + excluded.redeemed, discount = discount + excluded.discount,
	discount_platform = discount_platform + excluded.discount_platform,
	discount_merchant = discount_merchant + excluded.discount_merchant,
	expired = expired + excluded.expired, refunded = refunded + excluded.refunded,
	refunded_discount = refunded_discount + excluded.refunded_discount,
	reserved = reserved + excluded.reserved, released = released + excluded.released`

func countArgs(c store.StatsCounts) []any {
	return []any{c.Claimed, c.ClaimedAmount, c.Redeemed, c.Discount, c.DiscountPlatform, c.DiscountMerchant,
		c.Expired, c.Refunded, c.RefundedDiscount, c.Reserved, c.ReleasedByCancels}
}

// statsRow names a row of batch_stats.
type statsRow struct {
	batch    string
	hour     int64
	platform string
	channel  string
}

// ApplyStats counts the events not counted yet, in one transaction.
func (s *Store) ApplyStats(ctx context.Context, events []store.StatsEvent) ([]string, error) {
	if len(events) == 0 {
		return nil, nil
	}
	now := micros(s.now())
	touched := map[string]bool{}
	err := s.writeTx(ctx, "apply stats", func(tx *sql.Tx) error {
		// Each statement is parsed once for the whole group of events: the
		// consumer runs beside the claims, and parsing was most of its cost.
		var stmts [3]*sql.Stmt
		for i, q := range []string{
			`INSERT INTO stats_seen (key, at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
			`INSERT INTO batch_stats (batch_id, hour, platform, channel, ` + statsColumns + `)
				SELECT batch_id, ?, platform, channel, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM claims WHERE id = ? AND true` +
				statsUpsert + ` RETURNING batch_id`,
			`INSERT INTO batch_stats (batch_id, hour, platform, channel, ` + statsColumns + `)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)` + statsUpsert,
		} {
			st, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return wrap("apply stats: prepare", err)
			}
			defer st.Close()
			stmts[i] = st
		}
		seenStmt, byClaim, byBatch := stmts[0], stmts[1], stmts[2]
		seen := func(key string) (bool, error) {
			res, err := seenStmt.ExecContext(ctx, key, now)
			if err != nil {
				return false, wrap("apply stats: record", err)
			}
			n, err := res.RowsAffected()
			return n == 0, err
		}
		rows := map[statsRow]*store.StatsCounts{}
		var order []statsRow
		for _, ev := range events {
			dup, err := seen(fmt.Sprintf("e:%d", ev.ID))
			if err != nil {
				return err
			}
			if dup {
				continue
			}
			for _, d := range ev.Deltas {
				if d.Key != "" {
					if dup, err := seen("k:" + d.Key); err != nil {
						return err
					} else if dup {
						continue
					}
				}
				hour := micros(d.Hour.UTC().Truncate(time.Hour))
				args := countArgs(d.StatsCounts)
				if d.ClaimID != "" {
					var batch string
					err := byClaim.QueryRowContext(ctx, append(append([]any{hour}, args...), d.ClaimID)...).Scan(&batch)
					if errors.Is(err, sql.ErrNoRows) {
						continue
					}
					if err != nil {
						return wrap("apply stats", err)
					}
					if d.Claimed != 0 {
						touched[batch] = true
					}
					continue
				}
				// Summed per row and written once for the group: a flash
				// sale's claims are mostly one row's.
				k := statsRow{d.BatchID, hour, d.Platform, d.Channel}
				if sum := rows[k]; sum != nil {
					sum.Add(d.StatsCounts)
				} else {
					c := d.StatsCounts
					rows[k] = &c
					order = append(order, k)
				}
				if d.Claimed != 0 {
					touched[d.BatchID] = true
				}
			}
		}
		for _, k := range order {
			_, err := byBatch.ExecContext(ctx, append([]any{k.batch, k.hour, k.platform, k.channel}, countArgs(*rows[k])...)...)
			if err != nil {
				return wrap("apply stats", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var soldOut []string
	for b, claimed := range touched {
		if !claimed {
			continue
		}
		var done bool
		err := s.reader.QueryRowContext(ctx, `SELECT coalesce((SELECT sum(claimed) FROM batch_stats WHERE batch_id = b.id), 0) >= b.total_quantity
			FROM batches b WHERE b.id = ?`, b).Scan(&done)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, wrap("apply stats: totals", err)
		}
		if done {
			soldOut = append(soldOut, b)
		}
	}
	return soldOut, nil
}

// BatchStats returns the batch's rows.
func (s *Store) BatchStats(ctx context.Context, batchID string) ([]store.StatsRow, error) {
	return s.statsRows(ctx, `SELECT batch_id, hour, platform, channel, `+statsColumns+`
		FROM batch_stats WHERE batch_id = ? ORDER BY hour, platform, channel`, batchID)
}

// MerchantStats returns the totals of the merchant's batches.
func (s *Store) MerchantStats(ctx context.Context, merchantID string) ([]store.StatsRow, error) {
	return s.statsRows(ctx, `SELECT st.batch_id, 0, '', '', sum(claimed), sum(claimed_amount), sum(redeemed), sum(discount),
		sum(discount_platform), sum(discount_merchant), sum(expired), sum(refunded), sum(refunded_discount), sum(reserved), sum(released)
		FROM batch_stats st JOIN batches b ON b.id = st.batch_id WHERE b.merchant_id = ?
		GROUP BY st.batch_id ORDER BY st.batch_id`, merchantID)
}

func (s *Store) statsRows(ctx context.Context, q string, args ...any) ([]store.StatsRow, error) {
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("read stats", err)
	}
	var out []store.StatsRow
	err = eachRow(rows, func() error {
		var r store.StatsRow
		var hour int64
		c := &r.StatsCounts
		if err := rows.Scan(&r.BatchID, &hour, &r.Platform, &r.Channel, &c.Claimed, &c.ClaimedAmount, &c.Redeemed, &c.Discount,
			&c.DiscountPlatform, &c.DiscountMerchant, &c.Expired, &c.Refunded, &c.RefundedDiscount, &c.Reserved, &c.ReleasedByCancels); err != nil {
			return err
		}
		if hour != 0 {
			r.Hour = fromMicros(hour)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, wrap("read stats", err)
	}
	return out, nil
}

// PruneStatsEvents forgets old records of counted events.
func (s *Store) PruneStatsEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := s.writeTx(ctx, "prune stats events", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM stats_seen WHERE key IN
			(SELECT key FROM stats_seen WHERE at < ? AND key LIKE 'e:%' LIMIT ?)`, micros(before), clampLimit(limit))
		if err != nil {
			return wrap("prune stats events", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// MarkStockOut marks the batch stocked out, with its event, once.
func (s *Store) MarkStockOut(ctx context.Context, batchID string, at time.Time, ev store.Event) (bool, error) {
	var marked bool
	err := s.writeTx(ctx, "mark stock out", func(tx *sql.Tx) error {
		if err := batchExists(ctx, tx, batchID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO batch_flags (batch_id, stock_out_at) VALUES (?, ?)
			ON CONFLICT (batch_id) DO UPDATE SET stock_out_at = excluded.stock_out_at WHERE stock_out_at IS NULL`, batchID, micros(at))
		if err != nil {
			return wrap("mark stock out", err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		marked = true
		if ev.Type == "" {
			return nil
		}
		return insertEvent(ctx, tx, "mark stock out", ev, at)
	})
	return marked, err
}

// SetBatchTagged records the batch's tagging, with its event, on a change.
func (s *Store) SetBatchTagged(ctx context.Context, batchID string, tagged bool, at time.Time, ev store.Event) (bool, error) {
	var changed bool
	err := s.writeTx(ctx, "set batch tagged", func(tx *sql.Tx) error {
		if err := batchExists(ctx, tx, batchID); err != nil {
			return err
		}
		q := `UPDATE batch_flags SET tagged = 0, changed_at = ? WHERE batch_id = ? AND tagged = 1`
		args := []any{micros(at), batchID}
		if tagged {
			q = `INSERT INTO batch_flags (batch_id, tagged, changed_at) VALUES (?, 1, ?)
				ON CONFLICT (batch_id) DO UPDATE SET tagged = 1, changed_at = excluded.changed_at WHERE tagged = 0`
			args = []any{batchID, micros(at)}
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return wrap("set batch tagged", err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		changed = true
		if ev.Type == "" {
			return nil
		}
		return insertEvent(ctx, tx, "set batch tagged", ev, at)
	})
	return changed, err
}

// BatchFlags returns the batch's record, from the writer so that it is
// the latest.
func (s *Store) BatchFlags(ctx context.Context, batchID string) (store.BatchFlags, error) {
	var f store.BatchFlags
	var stockOut, changed sql.NullInt64
	var tagged int64
	err := s.reader.QueryRowContext(ctx, `SELECT stock_out_at, tagged, changed_at FROM batch_flags WHERE batch_id = ?`, batchID).
		Scan(&stockOut, &tagged, &changed)
	if errors.Is(err, sql.ErrNoRows) {
		return f, nil
	}
	if err != nil {
		return f, wrap("batch flags", err)
	}
	f.StockOutAt, f.Tagged, f.ChangedAt = fromNullMicros(stockOut), tagged == 1, fromNullMicros(changed)
	return f, nil
}

// TaggedBatches lists the tagged batches by id.
func (s *Store) TaggedBatches(ctx context.Context, afterID string, limit int) ([]string, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT batch_id FROM batch_flags WHERE tagged = 1 AND batch_id > ?
		ORDER BY batch_id LIMIT ?`, afterID, clampLimit(limit))
	if err != nil {
		return nil, wrap("tagged batches", err)
	}
	var out []string
	err = eachRow(rows, func() error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		out = append(out, id)
		return nil
	})
	if err != nil {
		return nil, wrap("tagged batches", err)
	}
	return out, nil
}

func batchExists(ctx context.Context, tx *sql.Tx, batchID string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM batches WHERE id = ?`, batchID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: batch %s: %w", batchID, store.ErrNotFound)
	}
	if err != nil {
		return wrap("look up batch", err)
	}
	return nil
}
