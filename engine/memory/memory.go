// Package memory is the single-node engine: every batch's pool, per-user
// counters, idempotency keys and pending claims live in this process, each
// batch behind its own mutex, and so do the leases. It is the default engine
// and the reference the Redis engine is checked against (engine/enginetest).
// Its state is lost with the process; the service rebuilds it from the store
// with Rebuild.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coupond/coupond/engine"
)

var _ engine.Engine = (*Engine)(nil)

// Engine is an in-memory engine.Engine. Its methods never block on anything
// but its own locks, so they ignore their context.
type Engine struct {
	// Now is the clock leases expire by, time.Now unless a test sets it
	// before the engine is first used.
	Now func() time.Time

	// mu guards the map only; claims take it for reading, so claims on
	// different batches never wait for each other and claims on one batch
	// wait only for that batch's mutex.
	mu      sync.RWMutex
	batches map[string]*batch

	leaseMu sync.Mutex
	leases  map[string]lease

	cache userCache   // cache.go
	tags  tagStore    // cache.go
	delay delayQueues // delay.go
	prot  protection  // protection.go
}

// New returns an empty engine: every batch must be loaded with Rebuild.
func New() *Engine {
	return &Engine{Now: time.Now, batches: make(map[string]*batch), leases: make(map[string]lease)}
}

