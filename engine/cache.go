package engine

import (
	"context"
	"time"
)

// Cache is the part of the engine that serves "my coupons" fast: a user's
// claims (encoded by the caller as one opaque value), filled on read and
// kept exact on every change; and the product tags of claimable batches.
// It is embedded in Engine.
//
// # Consistency of the user cache
//
// Every user has a version that every change of the user's claims bumps
// (UserClaimsChanged, SettleAndTouch), dropping the cached value in the same
// atomic step. A reader that misses gets the version with the miss, reads
// the store, and fills with FillUserClaims, which stores the value only if
// the version is still the one the miss returned. So a fill that read the
// store before a concurrent change — the classic fill race — is refused,
// and a reader never caches what a committed change made stale, provided
// the writer bumps after its commit and before it answers.
//
// Versions outlive cached values (VersionTTL against the fill's ttl), so a
// version cannot vanish and reappear with its old value between a miss and
// its fill.
type Cache interface {
	// GetUserClaims returns the user's cached value (hit true) or, on a
	// miss, the version to pass to FillUserClaims.
	GetUserClaims(ctx context.Context, userID string) (value []byte, version int64, hit bool, err error)
	// FillUserClaims caches value for ttl if the user's version is still
	// version; stored false means a change came between the miss and the
	// fill and nothing was stored. A ttl must be positive.
	FillUserClaims(ctx context.Context, userID string, version int64, value []byte, ttl time.Duration) (stored bool, err error)
	// UserClaimsChanged bumps the version of each user and drops the
	// cached value, atomically per user.
	UserClaimsChanged(ctx context.Context, userIDs []string) error
	// SettleAndTouch is Settle of each batch's codes and UserClaimsChanged
	// of users, in one round trip where the engine can: what a group
	// commit does after its transaction. Every Settle and every bump is
	// attempted; the first error is returned (ErrUnknownBatch of a batch
	// not loaded included).
	SettleAndTouch(ctx context.Context, settled []Settlement, userIDs []string) error

	// SetTags records that batchID tags each of refs ("product:<id>",
	// "category:<id>", "merchant:<id>") with data, replacing the batch's
	// earlier data; idempotent.
	SetTags(ctx context.Context, batchID string, refs []string, data []byte) error
	// RemoveTags removes batchID's tag from each of refs; idempotent.
	RemoveTags(ctx context.Context, batchID string, refs []string) error
	// Tags returns the tags on each of refs, one slice per ref in the order
	// given (empty when none), each ordered by batch id. The slices and
	// their data are read-only: an engine may share them between calls.
	Tags(ctx context.Context, refs []string) ([][]Tag, error)
}

// Settlement is the codes of one batch whose claims a group committed.
type Settlement struct {
	BatchID string
	Codes   []string
}

// Tag is one batch's tag on a product, category or merchant.
type Tag struct {
	BatchID string
	Data    []byte // the caller's encoding (JSON) of what product pages show
}

// VersionTTL is how long a user's version is kept after its last bump or
// fill. A fill's ttl must be shorter.
const VersionTTL = 24 * time.Hour

// DelayQueue is the part of the engine that holds jobs due at a time (the
// product tagging of batches whose claim windows open and close). It is
// embedded in Engine.
//
// A job is a name in a named queue with a due time. Take hands each due job
// to one caller only — of several instances polling a queue, one gets it —
// by moving its due time forward by a lease, atomically; Done removes it. A
// job taken and never done (its taker died) is due again when its lease
// ends, so every job fires at least once and, while takers live, once.
// Times are kept to the millisecond.
type DelayQueue interface {
	// Schedule adds job id to queue, due at at, or moves it there if it is
	// in the queue already (taken or not).
	Schedule(ctx context.Context, queue, id string, at time.Time) error
	// Unschedule removes a job; a missing one is ignored.
	Unschedule(ctx context.Context, queue, id string) error
	// Take returns up to limit jobs due at now (due time ≤ now), soonest
	// first, and makes each due again at now+lease, atomically.
	Take(ctx context.Context, queue string, now time.Time, limit int, lease time.Duration) ([]DelayedJob, error)
	// Done removes a taken job unless it was scheduled again (or taken
	// again) since: a job moved meanwhile stays, due at its new time.
	Done(ctx context.Context, queue string, job DelayedJob) error
}

// DelayedJob is a job handed out by Take.
type DelayedJob struct {
	ID    string
	At    time.Time // when it was due
	Lease time.Time // when it is due again unless Done
}
