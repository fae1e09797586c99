package store

import (
	"context"
	"errors"
	"time"

	"github.com/coupond/coupond/coupon"
)

// ErrNoArchive: the store keeps no archive, or no partitioned one.
var ErrNoArchive = errors.New("store: no archive")

// ErrArchived: a refund names a claim, or a redemption, that has moved to
// the archive, where nothing changes any more (RefundRedemption).
var ErrArchived = errors.New("store: the claim is archived")

// ArchiveStore is implemented by stores that keep settled claims apart from
// the hot claims table (both stores do; found by type assertion, so a
// wrapper that does not pass it on simply has no archive).
//
// A claim is in the hot table or in the archive, never in both and never in
// neither: it moves in one transaction. Everything that must consider every
// claim ever made reads both — Snapshot, UnclaimedCodes, ClaimedCodes,
// ClaimedCount, GetClaim, GetClaimByKey, GetCode, the identity counts and
// the audit — so a code or a user's sequence number that went to the
// archive is never handed out again, and an idempotent replay of an
// archived claim returns it. The hot table's constraints do not see the
// archive: the engine, rebuilt from both, is what keeps an archived code
// out of the pool, and a claim is archived only long after its commit, when
// no claim in flight can race it. ListUserClaims and the engine's cache of
// a user's claims hold hot claims only.
type ArchiveStore interface {
	// ArchiveClaims moves up to p.Limit claims that are settled (used,
	// expired or refunded), claimed and last changed before p.Before, and
	// not held by a reserved redemption line, from the hot table into the
	// archive, in one short transaction that skips rows others have
	// locked. It returns the users whose claims moved; fewer than p.Limit
	// moved means none was left to move when it ran.
	ArchiveClaims(ctx context.Context, p ArchiveClaims) (ArchiveResult, error)
	// ListUserClaimHistory is ListUserClaims over the hot and the archived
	// claims as one list in the same (valid_to, id) order: a claim that
	// moves between two pages is listed once, as neither key changes.
	ListUserClaimHistory(ctx context.Context, f UserClaimFilter) ([]*coupon.Claim, error)
	// PruneArchive deletes up to limit archived claims claimed before
	// before and returns how many (SQLite's retention; PostgreSQL drops
	// partitions instead, and prunes only its default partition here).
	PruneArchive(ctx context.Context, before time.Time, limit int) (int, error)
}

// ArchiveClaims selects the claims one ArchiveClaims call moves.
type ArchiveClaims struct {
	Before time.Time // claimed_at and updated_at before it
	At     time.Time // recorded as archived_at; zero: the store's clock
	Limit  int       // ≤ 0: 500; at most 10000
}

// ArchiveResult is what one ArchiveClaims call moved.
type ArchiveResult struct {
	Moved int
	Users []string // the users of the moved claims, each once
}

// ArchiveLimit clamps an ArchiveClaims limit.
func (p ArchiveClaims) ArchiveLimit() int {
	switch {
	case p.Limit <= 0:
		return 500
	case p.Limit > 10000:
		return 10000
	}
	return p.Limit
}

// PartitionMaintainer is implemented by stores whose archive, outbox and
// record of counted events are partitioned by time (PostgreSQL).
type PartitionMaintainer interface {
	// MaintainPartitions makes sure the archives have a monthly partition
	// for every month from p.From through p.Ahead months after p.Now, and
	// drops the partitions that end at or before p.DropBefore (zero: none);
	// likewise the daily partitions of the outbox and of the counted
	// events, from p.Now's day through p.DaysAhead days after it, dropped
	// past OutboxDropBefore and EventsDropBefore unless they still hold
	// rows the policy keeps (PartitionReport.Kept). A period whose rows
	// already sit in the default partition is left to it (making the
	// partition would fail). A partition is made without blocking the
	// writers of its table; dropping one takes its table's lock for a
	// moment, with a short lock timeout. Idempotent.
	MaintainPartitions(ctx context.Context, p MaintainPartitions) (PartitionReport, error)
	// ArchivePartitions lists the archive's monthly partitions, oldest first.
	ArchivePartitions(ctx context.Context) ([]Partition, error)
}

