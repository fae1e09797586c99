package service

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// ApplyStatsEvents counts events of the bus into the statistics, all in one
// store transaction with the record of their ids, so that an event
// delivered again counts once. Events of types the statistics do not count
// are recorded and skipped; an event whose data cannot be read is skipped
// with a log line (it would fail the same way every time). A batch whose
// counted claims reach its total is marked stocked out (batch.stock_out).
func (s *Service) ApplyStatsEvents(ctx context.Context, envs []bus.Envelope) error {
	events := make([]store.StatsEvent, 0, len(envs))
	for _, env := range envs {
		deltas, err := statsDeltas(env)
		if err != nil {
			s.log.WarnContext(ctx, "stats: event not counted", "event", env.ID, "type", env.Type, "err", err)
		}
		events = append(events, store.StatsEvent{ID: env.ID, At: env.OccurredAt.UTC(), Deltas: deltas})
	}
	soldOut, err := s.store.ApplyStats(ctx, events)
	if err != nil {
		return unavailable("apply stats", err)
	}
	for _, id := range soldOut {
		if err := s.StockOut(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// statsDeltas reads what one event adds to the statistics.
func statsDeltas(env bus.Envelope) ([]store.StatsDelta, error) {
	switch env.Type {
	case bus.TypeClaimCreated:
		var d bus.ClaimCreated
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return nil, err
		}
		return []store.StatsDelta{{BatchID: d.BatchID, Hour: d.ClaimedAt, Platform: d.Platform, Channel: d.Channel,
			StatsCounts: store.StatsCounts{Claimed: 1, ClaimedAmount: d.Amount}}}, nil
	case bus.TypeClaimExpired:
		var d bus.ClaimExpiry
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return nil, err
		}
		return []store.StatsDelta{{ClaimID: d.ClaimID, Hour: d.At, Key: "expired:" + d.ClaimID,
			StatsCounts: store.StatsCounts{Expired: 1}}}, nil
	case bus.TypeRedemptionReserved, bus.TypeRedemptionConfirmed, bus.TypeRedemptionCancelled, bus.TypeRedemptionRefunded:
		var d bus.RedemptionChanged
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return nil, err
		}
		at := d.At
		if at.IsZero() {
			at = env.OccurredAt
		}
		var out []store.StatsDelta
		for _, c := range d.Claims {
			delta := store.StatsDelta{ClaimID: c.ClaimID, Hour: at}
			switch {
			case env.Type == bus.TypeRedemptionReserved && c.Status == string(coupon.LineReserved):
				delta.Reserved, delta.Key = 1, "reserved:"+d.RedemptionID+":"+c.ClaimID
			case env.Type == bus.TypeRedemptionConfirmed && c.Status == string(coupon.LineConfirmed):
				delta.Redeemed, delta.Discount, delta.Key = 1, c.Discount, "redeemed:"+d.RedemptionID+":"+c.ClaimID
				for _, l := range c.Lines {
					for _, cost := range l.Costs {
						if cost.Bearer == coupon.BearerMerchant {
							delta.DiscountMerchant += cost.Amount
						} else {
							delta.DiscountPlatform += cost.Amount
						}
					}
				}
			case env.Type == bus.TypeRedemptionCancelled && c.Status == string(coupon.LineReleased):
				delta.ReleasedByCancels, delta.Key = 1, "released:"+d.RedemptionID+":"+c.ClaimID
			case env.Type == bus.TypeRedemptionRefunded && (c.Status == string(coupon.LineReturned) || c.Status == string(coupon.LineRefunded)):
				// A later partial refund names the claims refunded before
				// again: the key counts each once.
				delta.Refunded, delta.RefundedDiscount, delta.Key = 1, c.Discount, "refunded:"+d.RedemptionID+":"+c.ClaimID
			default:
				continue
			}
			out = append(out, delta)
		}
		return out, nil
	}
	return nil, nil
}

// StatsBucket is the statistics of one day, hour, platform or channel.
type StatsBucket struct {
	Key string `json:"key" doc:"the day (YYYY-MM-DD), hour (RFC 3339), platform or channel; empty: none recorded"`
	store.StatsCounts
	ClaimRate      float64 `json:"claim_rate" doc:"claimed in this bucket / the batch's total quantity "`
	RedemptionRate float64 `json:"redemption_rate" doc:"redeemed / claimed in this bucket"`
}

// BatchStatsView is a batch's statistics.
type BatchStatsView struct {
	BatchID        string            `json:"batch_id" doc:"the batch"`
	MerchantID     string            `json:"merchant_id,omitempty" doc:"the batch's merchant"`
	TotalQuantity  int64             `json:"total_quantity" doc:"coupons the batch holds"`
	Generated      int64             `json:"generated" doc:"codes generated"`
	Totals         store.StatsCounts `json:"totals" doc:"every count, since the batch was published"`
	ClaimRate      float64           `json:"claim_rate" doc:"claimed / total quantity"`
	RedemptionRate float64           `json:"redemption_rate" doc:"redeemed / claimed"`
	ByDay          []StatsBucket     `json:"by_day" doc:"per UTC day, oldest first"`
	ByHour         []StatsBucket     `json:"by_hour" doc:"per hour, oldest first"`
	ByPlatform     []StatsBucket     `json:"by_platform" doc:"per claim platform"`
	ByChannel      []StatsBucket     `json:"by_channel" doc:"per channel"`
}

