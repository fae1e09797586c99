// Package store defines the source of truth of coupond: batches, rules,
// codes, claims and the transactional outbox, behind one interface with a
// SQLite implementation (store/sqlite, the default) and a PostgreSQL one.
// Both pass the conformance suite in store/storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Errors of the store. Driver errors never leave an implementation: they
// are translated to these (wrapped with %w) or to the domain's sentinels.
var (
	ErrNotFound = coupon.ErrNotFound
	// ErrTotalExceeded: adding the codes would take the batch past its total.
	ErrTotalExceeded = errors.New("store: generated count would exceed the total quantity")
	// ErrGeneratedMoved: ContinueCodes found the batch's generated count
	// other than the caller read; someone else added codes meanwhile. Read
	// the batch again and draw the codes (and amounts) afresh.
	ErrGeneratedMoved = errors.New("store: generated count moved")
	// ErrStatus: the batch is not in one of the statuses a change starts from.
	ErrStatus = errors.New("store: batch status does not allow this change")
	// ErrVersion: the batch is not at the version the change was made for;
	// someone edited it since the caller read it.
	ErrVersion = errors.New("store: batch version moved")
	// ErrHasCodes: the draft holds codes (a publication under way, or
	// imported codes), drawn from its configuration as it is.
	ErrHasCodes = errors.New("store: batch holds codes")
	// Per-row outcomes of InsertClaims, each a constraint of the claims table.
	ErrCodeClaimed = errors.New("store: code already claimed")
	ErrSeqTaken    = errors.New("store: user sequence number already taken")
	ErrKeyUsed     = errors.New("store: idempotency key already used")
	ErrUnknownCode = errors.New("store: code does not belong to the batch")
	ErrOverLimit   = errors.New("store: user sequence number beyond the per-user limit")
)

// Store is the source of truth. It is safe for concurrent use. Every state
// change that is an event writes its outbox row in the same transaction.
type Store interface {
	RedemptionStore
	AccessStore
	DistributionStore
	QueryStore

	// CreateBatch inserts a new batch with its rules. b.ID is set by the
	// caller; an ID that exists already is refused with coupon.ErrConflict.
	// A zero b.Version is stored as 1.
	CreateBatch(ctx context.Context, b *coupon.Batch) error
	// GetBatch returns a batch with its rules, or ErrNotFound.
	GetBatch(ctx context.Context, id string) (*coupon.Batch, error)
	// ListBatches returns batches newest first, after filter.Cursor (an ID).
	// It may read a replica and miss changes of the last moments.
	ListBatches(ctx context.Context, f BatchFilter) ([]*coupon.Batch, error)
	// SetBatchStatus moves a batch from one of p.From to p.To and writes
	// p.Event (its zero CreatedAt becomes p.At) to the outbox, atomically. ErrStatus if the batch is in no
	// status of p.From; ErrVersion if p.Version is set and is not the
	// batch's; ErrNotFound if there is no such batch.
	SetBatchStatus(ctx context.Context, p SetBatchStatus) (*coupon.Batch, error)
	// UpdateBatch replaces the configuration of a draft batch that holds no
	// codes — its BatchSpec, rules included: the rules are replaced, in the
	// order given — raises its Version by one, sets its UpdatedAt to p.At
	// and writes p.Event to the outbox, in one transaction, and returns the
	// batch as it is then. Status, counts, CreatedAt and ID are kept.
	// Refusals change nothing and are checked in this order: ErrNotFound if
	// there is no such batch; ErrStatus if it is not a draft; ErrVersion if
	// p.Version is set and is not the batch's; ErrHasCodes if it holds codes
	// (its codes were drawn from the configuration it has). With the version
	// conditions of ContinueCodes and SetBatchStatus, a publication racing
	// an edit publishes the configuration its codes were drawn from: all of
	// the edit, or none of it.
	UpdateBatch(ctx context.Context, p UpdateBatch) (*coupon.Batch, error)
	// ClaimedCount counts the claims of a batch.
	ClaimedCount(ctx context.Context, batchID string) (int64, error)

	// AddCodes inserts codes into a batch (assigning their Seq) and raises
	// its generated count and amount in the same transaction, in a statement
	// that refuses to pass the total: ErrTotalExceeded, nothing inserted. A
	// code that exists already (in any batch) is skipped; the codes inserted
	// are returned, in order. A code with a zero CreatedAt gets the store's
	// clock. A call whose codes all exist already succeeds and inserts none,
	// even into a full batch. An amount below 1 is an error.
	AddCodes(ctx context.Context, batchID string, codes []coupon.Code) ([]coupon.Code, error)
	// ContinueCodes is AddCodes on the condition that the batch's generated
	// count is p.From and, if p.Version is set, that its version is
	// p.Version, both checked in the same transaction that bounds the count
	// by the total: otherwise ErrGeneratedMoved, nothing written. Generators
	// that race each draw their codes, and a split budget's amounts, from
	// the batch as they read it; the condition lets one write and makes the
	// others read again, so the total and the budget stay exact, and codes
	// drawn from a draft's configuration before an edit are never written
	// after it.
	ContinueCodes(ctx context.Context, p ContinueCodes) ([]coupon.Code, error)
	// UnclaimedCodes returns the codes of a batch with sequence numbers in
	// (afterSeq, throughSeq] that no claim holds, in sequence order: what
	// the engine's AddCodes loads. It reads the primary, never a replica.
	// ErrNotFound if there is no such batch.
	UnclaimedCodes(ctx context.Context, batchID string, afterSeq, throughSeq int64) ([]PoolCode, error)
	// GetCode returns a code with its derived status, or ErrNotFound.
	GetCode(ctx context.Context, code string) (*coupon.Code, error)

	// Snapshot reads, in one consistent read, what the engine needs to
	// rebuild a batch: the batch, its unclaimed codes in generation order,
	// each user's sequence numbers and the remembered idempotency keys. The
	// pool is exactly the unclaimed codes with sequence numbers up to the
	// batch's GeneratedCount, which becomes the engine's LoadedSeq.
	Snapshot(ctx context.Context, batchID string) (*BatchSnapshot, error)

	// InsertClaims writes claims, each with its outbox event, and returns
	// one outcome per claim, sharing transactions (group commit). nil means
	// the claim and its event are committed. A row a constraint refuses gets
	// ErrCodeClaimed, ErrSeqTaken, ErrKeyUsed, ErrUnknownCode or ErrOverLimit,
	// as a loop of single-row inserts in the given order would decide (the
	// first claim of a code, sequence number or key in a call wins), and the
	// others are still written; a claim whose ID exists, in the store or
	// earlier in the call, gets coupon.ErrConflict; a row whose data the
	// database refuses gets an error of its own. If the store fails, every
	// claim it has not committed gets that error. An event with a zero
	// CreatedAt gets the claim's ClaimedAt. Claims of several batches may
	// share a call.
	InsertClaims(ctx context.Context, writes []ClaimWrite) []error
	// ClaimedCodes returns those of codes that a claim holds, each once, in
	// any order (none for empty codes); the reconciler asks it about the
	// engine's pending claims.
	ClaimedCodes(ctx context.Context, codes []string) ([]string, error)
	// GetClaim returns a claim, or ErrNotFound.
	GetClaim(ctx context.Context, id string) (*coupon.Claim, error)
	// GetClaimByKey returns the claim a user made in a batch with an
	// idempotency key, or ErrNotFound.
	GetClaimByKey(ctx context.Context, batchID, userID, key string) (*coupon.Claim, error)
	// ListUserClaims returns a user's claims ordered by expiry (valid_to, id).
	// It may read a replica and miss changes of the last moments.
	ListUserClaims(ctx context.Context, f UserClaimFilter) ([]*coupon.Claim, error)

	// PendingEvents returns up to limit (≤ 0: 100; at most 1000) unpublished
	// outbox rows in id order. Ids follow insertion, not commit: a smaller id
	// can become visible after a larger one, so a reader must not skip ids
	// it has not seen.
	PendingEvents(ctx context.Context, limit int) ([]Event, error)
	// MarkPublished records that the events were published. Marking an event
	// that is marked already is not an error and keeps its first time.
	MarkPublished(ctx context.Context, ids []int64, at time.Time) error

	// Close releases the store.
	Close() error
}

