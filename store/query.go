package store

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/coupond/coupond/coupon"
)

// QueryStore is the part of the store that back-office search, exports,
// statistics and product tagging use. It is embedded in Store.
//
// The searches and the statistics reads may read a replica and miss the
// changes of the last moments; every write, and BatchFlags, use the primary.
type QueryStore interface {
	// SearchClaims returns the claims matching every set field of f, newest
	// first (by id, which follows the claim time), after the keyset cursor
	// f.BeforeID, hot and archived alike: a claim that moves to the archive
	// between two pages is listed once (its id does not change). Each
	// filter is served by an index of each table (docs/queries.md).
	SearchClaims(ctx context.Context, f ClaimSearch) ([]*coupon.Claim, error)
	// SearchCodes returns the codes matching f, by code, after f.AfterCode;
	// a code whose claim is archived is claimed, with that claim.
	SearchCodes(ctx context.Context, f CodeSearch) ([]*coupon.Code, error)
	// SearchRedemptions returns the redemptions (with their claims)
	// matching f, newest first, before f.BeforeID, archived ones included
	// (store.RedemptionArchiver), each once.
	SearchRedemptions(ctx context.Context, f RedemptionSearch) ([]*coupon.Redemption, error)
	// CountUserClaims counts a user's available claims as of now and those
	// of them whose validity ends before soon (the badges of a user with
	// more claims than the cache keeps). It reads the primary.
	CountUserClaims(ctx context.Context, userID string, now, soon time.Time) (available, expiring int64, err error)

	// ApplyStats adds each event's deltas to the statistics, in one
	// transaction with the record of the events' ids: an event whose id is
	// recorded already adds nothing, and a delta with a Key recorded already
	// (by any event) adds nothing either. It returns the ids of the batches
	// whose claims counted reach their total quantity.
	ApplyStats(ctx context.Context, events []StatsEvent) (soldOut []string, err error)
	// BatchStats returns a batch's statistics rows, by hour, platform and
	// channel.
	BatchStats(ctx context.Context, batchID string) ([]StatsRow, error)
	// MerchantStats returns the totals of each of a merchant's batches that
	// has statistics (Hour zero, Platform and Channel empty).
	MerchantStats(ctx context.Context, merchantID string) ([]StatsRow, error)
	// PruneStatsEvents forgets the ids of events recorded before before, up
	// to limit, and returns how many: redeliveries come within minutes, so
	// the record need not grow forever. PostgreSQL drops whole daily
	// partitions of the record in MaintainPartitions and deletes here only
	// from its default partition (events without a time, or of a day no
	// partition covers).
	PruneStatsEvents(ctx context.Context, before time.Time, limit int) (int, error)

	// MarkStockOut records that a batch's last code was claimed and writes
	// ev (batch.stock_out) in the same transaction, once: marked is false,
	// and nothing is written, if it was marked already. ErrNotFound if there
	// is no such batch.
	MarkStockOut(ctx context.Context, batchID string, at time.Time, ev Event) (marked bool, err error)
	// SetBatchTagged records whether a batch's products are tagged, writing
	// ev (product.tags_changed) in the same transaction only if that changes
	// it: changed is false, and nothing is written, otherwise.
	SetBatchTagged(ctx context.Context, batchID string, tagged bool, at time.Time, ev Event) (changed bool, err error)
	// BatchFlags returns what the store records of a batch's tagging; the
	// zero BatchFlags for a batch with no record.
	BatchFlags(ctx context.Context, batchID string) (BatchFlags, error)
	// TaggedBatches returns the ids of the batches recorded as tagged, after
	// afterID, by id: what the engine must hold after it lost its state.
	TaggedBatches(ctx context.Context, afterID string, limit int) ([]string, error)
}

// ClaimSearch selects claims. Empty fields do not filter.
type ClaimSearch struct {
	BatchID    string
	MerchantID string
	UserID     string
	Phone      string
	Code       string
	Channel    string
	// Status is the effective status as of Now, as in UserClaimFilter.
	Status coupon.ClaimStatus
	Now    time.Time
	// ClaimedFrom ≤ claimed_at < ClaimedTo; zero: open.
	ClaimedFrom, ClaimedTo time.Time
	// ValidToFrom ≤ valid_to < ValidToTo; zero: open.
	ValidToFrom, ValidToTo time.Time
	BeforeID               string // keyset cursor: claims with a smaller id
	Limit                  int    // ≤ 0: 100; at most 5000
}

