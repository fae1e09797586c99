package service

import (
	"context"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// ArchiveClaims moves one chunk of settled claims (used, expired, refunded)
// claimed and last changed before before from the hot table to the archive,
// then drops the cached claims of their users, so that the next "my
// coupons" refills from the hot table without them. A chunk is one short
// transaction; worker.Archiver calls it until a chunk comes back short.
//
// The archive is reached past the store's guard: the archiver is a
// background loop with its own retries, and its calls must not trip the
// breaker that protects the claim path.
func (s *Service) ArchiveClaims(ctx context.Context, before time.Time, limit int) (store.ArchiveResult, error) {
	a := archiveOf(s.store)
	if a == nil {
		return store.ArchiveResult{}, store.ErrNoArchive
	}
	res, err := a.ArchiveClaims(ctx, store.ArchiveClaims{Before: before, At: s.clock(), Limit: limit})
	if err != nil {
		return res, err
	}
	if len(res.Users) > 0 {
		s.claimsChanged(ctx, res.Users...)
	}
	return res, nil
}

// PruneArchive deletes up to limit archived claims claimed before before.
func (s *Service) PruneArchive(ctx context.Context, before time.Time, limit int) (int, error) {
	a := archiveOf(s.store)
	if a == nil {
		return 0, store.ErrNoArchive
	}
	return a.PruneArchive(ctx, before, limit)
}

// ArchiveRedemptions moves one chunk of settled redemptions last changed
// before before (and with no claim left in the hot table) to the archive;
// store.ErrNoArchive when the store keeps every redemption in its tables
// (SQLite). Like ArchiveClaims it bypasses the store's guard.
func (s *Service) ArchiveRedemptions(ctx context.Context, before time.Time, limit int) (int, error) {
	a, ok := storeAs[store.RedemptionArchiver](s.store)
	if !ok {
		return 0, store.ErrNoArchive
	}
	return a.ArchiveRedemptions(ctx, store.ArchiveRedemptions{Before: before, At: s.clock(), Limit: limit})
}

// MaintainPartitions makes and drops the partitions of the archives, the
// outbox and the record of counted events; store.ErrNoArchive when the
// store partitions nothing (SQLite).
func (s *Service) MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error) {
	if m, ok := storeAs[store.PartitionMaintainer](s.store); ok {
		return m.MaintainPartitions(ctx, p)
	}
	return store.PartitionReport{}, store.ErrNoArchive
}

// PruneOutbox deletes up to limit published events created before before
// (on PostgreSQL, those its partitions do not hold: MaintainPartitions
// drops those).
func (s *Service) PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error) {
	p, ok := storeAs[store.OutboxPruner](s.store)
	if !ok {
		return 0, nil
	}
	return p.PruneOutbox(ctx, before, limit)
}

// storeAs finds an optional ability of the store behind its wrappers.
func storeAs[T any](st store.Store) (T, bool) {
	for st != nil {
		if a, ok := st.(T); ok {
			return a, true
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	var zero T
	return zero, false
}

// userClaimHistory is UserClaims with History set: the hot and the archived
// claims as one list in the same (valid_to, id) order, read from the store
// (the engine's cache holds hot claims only). The cursor is the one the hot
// list uses, so a client may switch to the history mid-way.
func (s *Service) userClaimHistory(ctx context.Context, user string, status coupon.ClaimStatus,
	afterTo time.Time, afterID string, limit int, now time.Time,
) ([]*coupon.Claim, string, error) {
	f := store.UserClaimFilter{UserID: user, Status: status, Now: now,
		AfterValidTo: afterTo, AfterID: afterID, Limit: limit + 1}
	var (
		cs  []*coupon.Claim
		err error
	)
	if a := archiveOf(s.store); a != nil {
		cs, err = a.ListUserClaimHistory(ctx, f)
	} else {
		cs, err = s.store.ListUserClaims(ctx, f)
	}
	if err != nil {
		return nil, "", unavailable("list claim history", err)
	}
	next := ""
	if len(cs) > limit {
		cs = cs[:limit]
		last := cs[limit-1]
		next = encodeClaimCursor(last.ValidTo, last.ID)
	}
	cs = visibleClaims(ctx, cs)
	for _, c := range cs {
		c.Status = c.EffectiveStatus(now)
	}
	return cs, next, nil
}

// archiveOf finds the archive behind the store's wrappers, or nil.
func archiveOf(st store.Store) store.ArchiveStore {
	a, _ := storeAs[store.ArchiveStore](st)
	return a
}
