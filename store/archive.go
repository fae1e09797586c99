package store

import (
	"context"
	"errors"
	"time"

	"github.com/coupond/coupond/coupon"
)

// ErrNoArchive: the store keeps no archive, or no partitioned one.
var ErrNoArchive = errors.New("store: no archive")

// ErrArchived: a refund names a claim that has moved to the archive, where
// claims no longer change (RefundRedemption).
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

// PartitionMaintainer is implemented by stores whose archive is partitioned
// by time (PostgreSQL).
type PartitionMaintainer interface {
	// MaintainPartitions makes sure the archive has a monthly partition
	// for every month from p.From through p.Ahead months after p.Now, and
	// drops the partitions that end at or before p.DropBefore (zero: none).
	// A month whose claims already sit in the default partition is left to
	// it (making the partition would fail). Idempotent.
	MaintainPartitions(ctx context.Context, p MaintainPartitions) (PartitionReport, error)
	// ArchivePartitions lists the archive's monthly partitions, oldest first.
	ArchivePartitions(ctx context.Context) ([]Partition, error)
}

// MaintainPartitions is one pass of partition maintenance.
type MaintainPartitions struct {
	Now        time.Time
	From       time.Time // the first month to make (zero: Now's month)
	Ahead      int       // months after Now's to make
	DropBefore time.Time // drop partitions ending at or before it; zero: keep all
}

// PartitionReport says what one maintenance pass did.
type PartitionReport struct {
	Created []string
	Dropped []string
	Skipped []string // months left to the default partition
}

// Partition is one monthly partition of the archive: claims with
// From ≤ claimed_at < To.
type Partition struct {
	Name     string
	From, To time.Time
}