// MaintainPartitions is one pass of partition maintenance.
//
// The monthly fields are those of the archives: claims_archive and, on
// PostgreSQL, redemptions_archive with its lines, all by month of the claim
// or reservation time. The daily fields are those of the outbox (by the
// event's creation time) and of the record of the events the statistics
// counted (by the event's own time, the same on every delivery).
type MaintainPartitions struct {
	Now        time.Time
	From       time.Time // the first month to make (zero: Now's month)
	Ahead      int       // months after Now's to make
	DropBefore time.Time // drop archive partitions ending at or before it; zero: keep all

	// DaysAhead is how many days after Now's get their outbox and
	// counted-events partitions (≤ 0: Now's day only).
	DaysAhead int
	// OutboxDropBefore drops the outbox partitions ending at or before it,
	// except one that still holds an unpublished event; zero: keep all.
	OutboxDropBefore time.Time
	// EventsDropBefore drops the partitions of the counted events' record
	// ending at or before it, except one in which an event was recorded
	// at or after it (a late delivery still within its dedupe window);
	// zero: keep all.
	EventsDropBefore time.Time
}

// PartitionReport says what one maintenance pass did.
type PartitionReport struct {
	Created []string
	Dropped []string
	Skipped []string // periods left to the default partition (it holds rows of them)
	Kept    []string // partitions past their retention kept for the rows they still hold
}

// Partition is one monthly partition of the archive: claims with
// From ≤ claimed_at < To.
type Partition struct {
	Name     string
	From, To time.Time
}

// ArchiveRedemptions selects the redemptions one ArchiveRedemptions call
// moves.
type ArchiveRedemptions struct {
	Before time.Time // last changed before it
	At     time.Time // recorded as archived_at; zero: the store's clock
	Limit  int       // ≤ 0: 500; at most 10000
}

// RedemptionArchiver is implemented by stores that move settled
// redemptions, with their lines, to an archive partitioned by time
// (PostgreSQL; SQLite keeps every redemption in its tables).
//
// A redemption is in the hot tables or in the archive, never both. Every
// read of redemptions by id or order reads both (GetRedemption,
// GetRedemptionByOrder, the searches, Reserve's and InsertTombstone's
// check that an order has no redemption yet), so an order id is redeemed
// at most once whether or not its first redemption was archived. An
// archived redemption no longer changes: confirming or cancelling it again
// answers as it did before (unchanged, or ErrRedemptionStatus), and
// RefundRedemption refuses it with ErrArchived.
type RedemptionArchiver interface {
	// ArchiveRedemptions moves up to p.Limit redemptions that are settled
	// (confirmed, cancelled, partially or fully refunded; not a
	// tombstone, not on the review list), last changed before p.Before,
	// and none of whose reserved or confirmed lines holds a claim still in
	// the hot claims table — so that nothing can still change them — in
	// one short transaction that skips rows others have locked. It returns
	// how many moved.
	ArchiveRedemptions(ctx context.Context, p ArchiveRedemptions) (int, error)
}

// ArchiveLimit clamps an ArchiveRedemptions limit.
func (p ArchiveRedemptions) ArchiveLimit() int { return ArchiveClaims{Limit: p.Limit}.ArchiveLimit() }

// OutboxPruner is implemented by stores that delete published events
// (both): SQLite deletes them row by row; PostgreSQL drops whole daily
// partitions in MaintainPartitions and deletes here only from the default
// partition, which takes events no daily partition covers.
type OutboxPruner interface {
	// PruneOutbox deletes up to limit published events created before
	// before and returns how many; an unpublished event is never deleted.
	PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error)
}
