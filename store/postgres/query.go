package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Queries of the back office, statistics and tagging (store.QueryStore).
// Searches and statistics reads go to the replica when there is one; the
// writes, and the reads that decide on a write, to the primary.

func searchLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > store.MaxSearchLimit:
		return store.MaxSearchLimit
	}
	return n
}

// where collects the terms of a search and numbers their parameters.
type where struct {
	terms []string
	args  []any
}

func (w *where) param(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) eq(col, v string) {
	if v != "" {
		w.terms = append(w.terms, col+" = "+w.param(v))
	}
}

func (w *where) add(term string) { w.terms = append(w.terms, term) }

func (w *where) String() string {
	if len(w.terms) == 0 {
		return "true"
	}
	return strings.Join(w.terms, " AND ")
}

// SearchClaims returns claims matching f, newest first, from the hot table
// and the archive as one list: each yields its first page from its own
// (column, id) index (the archive's partitions merged) and the union is cut
// to the page, in one statement — one snapshot, in which a claim is in
// exactly one of the two — so a claim archived between two pages is listed
// once: its id, the cursor's key, does not change. Available and locked
// claims are never archived: those searches read the hot table only.
//
// # claimsLead
//
// A filter of few distinct values (channel, status) alone is planned, as a
// generic plan, as a walk of the primary key newest first with a filter:
// right when matches are common, the whole table when they are rare
// (measured at 10 million claims: 3 s for a status no claim has; see
// docs/queries.md). Written as a range that fixes the column ("channel >=
// $1 AND channel <= $1", not "="), with ORDER BY "channel DESC, id DESC" —
// the same order, since the column is fixed — the page can only come
// cheaply from the (channel, id) index: an equality would let PostgreSQL
// drop the column from the sort and walk the primary key again. So the
// cost is bounded by the claims of that channel or status, not the table.
func (s *Store) SearchClaims(ctx context.Context, f store.ClaimSearch) ([]*coupon.Claim, error) {
	if f.Now.IsZero() {
		f.Now = s.now()
	}
	q, args := claimSearchSQL(f)
	rows, err := s.replica.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("search claims", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Claim, error) { return scanClaim(row) })
	if err != nil {
		return nil, wrap("search claims", err)
	}
	return out, nil
}

// claimSearchSQL is SearchClaims's statement for f (f.Now set).
func claimSearchSQL(f store.ClaimSearch) (string, []any) {
	var w where
	w.eq("batch_id", f.BatchID)
	w.eq("merchant_id", f.MerchantID)
	w.eq("user_id", f.UserID)
	w.eq("phone", f.Phone)
	w.eq("code", f.Code)
	// Without a filter of many values (batch, merchant, user, phone, code),
	// the page comes from the (channel, id) or (status, id) index, led by
	// a range that fixes the column — see claimsLead.
	lead := ""
	if f.BatchID == "" && f.MerchantID == "" && f.UserID == "" && f.Phone == "" && f.Code == "" {
		switch {
		case f.Channel != "":
			lead = "channel"
		case f.Status != "" && f.Status != coupon.ClaimExpired:
			lead = "status"
		}
	}
	if lead == "channel" {
		p := w.param(f.Channel)
		w.add("channel >= " + p + " AND channel <= " + p)
	} else {
		w.eq("channel", f.Channel)
	}
	now := f.Now
	switch {
	case f.Status == "":
	case lead == "status" && f.Status == coupon.ClaimAvailable:
		w.add("status >= 'available' AND status <= 'available' AND valid_to > " + w.param(now))
	case lead == "status":
		p := w.param(string(f.Status))
		w.add("status >= " + p + " AND status <= " + p)
	case f.Status == coupon.ClaimAvailable:
		w.add("status = 'available' AND valid_to > " + w.param(now))
	case f.Status == coupon.ClaimExpired:
		w.add("(status = 'expired' OR (status = 'available' AND valid_to <= " + w.param(now) + "))")
	default:
		w.eq("status", string(f.Status))
	}
	if !f.ClaimedFrom.IsZero() {
		w.add("id >= " + w.param(store.IDFloor(f.ClaimedFrom)) + " AND claimed_at >= " + w.param(f.ClaimedFrom))
	}
	if !f.ClaimedTo.IsZero() {
		w.add("id < " + w.param(store.IDFloor(f.ClaimedTo.Add(time.Millisecond))) + " AND claimed_at < " + w.param(f.ClaimedTo))
	}
	if !f.ValidToFrom.IsZero() {
		w.add("valid_to >= " + w.param(f.ValidToFrom))
	}
	if !f.ValidToTo.IsZero() {
		w.add("valid_to < " + w.param(f.ValidToTo))
	}
	if f.BeforeID != "" {
		w.add("id < " + w.param(f.BeforeID))
	}
	order := "id DESC"
	if lead != "" {
		order = lead + " DESC, id DESC"
	}
	cond, limit := w.String(), w.param(searchLimit(f.Limit))
	q := `SELECT ` + claimColumns + ` FROM claims WHERE ` + cond + ` ORDER BY ` + order + ` LIMIT ` + limit
	if f.Status != coupon.ClaimAvailable && f.Status != coupon.ClaimLocked { // never archived
		q = `SELECT ` + claimColumns + ` FROM ((` + q + `) UNION ALL (SELECT ` + claimColumns + ` FROM claims_archive WHERE ` +
			cond + ` ORDER BY ` + order + ` LIMIT ` + limit + `)) u ORDER BY id DESC LIMIT ` + limit
	}
	return q, w.args
}