// BatchStats returns a batch's statistics: totals, rates, and the counts
// per day, hour, platform and channel, as counted from the event stream
// (live within the relay's and the consumer's delay: about a second).
func (s *Service) BatchStats(ctx context.Context, id string) (*BatchStatsView, error) {
	if !coupon.ValidID(id) {
		return nil, fmt.Errorf("batch %q: %w", id, coupon.ErrNotFound)
	}
	b, err := s.store.GetBatch(ctx, id)
	if err != nil {
		return nil, unavailable("get batch", notFound("batch", id, err))
	}
	if !auth.Sees(ctx, b.MerchantID) {
		return nil, fmt.Errorf("batch %s: %w", id, coupon.ErrNotFound)
	}
	rows, err := s.store.BatchStats(ctx, id)
	if err != nil {
		return nil, unavailable("batch stats", err)
	}
	v := &BatchStatsView{BatchID: b.ID, MerchantID: b.MerchantID, TotalQuantity: b.TotalQuantity, Generated: b.GeneratedCount}
	days, hours, platforms, channels := buckets{}, buckets{}, buckets{}, buckets{}
	for _, r := range rows {
		v.Totals.Add(r.StatsCounts)
		days.add(r.Hour.UTC().Format(time.DateOnly), r.StatsCounts)
		hours.add(r.Hour.UTC().Format(time.RFC3339), r.StatsCounts)
		platforms.add(r.Platform, r.StatsCounts)
		channels.add(r.Channel, r.StatsCounts)
	}
	v.ByDay, v.ByHour = days.list(b.TotalQuantity), hours.list(b.TotalQuantity)
	v.ByPlatform, v.ByChannel = platforms.list(b.TotalQuantity), channels.list(b.TotalQuantity)
	v.ClaimRate, v.RedemptionRate = rate(v.Totals.Claimed, b.TotalQuantity), rate(v.Totals.Redeemed, v.Totals.Claimed)
	return v, nil
}

// MerchantStatsView is the summary of a merchant's batches.
type MerchantStatsView struct {
	MerchantID     string            `json:"merchant_id" doc:"the merchant"`
	Totals         store.StatsCounts `json:"totals" doc:"the sum of its batches' counts"`
	RedemptionRate float64           `json:"redemption_rate" doc:"redeemed / claimed"`
	Batches        []BatchTotals     `json:"batches" doc:"each batch with statistics, by id"`
}

// BatchTotals is one batch's totals in a merchant summary.
type BatchTotals struct {
	BatchID string `json:"batch_id" doc:"the batch"`
	store.StatsCounts
}

// MerchantStats sums the statistics of a merchant's batches. A merchant
// sees its own summary only.
func (s *Service) MerchantStats(ctx context.Context, merchantID string) (*MerchantStatsView, error) {
	var v coupon.Validation
	coupon.ValidIdentifier(&v, "merchant_id", merchantID, true)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if !auth.Sees(ctx, merchantID) {
		return nil, fmt.Errorf("merchant %s: %w", merchantID, coupon.ErrNotFound)
	}
	rows, err := s.store.MerchantStats(ctx, merchantID)
	if err != nil {
		return nil, unavailable("merchant stats", err)
	}
	out := &MerchantStatsView{MerchantID: merchantID, Batches: make([]BatchTotals, 0, len(rows))}
	for _, r := range rows {
		out.Totals.Add(r.StatsCounts)
		out.Batches = append(out.Batches, BatchTotals{BatchID: r.BatchID, StatsCounts: r.StatsCounts})
	}
	out.RedemptionRate = rate(out.Totals.Redeemed, out.Totals.Claimed)
	return out, nil
}

// PruneStats forgets the record of events counted before before, 1,000 at
// a time until a chunk comes back short (at most 100 chunks a call: the
// consumer calls it every hour, between two fetches).
func (s *Service) PruneStats(ctx context.Context, before time.Time) (int, error) {
	const chunk = 1000
	total := 0
	for range 100 {
		n, err := s.store.PruneStatsEvents(ctx, before, chunk)
		total += n
		if err != nil {
			return total, unavailable("prune stats", err)
		}
		if n < chunk {
			break
		}
	}
	return total, nil
}

type buckets map[string]*store.StatsCounts

func (b buckets) add(key string, c store.StatsCounts) {
	if b[key] == nil {
		b[key] = &store.StatsCounts{}
	}
	b[key].Add(c)
}

// list returns the buckets by key, with their rates against total.
func (b buckets) list(total int64) []StatsBucket {
	out := make([]StatsBucket, 0, len(b))
	for k, c := range b {
		out = append(out, StatsBucket{Key: k, StatsCounts: *c, ClaimRate: rate(c.Claimed, total), RedemptionRate: rate(c.Redeemed, c.Claimed)})
	}
	slices.SortFunc(out, func(x, y StatsBucket) int {
		switch {
		case x.Key < y.Key:
			return -1
		case x.Key > y.Key:
			return 1
		}
		return 0
	})
	return out
}

func rate(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return float64(n) / float64(of)
}