// Claim runs the claim step in the order the engine.Engine contract gives.
func (e *Engine) Claim(_ context.Context, p engine.ClaimParams) (engine.ClaimResult, error) {
	b := e.batch(p.BatchID)
	if b == nil {
		return engine.ClaimResult{}, engine.ErrUnknownBatch
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active {
		return engine.ClaimResult{}, engine.ErrNotClaimable
	}
	if p.Protect != nil {
		return e.protectedClaim(b, p) // protection.go: the checks, then b.claim
	}
	return b.claim(p)
}

// claim is the claim step of an active batch whose mutex the caller holds.
func (b *batch) claim(p engine.ClaimParams) (engine.ClaimResult, error) {
	// A struct key costs no allocation, unlike joining user and key.
	kid := keyID{user: p.UserID, key: p.IdempotencyKey}
	if p.IdempotencyKey != "" {
		if k, ok := b.keys[kid]; ok {
			return engine.ClaimResult{Code: k.code, Amount: k.amount, Seq: k.seq, ClaimID: k.claimID, Replayed: true}, nil
		}
	}
	u := b.users[p.UserID]
	seq, ok := u.next(b.limit)
	if !ok {
		return engine.ClaimResult{}, engine.ErrLimitReached
	}
	c, ok := b.pop()
	if !ok {
		return engine.ClaimResult{}, engine.ErrSoldOut
	}
	u.take(seq)
	b.users[p.UserID] = u
	if p.IdempotencyKey != "" {
		b.keys[kid] = keyEntry{claimID: p.ClaimID, code: c.Code, amount: c.Amount, seq: seq}
	}
	b.claimed++
	b.pending.add(pendingClaim{
		claimID: p.ClaimID, user: p.UserID, key: p.IdempotencyKey, code: c.Code, amount: c.Amount, seq: seq, at: p.At,
	})
	return engine.ClaimResult{Code: c.Code, Amount: c.Amount, Seq: seq, ClaimID: p.ClaimID}, nil
}

// Settle forgets the pending claims of codes; codes not pending are ignored.
func (e *Engine) Settle(_ context.Context, batchID string, codes []string) error {
	b := e.batch(batchID)
	if b == nil {
		return engine.ErrUnknownBatch
	}
	b.mu.Lock()
	for _, code := range codes {
		b.pending.drop(code)
	}
	b.mu.Unlock()
	return nil
}

// Pending lists up to limit pending claims made before `before`, oldest
// first; claims made at the same instant come in the order they were made.
func (e *Engine) Pending(_ context.Context, batchID string, before time.Time, limit int) ([]engine.PendingClaim, error) {
	b := e.batch(batchID)
	if b == nil {
		return nil, engine.ErrUnknownBatch
	}
	if limit <= 0 {
		return nil, nil
	}
	b.mu.Lock()
	// Callers stamp At before they reach the batch's mutex, so the list is
	// in claim order but only nearly in time order: scan it all and sort.
	// Pending claims are the few in flight, unless commits are failing.
	var out []engine.PendingClaim
	for i, c := range b.pending.list {
		if c.at.Before(before) && b.pending.live(i) {
			out = append(out, engine.PendingClaim{
				BatchID: batchID, ClaimID: c.claimID, UserID: c.user, IdempotencyKey: c.key,
				Code: c.code, Amount: c.amount, Seq: c.seq, At: c.at,
			})
		}
	}
	b.mu.Unlock()
	slices.SortStableFunc(out, func(x, y engine.PendingClaim) int { return x.At.Compare(y.At) })
	if len(out) > limit {
		out = slices.Clip(out[:limit])
	}
	return out, nil
}

// Reclaim undoes the claim p if it is still pending: the same code, claim,
// user, key, amount and sequence number (At is not compared). The code goes
// back to the head of the pool, the number is freed and the key forgotten.
func (e *Engine) Reclaim(_ context.Context, p engine.PendingClaim) (bool, error) {
	b := e.batch(p.BatchID)
	if b == nil {
		return false, engine.ErrUnknownBatch
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.pending.get(p.Code)
	if !ok || c.claimID != p.ClaimID || c.user != p.UserID || c.key != p.IdempotencyKey || c.amount != p.Amount || c.seq != p.Seq {
		return false, nil
	}
	b.undo(engine.UndoParams{UserID: c.user, IdempotencyKey: c.key, Code: c.code, Amount: c.amount, Seq: c.seq})
	return true, nil
}

// Undo reverses a claim. The code goes to the head of the pool, so it is the
// next one handed out. A sequence number the user does not hold is ignored.
// Undo of an unknown batch returns ErrUnknownBatch: there is nothing to undo,
// and a Rebuild from the store will not contain the uncommitted claim.
func (e *Engine) Undo(_ context.Context, p engine.UndoParams) error {
	b := e.batch(p.BatchID)
	if b == nil {
		return engine.ErrUnknownBatch
	}
	b.mu.Lock()
	b.undo(p)
	b.mu.Unlock()
	return nil
}

// SetBatch records whether the batch is claimable and its per-user limit.
// Lowering the limit takes nothing back: a user already at or above it is
// refused further claims.
func (e *Engine) SetBatch(_ context.Context, s engine.BatchState) error {
	b := e.batch(s.BatchID)
	if b == nil {
		return engine.ErrUnknownBatch
	}
	b.mu.Lock()
	b.active, b.limit = s.Active, s.PerUserLimit
	b.mu.Unlock()
	return nil
}

// AddCodes appends codes to the tail of the pool if the batch's LoadedSeq
// is fromSeq, and sets it to throughSeq; ErrStaleLoad otherwise.
func (e *Engine) AddCodes(_ context.Context, batchID string, fromSeq, throughSeq int64, codes []engine.PoolCode) error {
	if throughSeq < fromSeq {
		return fmt.Errorf("memory engine: add codes to batch %s: through %d is below from %d", batchID, throughSeq, fromSeq)
	}
	b := e.batch(batchID)
	if b == nil {
		return engine.ErrUnknownBatch
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.loaded != fromSeq {
		return engine.ErrStaleLoad
	}
	b.compact()
	b.pool = append(b.pool, codes...)
	b.loaded = throughSeq
	return nil
}

// Rebuild replaces the batch's state with the snapshot, creating the batch
// if it is unknown. A user's taken count becomes the number of distinct
// sequence numbers (those below 1 are ignored); Stats' Claimed becomes the
// sum of them over all users; LoadedSeq becomes the snapshot's. The pending
// claims are dropped: the snapshot's pool already holds the codes of claims
// the store never committed.
func (e *Engine) Rebuild(_ context.Context, snap engine.Snapshot) error {
	// Build outside any lock: a large snapshot must not stall claims of
	// other batches, nor of this one for longer than the swap.
	pool := slices.Clone(snap.Pool)
	users := make(map[string]userState, len(snap.Users))
	var claimed int64
	for _, us := range snap.Users {
		u := users[us.UserID]
		for _, s := range us.Seqs {
			if s >= 1 && !u.holds(s) {
				u.add(s)
				claimed++
			}
		}
		if u.high > 0 {
			users[us.UserID] = u
		}
	}
	keys := make(map[keyID]keyEntry, len(snap.Keys))
	for _, k := range snap.Keys {
		keys[keyID{user: k.UserID, key: k.Key}] = keyEntry{claimID: k.ClaimID, code: k.Code, amount: k.Amount, seq: k.Seq}
	}

	e.mu.Lock()
	b := e.batches[snap.Batch.BatchID]
	if b == nil {
		b = &batch{}
		e.batches[snap.Batch.BatchID] = b
	}
	e.mu.Unlock()

	b.mu.Lock()
	b.active, b.limit = snap.Batch.Active, snap.Batch.PerUserLimit
	b.pool, b.head = pool, 0
	b.users, b.keys = users, keys
	b.claimed = claimed
	b.loaded = snap.LoadedSeq
	b.pending = pendingList{}
	b.mu.Unlock()
	return nil
}

// Stats returns the pool depth, the claims handed out and not undone, and
// the loaded sequence number.
func (e *Engine) Stats(_ context.Context, batchID string) (engine.BatchStats, error) {
	b := e.batch(batchID)
	if b == nil {
		return engine.BatchStats{}, engine.ErrUnknownBatch
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return engine.BatchStats{PoolDepth: int64(len(b.pool) - b.head), Claimed: b.claimed, LoadedSeq: b.loaded}, nil
}

// Lock takes the lease name for ttl unless an unexpired lease holds it.
func (e *Engine) Lock(_ context.Context, name string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", false, fmt.Errorf("memory engine: lease %q: ttl %v is not positive", name, ttl)
	}
	now := e.Now()
	e.leaseMu.Lock()
	defer e.leaseMu.Unlock()
	if l, ok := e.leases[name]; ok && now.Before(l.expires) {
		return "", false, nil
	}
	token := newToken()
	e.leases[name] = lease{token: token, expires: now.Add(ttl)}
	return token, true, nil
}

// Extend renews the lease for ttl from now if token holds it unexpired.
func (e *Engine) Extend(_ context.Context, name, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("memory engine: lease %q: ttl %v is not positive", name, ttl)
	}
	now := e.Now()
	e.leaseMu.Lock()
	defer e.leaseMu.Unlock()
	l, ok := e.leases[name]
	if !ok || l.token != token || !now.Before(l.expires) {
		return false, nil
	}
	e.leases[name] = lease{token: token, expires: now.Add(ttl)}
	return true, nil
}

// Unlock releases the lease if token holds it.
func (e *Engine) Unlock(_ context.Context, name, token string) error {
	e.leaseMu.Lock()
	if l, ok := e.leases[name]; ok && l.token == token {
		delete(e.leases, name)
	}
	e.leaseMu.Unlock()
	return nil
}

// Close does nothing: the engine holds no outside resources.
func (e *Engine) Close() error { return nil }

func (e *Engine) batch(id string) *batch {
	e.mu.RLock()
	b := e.batches[id]
	e.mu.RUnlock()
	return b
}

// batch is the engine state of one batch.
type batch struct {
	mu     sync.Mutex
	active bool
	limit  int
	// pool[head:] are the codes ready to be claimed, oldest first. Popping
	// moves head instead of shifting the slice; compact reclaims the dead
	// prefix when codes are appended.
	pool    []engine.PoolCode
	head    int
	users   map[string]userState
	keys    map[keyID]keyEntry
	claimed int64
	loaded  int64 // LoadedSeq: the highest code sequence number loaded
	pending pendingList
}

// undo reverses a claim, dropping its pending entry if the code is pending
// for the same user. The caller holds b.mu.
func (b *batch) undo(p engine.UndoParams) {
	if c, ok := b.pending.get(p.Code); ok && c.user == p.UserID {
		b.pending.drop(p.Code)
	}
	if !p.KeepCode {
		b.pushFront(engine.PoolCode{Code: p.Code, Amount: p.Amount})
	}
	if !p.KeepSeq {
		if u, ok := b.users[p.UserID]; ok {
			u.free(p.Seq)
			if u.high == 0 {
				delete(b.users, p.UserID) // keeps the map as small as the set of holders
			} else {
				b.users[p.UserID] = u
			}
		}
	}
	if p.IdempotencyKey != "" {
		delete(b.keys, keyID{user: p.UserID, key: p.IdempotencyKey})
	}
	if b.claimed > 0 {
		b.claimed--
	}
}

func (b *batch) pop() (engine.PoolCode, bool) {
	if b.head == len(b.pool) {
		return engine.PoolCode{}, false
	}
	c := b.pool[b.head]
	b.pool[b.head] = engine.PoolCode{} // let the code string be collected
	b.head++
	if b.head == len(b.pool) {
		b.pool, b.head = b.pool[:0], 0 // empty: reuse the array from the start
	}
	return c, true
}

func (b *batch) pushFront(c engine.PoolCode) {
	if b.head > 0 {
		b.head--
		b.pool[b.head] = c
		return
	}
	// Only after a compaction or a Rebuild with no claim since: rare.
	b.pool = slices.Insert(b.pool, 0, c)
}

// compact moves the live codes to the front of the array once the dead
// prefix is at least as long as they are, so appends reuse the array and the
// copying costs O(1) per popped code.
func (b *batch) compact() {
	if b.head == 0 || b.head < len(b.pool)-b.head {
		return
	}
	n := copy(b.pool, b.pool[b.head:])
	clear(b.pool[n:])
	b.pool, b.head = b.pool[:n], 0
}

// userState is the sequence numbers a user holds in a batch: all of 1..high
// except the holes, which Undo left below high. The user's taken count is
// high − len(holes), and the smallest free number is the first hole, or
// high+1 when there is none.
type userState struct {
	high  int
	holes []int // ascending, each in 1..high-1; few, since Undo is rare
}

// next returns the sequence number the user's next claim gets, or false if
// the user holds limit numbers already.
func (u *userState) next(limit int) (int, bool) {
	if u.high-len(u.holes) >= limit {
		return 0, false
	}
	s := u.high + 1
	if len(u.holes) > 0 {
		s = u.holes[0]
	}
	// Holding fewer than limit numbers means one of 1..limit is free, and
	// the smallest free one is never above limit; this guards the invariant.
	if s > limit {
		return 0, false
	}
	return s, true
}

// take marks s, a result of next, as held.
func (u *userState) take(s int) {
	if s > u.high {
		u.high = s
		return
	}
	u.holes = u.holes[:copy(u.holes, u.holes[1:])]
}

// free releases s if the user holds it.
func (u *userState) free(s int) {
	if !u.holds(s) {
		return
	}
	if s < u.high {
		i, _ := slices.BinarySearch(u.holes, s)
		u.holes = slices.Insert(u.holes, i, s)
		return
	}
	u.high--
	for n := len(u.holes); n > 0 && u.holes[n-1] == u.high; n-- {
		u.holes = u.holes[:n-1]
		u.high--
	}
	if u.high == 0 {
		u.holes = nil
	}
}

func (u *userState) holds(s int) bool {
	if s < 1 || s > u.high {
		return false
	}
	_, hole := slices.BinarySearch(u.holes, s)
	return !hole
}

// add marks any s ≥ 1 as held, turning the numbers skipped over into holes.
func (u *userState) add(s int) {
	if s <= u.high {
		i, _ := slices.BinarySearch(u.holes, s)
		u.holes = slices.Delete(u.holes, i, i+1)
		return
	}
	for h := u.high + 1; h < s; h++ {
		u.holes = append(u.holes, h)
	}
	u.high = s
}

type keyID struct{ user, key string }

type keyEntry struct {
	claimID string
	code    string
	amount  int64
	seq     int
}

// pendingList holds the claims not yet settled, in claim order, and the
// position of each live one by code: an entry is live while the index maps
// its code to its position. A code is pending at most once, since a code
// back in the pool was undone or reclaimed, which dropped its entry.
//
// Claims only append and Settle only deletes from the index, one map
// operation each, and the hot path allocates nothing once the array is
// grown. The dead entries are swept out when none is live (the usual case
// right after a group commit settles) or, if some claim stays pending for
// long, when the array would otherwise grow.
type pendingList struct {
	list  []pendingClaim
	index map[string]int // code → position in list of its live entry
}

type pendingClaim struct {
	claimID, user, key, code string
	amount                   int64
	seq                      int
	at                       time.Time
}

func (l *pendingList) add(c pendingClaim) {
	if l.index == nil {
		l.index = make(map[string]int)
	}
	if len(l.list) == cap(l.list) && len(l.index) <= len(l.list)/2 {
		l.compact()
	}
	// Were the code pending already (a pool holding it twice), this
	// assignment would leave its older entry dead.
	l.index[c.code] = len(l.list)
	l.list = append(l.list, c)
}

func (l *pendingList) get(code string) (pendingClaim, bool) {
	i, ok := l.index[code]
	if !ok {
		return pendingClaim{}, false
	}
	return l.list[i], true
}

func (l *pendingList) live(i int) bool {
	j, ok := l.index[l.list[i].code]
	return ok && j == i
}

func (l *pendingList) drop(code string) {
	delete(l.index, code)
	if len(l.index) == 0 && len(l.list) > 0 {
		clear(l.list) // let the strings be collected
		l.list = l.list[:0]
	}
}

// compact moves the live entries to the front, in order.
func (l *pendingList) compact() {
	n := 0
	for i := range l.list {
		if l.live(i) {
			l.list[n] = l.list[i]
			l.index[l.list[n].code] = n
			n++
		}
	}
	clear(l.list[n:])
	l.list = l.list[:n]
}

// lease is a held lease; it is free once expires has passed.
type lease struct {
	token   string
	expires time.Time
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