// SearchCodes returns codes matching f, by code; a code whose claim is
// archived is claimed.
func (s *Store) SearchCodes(ctx context.Context, f store.CodeSearch) ([]*coupon.Code, error) {
	var w where
	w.eq("c.batch_id", f.BatchID)
	w.eq("c.code", f.Code)
	if f.MerchantID != "" {
		w.add("c.batch_id IN (SELECT id FROM batches WHERE merchant_id = " + w.param(f.MerchantID) + ")")
	}
	switch f.Status {
	case coupon.CodeClaimed:
		w.add("coalesce(cl.id, ca.id) IS NOT NULL")
	case coupon.CodeUnclaimed:
		w.add("cl.id IS NULL AND ca.id IS NULL")
	}
	if !f.CreatedFrom.IsZero() {
		w.add("c.created_at >= " + w.param(f.CreatedFrom))
	}
	if !f.CreatedTo.IsZero() {
		w.add("c.created_at < " + w.param(f.CreatedTo))
	}
	if f.AfterCode != "" {
		w.add("c.code > " + w.param(f.AfterCode))
	}
	// A code's claim is in the hot table or in the archive; the archive is
	// probed (each partition's code index) only for a code the hot table
	// does not hold.
	q := `SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, coalesce(cl.id, ca.id), coalesce(cl.claimed_at, ca.claimed_at)
		FROM codes c LEFT JOIN claims cl ON cl.code = c.code
		LEFT JOIN LATERAL (SELECT a.id, a.claimed_at FROM claims_archive a WHERE cl.id IS NULL AND a.code = c.code LIMIT 1) ca ON true
		WHERE ` + w.String() + ` ORDER BY c.code LIMIT ` + w.param(searchLimit(f.Limit))
	rows, err := s.replica.Query(ctx, q, w.args...)
	if err != nil {
		return nil, wrap("search codes", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Code, error) {
		var (
			c         coupon.Code
			claimID   *string
			claimedAt *time.Time
		)
		if err := row.Scan(&c.Code, &c.BatchID, &c.Seq, &c.Amount, &c.Tags, &c.CreatedAt, &claimID, &claimedAt); err != nil {
			return nil, err
		}
		c.Tags, c.CreatedAt = fromTags(c.Tags), utc(c.CreatedAt)
		c.Status = coupon.CodeUnclaimed
		if claimID != nil {
			issued := utc(*claimedAt)
			c.Status, c.ClaimID, c.IssuedAt = coupon.CodeClaimed, *claimID, &issued
		}
		return &c, nil
	})
	if err != nil {
		return nil, wrap("search codes", err)
	}
	return out, nil
}