// CodeSearch selects codes.
type CodeSearch struct {
	BatchID    string
	MerchantID string
	Code       string
	Status     coupon.CodeStatus // claimed or unclaimed; empty: any
	// CreatedFrom ≤ created_at < CreatedTo; zero: open.
	CreatedFrom, CreatedTo time.Time
	AfterCode              string
	Limit                  int // ≤ 0: 100; at most 5000
}

// RedemptionSearch selects redemptions.
type RedemptionSearch struct {
	UserID     string
	OrderID    string
	BatchID    string // a redemption using a claim of the batch
	MerchantID string // a redemption using a claim of the merchant's batches
	Status     coupon.RedemptionStatus
	// ReservedFrom ≤ reserved_at < ReservedTo; zero: open.
	ReservedFrom, ReservedTo time.Time
	BeforeID                 string
	Limit                    int // ≤ 0: 100; at most 5000
}

// MaxSearchLimit bounds a search page (exports read pages of it).
const MaxSearchLimit = 5000

// StatsEvent is one bus event's contribution to the statistics.
type StatsEvent struct {
	ID int64 // the event's id (the outbox id)
	// At is when the event occurred (its envelope's occurred_at, the outbox
	// row's creation time): the same on every delivery of the event, so
	// PostgreSQL partitions the record of counted events by it and a
	// redelivery finds its first record in the same partition. Zero: an
	// event without a time, recorded apart (the default partition).
	At     time.Time
	Deltas []StatsDelta
}

// StatsDelta adds counts to one row of the statistics: the batch's, the
// hour's, the platform's and the channel's. With ClaimID set, the batch,
// platform and channel are the claim's, read from the store (a redemption
// event names claims only); a claim the store does not hold adds nothing.
type StatsDelta struct {
	BatchID  string
	ClaimID  string
	Hour     time.Time // truncated to the hour by the store
	Platform string
	Channel  string
	// Key, if set, makes the delta count once whatever the event: a
	// refunded claim, for instance, named again by a later partial refund.
	Key string
	StatsCounts
}

// StatsCounts are the counters of the statistics. Money is minor units.
type StatsCounts struct {
	Claimed           int64 `json:"claimed" doc:"coupons claimed (granted included)"`
	ClaimedAmount     int64 `json:"claimed_amount" doc:"face value of the coupons claimed"`
	Redeemed          int64 `json:"redeemed" doc:"coupons used by confirmed redemptions"`
	Discount          int64 `json:"discount" doc:"discount given by the coupons redeemed"`
	DiscountPlatform  int64 `json:"discount_platform" doc:"the part of the discount the platform bears"`
	DiscountMerchant  int64 `json:"discount_merchant" doc:"the part of the discount merchants bear"`
	Expired           int64 `json:"expired" doc:"coupons that expired unused"`
	Refunded          int64 `json:"refunded" doc:"coupons whose order was refunded (given back or voided)"`
	RefundedDiscount  int64 `json:"refunded_discount" doc:"discount of the refunded coupons"`
	Reserved          int64 `json:"reserved" doc:"coupons locked to orders"`
	ReleasedByCancels int64 `json:"released" doc:"coupons released by cancelled orders"`
}

// Add adds o to c.
func (c *StatsCounts) Add(o StatsCounts) {
	c.Claimed += o.Claimed
	c.ClaimedAmount += o.ClaimedAmount
	c.Redeemed += o.Redeemed
	c.Discount += o.Discount
	c.DiscountPlatform += o.DiscountPlatform
	c.DiscountMerchant += o.DiscountMerchant
	c.Expired += o.Expired
	c.Refunded += o.Refunded
	c.RefundedDiscount += o.RefundedDiscount
	c.Reserved += o.Reserved
	c.ReleasedByCancels += o.ReleasedByCancels
}

// StatsRow is one row of the statistics.
type StatsRow struct {
	BatchID  string
	Hour     time.Time
	Platform string
	Channel  string
	StatsCounts
}

// BatchFlags is the store's record of a batch's tagging.
type BatchFlags struct {
	StockOutAt time.Time // zero: not stocked out
	Tagged     bool
	ChangedAt  time.Time // of Tagged
}

// IDFloor returns the smallest id coupon.NewID makes at t (its millisecond
// with zero random bits): ids of things made at t or later are ≥ it, and
// those made before are below it. A time range on claims is also an id
// range, which their indexes order by.
func IDFloor(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
