package store

import (
	"context"

	"github.com/coupond/coupond/coupon"
)

// ReplicaReader is implemented by a store that may read the queries that
// tolerate lag (ListBatches, ListUserClaims) from a read replica. The
// *Primary methods run the same queries on the primary: what a caller falls
// back to when the replica fails.
type ReplicaReader interface {
	// HasReplica reports whether a replica is configured: without one, the
	// lists read the primary already.
	HasReplica() bool
	ListBatchesPrimary(ctx context.Context, f BatchFilter) ([]*coupon.Batch, error)
	ListUserClaimsPrimary(ctx context.Context, f UserClaimFilter) ([]*coupon.Claim, error)
}