// SearchRedemptions returns redemptions matching f, newest first, from the
// hot tables and the archive as one list: each side yields its first page
// from its own indexes and the union is cut to the page, in one statement
// (one snapshot), so a redemption moving to the archive between two pages
// is listed once — its id, the cursor's key, does not change.
func (s *Store) SearchRedemptions(ctx context.Context, f store.RedemptionSearch) ([]*coupon.Redemption, error) {
	var w where
	limit := w.param(searchLimit(f.Limit))
	branch := func(table, lines string) string {
		w.terms = nil
		w.eq("user_id", f.UserID)
		w.eq("order_id", f.OrderID)
		w.eq("status", string(f.Status))
		if f.BatchID != "" {
			w.add("id IN (SELECT redemption_id FROM " + lines + " WHERE batch_id = " + w.param(f.BatchID) + ")")
		}
		if f.MerchantID != "" {
			w.add(`id IN (SELECT rc.redemption_id FROM ` + lines + ` rc JOIN batches b ON b.id = rc.batch_id
				WHERE b.merchant_id = ` + w.param(f.MerchantID) + `)`)
		}
		if !f.ReservedFrom.IsZero() {
			w.add("id >= " + w.param(store.IDFloor(f.ReservedFrom)) + " AND reserved_at >= " + w.param(f.ReservedFrom))
		}
		if !f.ReservedTo.IsZero() {
			w.add("id < " + w.param(store.IDFloor(f.ReservedTo.Add(time.Millisecond))) + " AND reserved_at < " + w.param(f.ReservedTo))
		}
		if f.BeforeID != "" {
			w.add("id < " + w.param(f.BeforeID))
		}
		w.add("user_id <> ''") // tombstones are bookkeeping
		return `(SELECT ` + redemptionColumns + ` FROM ` + table + ` WHERE ` + w.String() + ` ORDER BY id DESC LIMIT ` + limit + `)`
	}
	hot := branch("redemptions", "redemption_claims")
	q := `SELECT ` + redemptionColumns + `, false FROM ` + hot + ` h ORDER BY id DESC`
	if f.Status != coupon.RedemptionReserved { // a reserved redemption is never archived
		q = `SELECT * FROM (SELECT ` + redemptionColumns + `, false AS archived FROM ` + hot + ` h
			UNION ALL
			SELECT ` + redemptionColumns + `, true FROM ` + branch("redemptions_archive", "redemption_claims_archive") + ` a) u
			ORDER BY id DESC LIMIT ` + limit
	}
	var out []*coupon.Redemption
	err := inTx(ctx, s.replica, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, "search redemptions",
		func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, q, w.args...)
			if err != nil {
				return wrap("search redemptions", err)
			}
			var hotRs, archivedRs []*coupon.Redemption
			out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*coupon.Redemption, error) {
				var archived bool
				r, err := scanRedemption(extraRow{row, []any{&archived}})
				if err != nil {
					return nil, err
				}
				if archived {
					archivedRs = append(archivedRs, r)
				} else {
					hotRs = append(hotRs, r)
				}
				return r, nil
			})
			if err != nil {
				return wrap("search redemptions", err)
			}
			if err := readLines(ctx, tx, hotRs); err != nil {
				return err
			}
			return readArchivedLines(ctx, tx, archivedRs)
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountUserClaims counts the user's available and soon expiring claims on
// the primary: the badges must show the user's own last change.
func (s *Store) CountUserClaims(ctx context.Context, userID string, now, soon time.Time) (int64, int64, error) {
	var available, expiring int64
	err := s.primary.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE valid_to <= $1) FROM claims
		WHERE user_id = $2 AND valid_to > $3 AND status = 'available'`, soon, userID, now).Scan(&available, &expiring)
	if err != nil {
		return 0, 0, wrap("count user claims", err)
	}
	return available, expiring, nil
}

const statsColumns = `claimed, claimed_amount, redeemed, discount, discount_platform, discount_merchant,
	expired, refunded, refunded_discount, reserved, released`

const statsUpsert = ` ON CONFLICT (batch_id, hour, platform, channel) DO UPDATE SET
	claimed = batch_stats.claimed + excluded.claimed, claimed_amount = batch_stats.claimed_amount + excluded.claimed_amount,
	redeemed = batch_stats.redeemed + excluded.redeemed, discount = batch_stats.discount + excluded.discount,
	discount_platform = batch_stats.discount_platform + excluded.discount_platform,
	discount_merchant = batch_stats.discount_merchant + excluded.discount_merchant,
	expired = batch_stats.expired + excluded.expired, refunded = batch_stats.refunded + excluded.refunded,
	refunded_discount = batch_stats.refunded_discount + excluded.refunded_discount,
	reserved = batch_stats.reserved + excluded.reserved, released = batch_stats.released + excluded.released`

// statsSums sums each column of statsColumns, as bigint.
const statsSums = `sum(claimed)::bigint, sum(claimed_amount)::bigint, sum(redeemed)::bigint, sum(discount)::bigint,
	sum(discount_platform)::bigint, sum(discount_merchant)::bigint, sum(expired)::bigint, sum(refunded)::bigint,
	sum(refunded_discount)::bigint, sum(reserved)::bigint, sum(released)::bigint`

// statsKey is a row of the statistics to add to: row names it, with the hour.
type statsKey[R comparable] struct {
	row  R
	hour time.Time
}

func addCounts[R comparable](m map[statsKey[R]]*store.StatsCounts, k statsKey[R], c store.StatsCounts) {
	if sum := m[k]; sum != nil {
		sum.Add(c)
		return
	}
	m[k] = &c
}

type statsRowSum[R comparable] struct {
	key    statsKey[R]
	counts *store.StatsCounts
}

// sortedStats lists m's rows in the order of their keys, hour last.
func sortedStats[R comparable](m map[statsKey[R]]*store.StatsCounts, compare func(a, b R) int) []statsRowSum[R] {
	out := make([]statsRowSum[R], 0, len(m))
	for k, c := range m {
		out = append(out, statsRowSum[R]{k, c})
	}
	slices.SortFunc(out, func(a, b statsRowSum[R]) int {
		return cmp.Or(compare(a.key.row, b.key.row), a.key.hour.Compare(b.key.hour))
	})
	return out
}

// statsColumnArrays are the counters of several rows, one array per column
// of statsColumns, for unnest.
type statsColumnArrays [11][]int64

func statsArrays(n int) *statsColumnArrays {
	var a statsColumnArrays
	for i := range a {
		a[i] = make([]int64, n)
	}
	return &a
}

func (a *statsColumnArrays) set(i int, c *store.StatsCounts) {
	for col, v := range [11]int64{c.Claimed, c.ClaimedAmount, c.Redeemed, c.Discount, c.DiscountPlatform, c.DiscountMerchant,
		c.Expired, c.Refunded, c.RefundedDiscount, c.Reserved, c.ReleasedByCancels} {
		a[col][i] = v
	}
}

func (a *statsColumnArrays) args() []any {
	out := make([]any, len(a))
	for i := range a {
		out[i] = a[i]
	}
	return out
}

// statsArrayParams is "$from::bigint[], …" for the 11 columns.
func statsArrayParams(from int) string {
	ps := make([]string, 11)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(from+i) + "::bigint[]"
	}
	return strings.Join(ps, ", ")
}

// returnedSet runs q and gathers the single column it returns.
func returnedSet[T comparable](ctx context.Context, tx pgx.Tx, q string, args ...any) (map[T]bool, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		return nil, err
	}
	out := make(map[T]bool, len(vals))
	for _, v := range vals {
		out[v] = true
	}
	return out, nil
}

// ApplyStats counts the events not counted yet, in one transaction of four
// statements whatever the number of events: the events' records, the
// once-only keys of the new events' deltas, then their counts summed per
// row of the statistics (rows named by batch), and per claim (rows read
// from the claims). Rows are upserted in the order of their keys, so two
// consumers applying at once cannot deadlock.
func (s *Store) ApplyStats(ctx context.Context, events []store.StatsEvent) ([]string, error) {
	if len(events) == 0 {
		return nil, nil
	}
	now := s.now()
	touched := map[string]bool{}
	err := inTx(ctx, s.primary, pgx.TxOptions{}, "apply stats", func(tx pgx.Tx) error {
		// The event's own time, not the time of counting, places its
		// record: a redelivery meets the first record in its partition.
		ids := make([]int64, len(events))
		ats := make([]pgtype.Timestamptz, len(events))
		for i, ev := range events {
			ids[i] = ev.ID
			ats[i] = pgtype.Timestamptz{Time: ev.At, Valid: true}
			if ev.At.IsZero() {
				ats[i] = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
			}
		}
		fresh, err := returnedSet[int64](ctx, tx, `INSERT INTO stats_events (id, occurred_at, recorded_at)
			SELECT id, at, $3 FROM unnest($1::bigint[], $2::timestamptz[]) AS e(id, at)
			ON CONFLICT DO NOTHING RETURNING id`, ids, ats, now)
		if err != nil {
			return wrap("apply stats: record", err)
		}
		var keys []string
		for _, ev := range events {
			if fresh[ev.ID] {
				for _, d := range ev.Deltas {
					if d.Key != "" {
						keys = append(keys, "k:"+d.Key)
					}
				}
			}
		}
		freshKeys := map[string]bool{}
		if len(keys) > 0 {
			freshKeys, err = returnedSet[string](ctx, tx, `INSERT INTO stats_seen (key, at)
				SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING RETURNING key`, keys, now)
			if err != nil {
				return wrap("apply stats: record", err)
			}
		}

		type rowKey struct{ batch, platform, channel string }
		type claimKey struct{ claim string }
		byBatch := map[statsKey[rowKey]]*store.StatsCounts{}
		byClaim := map[statsKey[claimKey]]*store.StatsCounts{}
		claimedByClaim := false
		for _, ev := range events {
			if !fresh[ev.ID] {
				continue
			}
			delete(fresh, ev.ID) // the same event twice in one group counts once
			for _, d := range ev.Deltas {
				if d.Key != "" {
					if !freshKeys["k:"+d.Key] {
						continue
					}
					delete(freshKeys, "k:"+d.Key)
				}
				hour := d.Hour.UTC().Truncate(time.Hour)
				if d.ClaimID != "" {
					addCounts(byClaim, statsKey[claimKey]{claimKey{d.ClaimID}, hour}, d.StatsCounts)
					claimedByClaim = claimedByClaim || d.Claimed != 0
					continue
				}
				addCounts(byBatch, statsKey[rowKey]{rowKey{d.BatchID, d.Platform, d.Channel}, hour}, d.StatsCounts)
				if d.Claimed != 0 {
					touched[d.BatchID] = true
				}
			}
		}

		if len(byBatch) > 0 {
			rows := sortedStats(byBatch, func(a, b rowKey) int {
				return cmp.Or(strings.Compare(a.batch, b.batch), strings.Compare(a.platform, b.platform), strings.Compare(a.channel, b.channel))
			})
			batches, platforms, channels := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
			hours := make([]time.Time, len(rows))
			counts := statsArrays(len(rows))
			for i, r := range rows {
				batches[i], platforms[i], channels[i], hours[i] = r.key.row.batch, r.key.row.platform, r.key.row.channel, r.key.hour
				counts.set(i, r.counts)
			}
			_, err := tx.Exec(ctx, `INSERT INTO batch_stats (batch_id, hour, platform, channel, `+statsColumns+`)
				SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], `+statsArrayParams(5)+`)`+statsUpsert,
				append([]any{batches, hours, platforms, channels}, counts.args()...)...)
			if err != nil {
				return wrap("apply stats", err)
			}
		}
		if len(byClaim) > 0 {
			rows := sortedStats(byClaim, func(a, b claimKey) int { return strings.Compare(a.claim, b.claim) })
			claims, hours := make([]string, len(rows)), make([]time.Time, len(rows))
			counts := statsArrays(len(rows))
			for i, r := range rows {
				claims[i], hours[i] = r.key.row.claim, r.key.hour
				counts.set(i, r.counts)
			}
			// Summed per row of the statistics, in the order of its key: two
			// claims of one batch, hour, platform and channel are one row.
			res, err := tx.Query(ctx, `INSERT INTO batch_stats (batch_id, hour, platform, channel, `+statsColumns+`)
				SELECT c.batch_id, d.hour, c.platform, c.channel, `+statsSums+`
				FROM unnest($1::text[], $2::timestamptz[], `+statsArrayParams(3)+`) AS d(claim_id, hour, `+statsColumns+`)
				JOIN claims c ON c.id = d.claim_id
				GROUP BY c.batch_id, d.hour, c.platform, c.channel
				ORDER BY c.batch_id, d.hour, c.platform, c.channel`+statsUpsert+` RETURNING batch_id`,
				append([]any{claims, hours}, counts.args()...)...)
			if err != nil {
				return wrap("apply stats", err)
			}
			batchIDs, err := pgx.CollectRows(res, pgx.RowTo[string])
			if err != nil {
				return wrap("apply stats", err)
			}
			if claimedByClaim {
				for _, b := range batchIDs {
					touched[b] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var soldOut []string
	for b := range touched {
		var done bool
		err := s.primary.QueryRow(ctx, `SELECT coalesce((SELECT sum(claimed) FROM batch_stats WHERE batch_id = b.id), 0) >= b.total_quantity
			FROM batches b WHERE b.id = $1`, b).Scan(&done)
		if errors.Is(err, pgx.ErrNoRows) {
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
		FROM batch_stats WHERE batch_id = $1 ORDER BY hour, platform, channel`, batchID)
}