// MigrationChecker is implemented by stores that can tell whether every
// migration has been applied (for readiness checks).
type MigrationChecker interface {
	MigrationsApplied(ctx context.Context) (bool, error)
}

// BatchFilter selects batches for ListBatches.
type BatchFilter struct {
	Status     coupon.Status // empty: any
	MerchantID string        // empty: any
	Cursor     string        // list batches with an ID below this one
	Limit      int           // ≤ 0: 100; at most 1000
}

// SetBatchStatus is one status change of a batch.
type SetBatchStatus struct {
	ID   string
	From []coupon.Status
	To   coupon.Status
	// Version, if not 0, is the version the batch must be at: a publication
	// publishes the configuration it generated the codes for.
	Version int64
	At      time.Time
	Event   *Event // optional
}

// UpdateBatch is an edit of a draft batch's configuration.
type UpdateBatch struct {
	ID   string
	Spec coupon.BatchSpec
	// Version, if not 0, is the version the edit was made to (If-Match).
	Version int64
	At      time.Time
	Event   *Event // optional
}

// ContinueCodes is a chunk of codes drawn from a batch as the caller read it.
type ContinueCodes struct {
	BatchID string
	From    int64 // the generated count read
	Version int64 // the version read; 0: any
	Codes   []coupon.Code
}

// UserClaimFilter selects a user's claims for ListUserClaims.
type UserClaimFilter struct {
	UserID string
	// Status filters by effective status as of Now: an available claim whose
	// validity has ended counts as expired. Empty: any.
	Status coupon.ClaimStatus
	Now    time.Time // zero: the store's clock
	// After is the keyset cursor: claims after (ValidTo, ID) in that order.
	AfterValidTo time.Time
	AfterID      string
	Limit        int // ≤ 0: 100; at most 1000
}

// ClaimWrite is one claim and its event, for InsertClaims.
type ClaimWrite struct {
	Claim *coupon.Claim
	Event Event
}

// Event is one outbox row: a state change to publish on the bus.
type Event struct {
	ID          int64           // assigned by the store
	Type        string          // e.g. claim.created
	AggregateID string          // the batch, claim, … the event is about
	Payload     json.RawMessage // the event's data: one JSON value (empty is stored as JSON null)
	CreatedAt   time.Time
}

// BatchSnapshot is a batch's state for an engine rebuild.
type BatchSnapshot struct {
	Batch *coupon.Batch
	Pool  []PoolCode
	Users map[string][]int // user → taken sequence numbers
	Keys  []KeyRecord
}

// PoolCode is an unclaimed code.
type PoolCode struct {
	Code   string
	Amount int64
}

// KeyRecord is a claim made with an idempotency key.
type KeyRecord struct {
	UserID  string
	Key     string
	ClaimID string
	Code    string
	Amount  int64
	Seq     int
}
