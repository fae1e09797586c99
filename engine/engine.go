// Package engine defines the hot path in front of the store: per-batch code
// pools, per-user counters and idempotency keys, behind one interface with an
// in-memory implementation (engine/memory) for a single node and a Redis one
// for several. An engine holds nothing the store cannot rebuild.
package engine

import (
	"context"
	"errors"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Errors of the engine. ErrSoldOut, ErrLimitReached and ErrNotClaimable are
// the domain's sentinels, so they reach the API unchanged.
var (
	ErrSoldOut      = coupon.ErrSoldOut
	ErrLimitReached = coupon.ErrLimitReached
	ErrNotClaimable = coupon.ErrNotClaimable
	// ErrUnknownBatch means the engine holds no state for the batch (never
	// loaded, or lost with a restart of Redis): load it from the store with
	// Rebuild, then retry.
	ErrUnknownBatch = errors.New("engine: batch not loaded")
	// ErrStaleLoad means AddCodes was refused because the batch's LoadedSeq
	// is not the load's fromSeq: someone else loaded those codes (or a
	// Rebuild did) first. Read Stats again and load what is still missing.
	ErrStaleLoad = errors.New("engine: codes loaded by someone else")
)

// Engine is the hot path of claims. All methods are safe for concurrent use
// by many goroutines and, for shared implementations, many processes.
//
// Every method acting on one batch is atomic with respect to every other
// method acting on the same batch: no caller ever sees a half-done step.
type Engine interface {
	Locker
	Protection
	Cache
	DelayQueue

	// Claim is the one atomic claim step for a batch, in this order:
	//  1. the batch is unknown: ErrUnknownBatch; not active: ErrNotClaimable;
	//  2. IdempotencyKey (if not empty) was seen for this user and batch:
	//     return the earlier result with Replayed set, changing nothing;
	//  3. the user holds PerUserLimit claims: ErrLimitReached;
	//  4. the pool is empty: ErrSoldOut;
	//  5. pop the next code; give the user the smallest free sequence number
	//     in 1..limit; remember the key with ClaimID and the code; record the
	//     claim as pending (see Pending) at p.At.
	Claim(ctx context.Context, p ClaimParams) (ClaimResult, error)

	// Settle tells the engine that the claims of these codes are committed
	// to the store, so they are no longer pending. Codes that are not
	// pending are ignored. One call covers a whole group commit.
	// ErrUnknownBatch if the batch is not loaded.
	Settle(ctx context.Context, batchID string, codes []string) error

	// Pending lists up to limit claims of a batch made before `before` that
	// were neither settled nor undone, oldest first: the reconciler checks
	// each against the store and reclaims those whose row never committed
	// (the process died between the engine step and the commit). Claims made
	// at the same instant come in an order the engine chooses. A limit of 0
	// or less lists nothing. ErrUnknownBatch if the batch is not loaded.
	Pending(ctx context.Context, batchID string, before time.Time, limit int) ([]PendingClaim, error)

	// Reclaim undoes a pending claim as Undo would, but only if it is still
	// pending; it reports false, changing nothing, if it was settled, undone
	// or reclaimed meanwhile. Unlike Undo it is safe to call more than once.
	// p is still pending when the claim pending for p.Code has the same
	// ClaimID, UserID, IdempotencyKey, Amount and Seq; At is not compared.
	// ErrUnknownBatch if the batch is not loaded.
	Reclaim(ctx context.Context, p PendingClaim) (bool, error)

	// Undo reverses a Claim whose claim row was never committed, and drops
	// the code's pending claim if it is the same user's. It pushes the
	// code back to the pool (unless KeepCode), frees the user's sequence
	// number (unless KeepSeq) and forgets the idempotency key. Call it at
	// most once per Claim: a second call would put the code in the pool twice.
	// The code goes back to the head of the pool, so it is handed out next;
	// a sequence number the user does not hold is ignored. ErrUnknownBatch
	// if the batch is not loaded: a Rebuild from the store cannot contain
	// the uncommitted claim, so there is nothing to undo.
	Undo(ctx context.Context, p UndoParams) error

	// SetBatch records whether a batch is claimable and its per-user limit.
	// It fails with ErrUnknownBatch if the batch was never loaded. Lowering
	// the limit takes nothing back: a user holding the new limit or more is
	// refused with ErrLimitReached.
	SetBatch(ctx context.Context, s BatchState) error

	// AddCodes loads the codes the store generated with sequence numbers in
	// (fromSeq, throughSeq] — those of them still unclaimed, in sequence
	// order — into the pool of a loaded batch. It is a compare-and-set on the
	// batch's LoadedSeq, the highest code sequence number the engine holds:
	// only if LoadedSeq == fromSeq does it append codes to the tail of the
	// pool and set LoadedSeq to throughSeq, atomically; otherwise it changes
	// nothing and returns ErrStaleLoad. So loading is idempotent: of several
	// callers loading one range (instances racing, a retry after a crash
	// between the store's insert and the load), exactly one pushes its codes.
	// Claims may see the codes of one call appear before its LoadedSeq does,
	// never a code twice. ErrUnknownBatch if the batch was never loaded;
	// throughSeq below fromSeq is an error.
	AddCodes(ctx context.Context, batchID string, fromSeq, throughSeq int64, codes []PoolCode) error

	// Rebuild replaces all state of a batch with the snapshot: the pool, each
	// user's taken sequence numbers, the idempotency keys, the batch state,
	// and LoadedSeq. It creates the batch if it is unknown. Sequence numbers below 1 are
	// ignored; a user's free numbers are those missing below the highest held.
	// It drops the batch's pending claims: the snapshot's pool holds the codes
	// of claims the store never committed, so reclaiming them would put those
	// codes in the pool twice. A Rebuild is all or nothing: claims see the
	// old state (or ErrUnknownBatch) until it completes.
	Rebuild(ctx context.Context, snap Snapshot) error

	// Stats returns live figures of a loaded batch — pool depth, claims,
	// LoadedSeq; ErrUnknownBatch if it was never loaded.
	Stats(ctx context.Context, batchID string) (BatchStats, error)

	// Close releases the engine's resources.
	Close() error
}

// ClaimParams asks for one claim.
type ClaimParams struct {
	BatchID        string
	UserID         string
	IdempotencyKey string // optional
	ClaimID        string // remembered with the key, returned to replays
	// At is when the claim was made; engines keep it to the microsecond,
	// the store's precision, and Pending returns it in UTC.
	At time.Time
	// Protect, if set, are checks made in the same atomic step, before a
	// code is taken (see ClaimProtection): rate limits, the request's
	// nonce, an SMS challenge, per-identity counts.
	Protect *ClaimProtection
}

// ClaimResult is the outcome of a claim step.
type ClaimResult struct {
	Code    string
	Amount  int64
	Seq     int    // the user's sequence number for this claim, 1..limit
	ClaimID string // for a replay, the ClaimID of the first request
	// Replayed says the idempotency key was seen before: Code and ClaimID
	// are those of the first request and nothing changed.
	Replayed bool
}

// UndoParams reverses one Claim.
type UndoParams struct {
	BatchID        string
	UserID         string
	IdempotencyKey string
	Code           string
	Amount         int64
	Seq            int
	KeepCode       bool // the code is not to go back to the pool (the store holds it)
	KeepSeq        bool // the sequence number stays taken (the store holds it)
}

// PendingClaim is a claim handed out by the engine and not yet settled.
type PendingClaim struct {
	BatchID        string
	ClaimID        string
	UserID         string
	IdempotencyKey string
	Code           string
	Amount         int64
	Seq            int
	At             time.Time
}

// Locker hands out leases: named locks with a time to live and a token that
// only the holder can extend or release. Several instances of coupond share
// the engine, so its leases coordinate their background workers. A ttl must
// be positive: Lock and Extend fail otherwise. Leases are kept to the
// millisecond and, unlike batches, are not rebuilt: losing the engine's
// state releases them, and the holder's next Extend reports false.
type Locker interface {
	// Lock takes the lease name for ttl unless someone holds it; ok is false
	// when another holder has it.
	Lock(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	// Extend renews a lease that token still holds; false if it was lost
	// (it expired and someone else may have taken it).
	Extend(ctx context.Context, name, token string, ttl time.Duration) (bool, error)
	// Unlock releases a lease that token holds; a lease held by another
	// token is left alone.
	Unlock(ctx context.Context, name, token string) error
}

// PoolCode is a code ready to be claimed.
type PoolCode struct {
	Code   string
	Amount int64
}

// BatchState is what the claim step needs to know of a batch.
type BatchState struct {
	BatchID      string
	Active       bool
	PerUserLimit int
}

// UserSeqs lists the sequence numbers a user holds in a batch.
type UserSeqs struct {
	UserID string
	Seqs   []int
}

// KeyEntry is a remembered idempotency key.
type KeyEntry struct {
	UserID  string
	Key     string
	ClaimID string
	Code    string
	Amount  int64
	Seq     int
}

// Snapshot is a batch's engine state as read from the store.
type Snapshot struct {
	Batch BatchState
	Pool  []PoolCode
	Users []UserSeqs
	Keys  []KeyEntry
	// LoadedSeq is the batch's generated count when the snapshot was read:
	// Pool holds the unclaimed codes of sequence numbers up to it, and
	// AddCodes continues from it.
	LoadedSeq int64
}

// BatchStats are live figures of a batch in the engine.
type BatchStats struct {
	PoolDepth int64 // codes ready to be claimed
	// Claimed counts claims handed out and not undone: every Undo lowers it
	// by one; Rebuild sets it to the number of sequence numbers in the snapshot.
	Claimed int64
	// LoadedSeq is the highest code sequence number loaded into the pool,
	// by Rebuild or AddCodes: the store's codes above it are not in the
	// engine yet.
	LoadedSeq int64
}