// MerchantStats returns the totals of the merchant's batches.
func (s *Store) MerchantStats(ctx context.Context, merchantID string) ([]store.StatsRow, error) {
	return s.statsRows(ctx, `SELECT st.batch_id, NULL::timestamptz, '', '', sum(claimed)::bigint, sum(claimed_amount)::bigint,
		sum(redeemed)::bigint, sum(discount)::bigint, sum(discount_platform)::bigint, sum(discount_merchant)::bigint,
		sum(expired)::bigint, sum(refunded)::bigint, sum(refunded_discount)::bigint, sum(reserved)::bigint, sum(released)::bigint
		FROM batch_stats st JOIN batches b ON b.id = st.batch_id WHERE b.merchant_id = $1
		GROUP BY st.batch_id ORDER BY st.batch_id`, merchantID)
}

func (s *Store) statsRows(ctx context.Context, q string, args ...any) ([]store.StatsRow, error) {
	rows, err := s.replica.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("read stats", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.StatsRow, error) {
		var r store.StatsRow
		var hour *time.Time
		c := &r.StatsCounts
		err := row.Scan(&r.BatchID, &hour, &r.Platform, &r.Channel, &c.Claimed, &c.ClaimedAmount, &c.Redeemed, &c.Discount,
			&c.DiscountPlatform, &c.DiscountMerchant, &c.Expired, &c.Refunded, &c.RefundedDiscount, &c.Reserved, &c.ReleasedByCancels)
		if hour != nil {
			r.Hour = utc(*hour)
		}
		return r, err
	})
	if err != nil {
		return nil, wrap("read stats", err)
	}
	return out, nil
}

