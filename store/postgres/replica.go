package postgres

import (
	"context"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var _ store.ReplicaReader = (*Store)(nil)

// HasReplica reports whether the lists read a replica.
func (s *Store) HasReplica() bool { return s.replica != nil && s.replica != s.primary }

// ListBatchesPrimary is ListBatches read from the primary.
func (s *Store) ListBatchesPrimary(ctx context.Context, f store.BatchFilter) ([]*coupon.Batch, error) {
	return s.onPrimary().ListBatches(ctx, f)
}

// ListUserClaimsPrimary is ListUserClaims read from the primary.
func (s *Store) ListUserClaimsPrimary(ctx context.Context, f store.UserClaimFilter) ([]*coupon.Claim, error) {
	return s.onPrimary().ListUserClaims(ctx, f)
}

// onPrimary is a view of s whose replica queries go to the primary. It
// shares s's pools: it must not be closed.
func (s *Store) onPrimary() *Store {
	p := *s
	p.replica = s.primary
	return &p
}
