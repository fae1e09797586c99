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

// MaintainPartitions makes and drops the archive's monthly partitions;
// store.ErrNoArchive when the store's archive is not partitioned (SQLite).
func (s *Service) MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error) {
	for st := s.store; st != nil; {
		if m, ok := st.(store.PartitionMaintainer); ok {
			return m.MaintainPartitions(ctx, p)
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	return store.PartitionReport{}, store.ErrNoArchive
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
	for st != nil {
		if a, ok := st.(store.ArchiveStore); ok {
			return a
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}