// PruneStatsEvents forgets the records of counted events recorded before
// before that the default partition holds (events without a time, or of a
// day no partition covered); the daily partitions are dropped whole by
// MaintainPartitions.
func (s *Store) PruneStatsEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.primary.Exec(ctx, `DELETE FROM stats_events_default WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM stats_events_default WHERE recorded_at < $1 LIMIT $2))`, before, clampLimit(limit))
	if err != nil {
		return 0, wrap("prune stats events", err)
	}
	return int(tag.RowsAffected()), nil
}

// MarkStockOut marks the batch stocked out, with its event, once.
func (s *Store) MarkStockOut(ctx context.Context, batchID string, at time.Time, ev store.Event) (bool, error) {
	var marked bool
	err := inTx(ctx, s.primary, pgx.TxOptions{}, "mark stock out", func(tx pgx.Tx) error {
		if err := batchExists(ctx, tx, batchID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO batch_flags (batch_id, stock_out_at) VALUES ($1, $2)
			ON CONFLICT (batch_id) DO UPDATE SET stock_out_at = excluded.stock_out_at WHERE batch_flags.stock_out_at IS NULL`,
			batchID, at)
		if err != nil {
			return wrap("mark stock out", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
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
	err := inTx(ctx, s.primary, pgx.TxOptions{}, "set batch tagged", func(tx pgx.Tx) error {
		if err := batchExists(ctx, tx, batchID); err != nil {
			return err
		}
		q := `UPDATE batch_flags SET tagged = false, changed_at = $2 WHERE batch_id = $1 AND tagged`
		if tagged {
			q = `INSERT INTO batch_flags (batch_id, tagged, changed_at) VALUES ($1, true, $2)
				ON CONFLICT (batch_id) DO UPDATE SET tagged = true, changed_at = excluded.changed_at WHERE NOT batch_flags.tagged`
		}
		tag, err := tx.Exec(ctx, q, batchID, at)
		if err != nil {
			return wrap("set batch tagged", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		changed = true
		if ev.Type == "" {
			return nil
		}
		return insertEvent(ctx, tx, "set batch tagged", ev, at)
	})
	return changed, err
}

// BatchFlags returns the batch's record, from the primary.
func (s *Store) BatchFlags(ctx context.Context, batchID string) (store.BatchFlags, error) {
	var f store.BatchFlags
	var stockOut, changed *time.Time
	err := s.primary.QueryRow(ctx, `SELECT stock_out_at, tagged, changed_at FROM batch_flags WHERE batch_id = $1`, batchID).
		Scan(&stockOut, &f.Tagged, &changed)
	if errors.Is(err, pgx.ErrNoRows) {
		return f, nil
	}
	if err != nil {
		return f, wrap("batch flags", err)
	}
	if stockOut != nil {
		f.StockOutAt = utc(*stockOut)
	}
	if changed != nil {
		f.ChangedAt = utc(*changed)
	}
	return f, nil
}

// TaggedBatches lists the tagged batches by id, from the primary.
func (s *Store) TaggedBatches(ctx context.Context, afterID string, limit int) ([]string, error) {
	rows, err := s.primary.Query(ctx, `SELECT batch_id FROM batch_flags WHERE tagged AND batch_id > $1
		ORDER BY batch_id LIMIT $2`, afterID, clampLimit(limit))
	if err != nil {
		return nil, wrap("tagged batches", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("tagged batches", err)
	}
	return out, nil
}

func batchExists(ctx context.Context, tx pgx.Tx, batchID string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM batches WHERE id = $1`, batchID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: batch %s: %w", batchID, store.ErrNotFound)
	}
	if err != nil {
		return wrap("look up batch", err)
	}
	return nil
}
