package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// QueryConfig configures the query side: the "my coupons" cache, search,
// statistics and tagging. The zero value works.
type QueryConfig struct {
	// CacheTTL is how long a user's cached claims live without a change;
	// default 10m. Changes drop them at once; the TTL only bounds memory.
	CacheTTL time.Duration
	// CacheMaxClaims is the most claims of one user the cache keeps; a user
	// holding more is served from the store. Default 200.
	CacheMaxClaims int
	// ExpiringSoon is the lead of the "expiring soon" badge; default 72h.
	ExpiringSoon time.Duration
	// CacheCall runs each call of the cache (a guard: timeout, breaker,
	// metrics); name is get, fill or touch. Default: a 200ms timeout.
	CacheCall func(ctx context.Context, name string, fn func(ctx context.Context) error) error
	// RecentWrite is how long after this instance changed a user's claims
	// a read that cannot use the cache reads the primary rather than the
	// replica; default 10s.
	RecentWrite time.Duration
}

func (c QueryConfig) withDefaults() QueryConfig {
	if c.CacheTTL <= 0 {
		c.CacheTTL = 10 * time.Minute
	}
	c.CacheTTL = min(c.CacheTTL, engine.VersionTTL/2)
	if c.CacheMaxClaims <= 0 {
		c.CacheMaxClaims = 200
	}
	if c.ExpiringSoon <= 0 {
		c.ExpiringSoon = 72 * time.Hour
	}
	if c.RecentWrite <= 0 {
		c.RecentWrite = 10 * time.Second
	}
	if c.CacheCall == nil {
		c.CacheCall = func(ctx context.Context, _ string, fn func(context.Context) error) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return fn(ctx)
		}
	}
	return c
}

// queryState is the Service's state of the query side.
type queryState struct {
	cfg QueryConfig

	hits, misses, fills, refused, fallbacks atomic.Uint64

	// recent remembers the users whose claims this instance changed lately,
	// and the users whose version bump failed (until a retry succeeds):
	// their reads skip the cache's answers they cannot trust and read the
	// primary.
	mu       sync.Mutex
	recent   map[string]time.Time
	unbumped map[string]bool
	retrying atomic.Bool

	decoded decodedMemo // the last decoded cached value of each user read lately

	tagLag        atomic.Int64 // TagQueueLag, nanoseconds
	soldOut       sync.Map     // batch id → struct{}: batch.stock_out recorded by this process
	soldOutChecks sync.Map     // batch id → time.Time of the claim path's last stock-out check
}

func newQueryState(cfg QueryConfig) *queryState {
	return &queryState{cfg: cfg.withDefaults(), recent: map[string]time.Time{}, unbumped: map[string]bool{}}
}

// CacheStats counts the "my coupons" reads answered by the cache (hits),
// those that read the store and filled it (misses), the fills refused
// because a change came first, and the reads served by the store because
// the cache failed (fallbacks).
type CacheStats struct {
	Hits, Misses, Fills, Refused, Fallbacks uint64
}

// UserCacheStats returns the counters of the "my coupons" cache.
func (s *Service) UserCacheStats() CacheStats {
	q := s.query
	return CacheStats{Hits: q.hits.Load(), Misses: q.misses.Load(), Fills: q.fills.Load(), Refused: q.refused.Load(), Fallbacks: q.fallbacks.Load()}
}

// overflow is the cached value of a user with more claims than the cache keeps.
var overflow = []byte("!")

// decodedMemo remembers, per user, the last cached value this instance
// decoded and the claims it holds. Decoding the JSON is most of the CPU of
// a read that hits; a read whose cached bytes are the very bytes decoded
// before (no change since) takes the claims from here instead. The bytes
// are compared in full, so the memo can never answer for another value:
// the engine's cache stays the one source of what a user's claims are.
// The claims are shared by the readers: they must not be changed (copy
// before setting a field). Bounded by bytes per shard; past the bound,
// arbitrary entries go.
type decodedMemo struct {
	once   sync.Once
	seed   maphash.Seed
	shards [memoShards]memoShard
}

const (
	memoShards     = 32
	memoShardBytes = 1 << 20 // of cached values; the decoded claims take about as much again
	memoMaxValue   = 16 << 10
)

type memoShard struct {
	mu    sync.Mutex
	m     map[string]memoEntry
	bytes int
}

type memoEntry struct {
	value  []byte
	claims []*coupon.Claim
}

func (d *decodedMemo) shard(user string) *memoShard {
	d.once.Do(func() { d.seed = maphash.MakeSeed() })
	return &d.shards[maphash.String(d.seed, user)%memoShards]
}

func (d *decodedMemo) get(user string, value []byte) ([]*coupon.Claim, bool) {
	sh := d.shard(user)
	sh.mu.Lock()
	e, ok := sh.m[user]
	sh.mu.Unlock()
	if !ok || !bytes.Equal(e.value, value) {
		return nil, false
	}
	return e.claims, true
}

func (d *decodedMemo) put(user string, value []byte, claims []*coupon.Claim) {
	if len(value) > memoMaxValue {
		return
	}
	sh := d.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[string]memoEntry)
	}
	if old, ok := sh.m[user]; ok {
		sh.bytes -= len(old.value)
	}
	for u, e := range sh.m {
		if sh.bytes+len(value) <= memoShardBytes {
			break
		}
		delete(sh.m, u)
		sh.bytes -= len(e.value)
	}
	// The engine may hand out its own slice (the memory engine does);
	// keep a copy that nothing else holds.
	sh.m[user] = memoEntry{value: bytes.Clone(value), claims: claims}
	sh.bytes += len(value)
}

// userView is what a read of "my coupons" works from: every claim of the
// user (all true) in (valid_to, id) order, or nothing and the note to ask
// the store.
type userView struct {
	claims []*coupon.Claim
	all    bool
	// primary: the store read must be the primary's (a recent change).
	primary bool
}

// userClaims returns the user's claims from the cache, filling it from the
// store on a miss. A failing cache is skipped, never fatal.
func (s *Service) userClaims(ctx context.Context, user string) (userView, error) {
	q := s.query
	trusted := q.trusted(user)
	var (
		value   []byte
		version int64
		hit     bool
	)
	err := q.cfg.CacheCall(ctx, "get", func(ctx context.Context) (err error) {
		value, version, hit, err = s.engine.GetUserClaims(ctx, user)
		return err
	})
	if err != nil {
		q.fallbacks.Add(1)
		s.log.DebugContext(ctx, "user cache unavailable; reading the store", "err", err)
		return userView{primary: !trusted || q.recentlyChanged(user)}, nil
	}
	q.retryBumps(s)
	switch {
	case hit && trusted && !bytes.Equal(value, overflow):
		if cs, ok := q.decoded.get(user, value); ok {
			q.hits.Add(1)
			return userView{claims: cs, all: true}, nil
		}
		var cs []*coupon.Claim
		if err := json.Unmarshal(value, &cs); err == nil {
			q.decoded.put(user, value, cs)
			q.hits.Add(1)
			return userView{claims: cs, all: true}, nil
		}
		s.log.WarnContext(ctx, "undecodable user cache entry; reading the store", "user", user)
	case hit && trusted:
		q.hits.Add(1)
		return userView{primary: true}, nil
	}
	q.misses.Add(1)
	// The version read above came before this store read, so a change
	// committed after the read bumps it and the fill below is refused.
	// Reading a replica is safe only for a user unchanged for as long as
	// versions live (version 0); a recent change reads the primary.
	cs, err := s.listAll(ctx, user, version != 0 || !trusted)
	if err != nil {
		return userView{}, err
	}
	if !trusted {
		return userView{claims: cs, all: len(cs) <= q.cfg.CacheMaxClaims}, nil
	}
	fill := overflow
	all := len(cs) <= q.cfg.CacheMaxClaims
	if all {
		if fill, err = json.Marshal(cs); err != nil {
			return userView{}, fmt.Errorf("encode claims: %w", err)
		}
	}
	var stored bool
	err = q.cfg.CacheCall(ctx, "fill", func(ctx context.Context) (err error) {
		stored, err = s.engine.FillUserClaims(ctx, user, version, fill, q.cfg.CacheTTL)
		return err
	})
	switch {
	case err != nil:
		s.log.DebugContext(ctx, "user cache fill failed", "err", err)
	case stored:
		q.fills.Add(1)
	default:
		q.refused.Add(1)
	}
	if !all {
		return userView{primary: true}, nil
	}
	return userView{claims: cs, all: true}, nil
}

// listAll reads up to CacheMaxClaims+1 of the user's claims, in (valid_to,
// id) order, from the primary or (when allowed and configured) a replica.
func (s *Service) listAll(ctx context.Context, user string, primary bool) ([]*coupon.Claim, error) {
	f := store.UserClaimFilter{UserID: user, Limit: s.query.cfg.CacheMaxClaims + 1}
	var cs []*coupon.Claim
	var err error
	if r := replicaOf(s.store); primary && r != nil {
		cs, err = r.ListUserClaimsPrimary(ctx, f)
	} else {
		cs, err = s.store.ListUserClaims(ctx, f)
	}
	if err != nil {
		return nil, unavailable("list claims", err)
	}
	return cs, nil
}

// replicaOf finds the store.ReplicaReader under the store's wrappers, or
// nil when no replica is configured.
func replicaOf(st store.Store) store.ReplicaReader {
	for st != nil {
		if r, ok := st.(store.ReplicaReader); ok {
			if r.HasReplica() {
				return r
			}
			return nil
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}

// claimsChanged records, after a commit and before the answer, that the
// claims of users changed: their cached claims are dropped and versions
// bumped, so the next read refills from the store. A failure is retried
// later; meanwhile this instance reads those users from the primary.
func (s *Service) claimsChanged(ctx context.Context, users ...string) {
	s.settleAndTouch(ctx, nil, users)
}

// settleAndTouch settles a group commit's claims and bumps their users in
// one engine round trip.
func (s *Service) settleAndTouch(ctx context.Context, settled []engine.Settlement, users []string) {
	users = compactUsers(users)
	if len(users) == 0 && len(settled) == 0 {
		return
	}
	q := s.query
	q.noteRecent(users, time.Now())
	err := q.cfg.CacheCall(ctx, "touch", func(ctx context.Context) error {
		return s.engine.SettleAndTouch(ctx, settled, users)
	})
	if err == nil {
		return
	}
	if errors.Is(err, engine.ErrUnknownBatch) {
		// A Settle refused (the batch was lost from the engine); the
		// bumps went through.
		s.log.WarnContext(ctx, "engine settle failed; the reconciler will settle", "err", err)
		return
	}
	s.log.WarnContext(ctx, "engine settle and cache bump failed; the reconciler will settle, bumps are retried", "users", len(users), "err", err)
	q.mu.Lock()
	for _, u := range users {
		q.unbumped[u] = true
	}
	q.mu.Unlock()
}

func compactUsers(users []string) []string {
	if len(users) < 2 {
		return users
	}
	out := slices.Clone(users)
	slices.Sort(out)
	return slices.Compact(out)
}

// trusted reports whether the cache may answer for user: not while a bump
// of this instance for the user is outstanding.
func (q *queryState) trusted(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.unbumped[user]
}

func (q *queryState) noteRecent(users []string, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recent) > 100_000 {
		for u, at := range q.recent {
			if now.Sub(at) > q.cfg.RecentWrite {
				delete(q.recent, u)
			}
		}
	}
	for _, u := range users {
		q.recent[u] = now
	}
}

// recentlyChanged reports whether this instance changed user's claims
// within RecentWrite.
func (q *queryState) recentlyChanged(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	at, ok := q.recent[user]
	return ok && time.Since(at) < q.cfg.RecentWrite
}

// retryBumps bumps, in the background, the users whose bump failed, once
// the cache answers again.
func (q *queryState) retryBumps(s *Service) {
	q.mu.Lock()
	n := len(q.unbumped)
	q.mu.Unlock()
	if n == 0 || !q.retrying.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer q.retrying.Store(false)
		q.mu.Lock()
		users := make([]string, 0, len(q.unbumped))
		for u := range q.unbumped {
			users = append(users, u)
		}
		q.mu.Unlock()
		err := q.cfg.CacheCall(context.Background(), "touch", func(ctx context.Context) error {
			return s.engine.UserClaimsChanged(ctx, users)
		})
		if err != nil {
			return
		}
		q.mu.Lock()
		for _, u := range users {
			delete(q.unbumped, u)
		}
		q.mu.Unlock()
	}()
}

// expiryTouches collects the users of the claims one sweep chunk expires,
// to bump after the chunk commits.
type expiryTouches struct {
	mu    sync.Mutex
	users []string
}

// wrap returns fn, noting each claim's user.
func (t *expiryTouches) wrap(fn func(*coupon.Claim) store.Event) func(*coupon.Claim) store.Event {
	return func(c *coupon.Claim) store.Event {
		t.mu.Lock()
		t.users = append(t.users, c.UserID)
		t.mu.Unlock()
		return fn(c)
	}
}

// flush bumps the users noted so far.
func (t *expiryTouches) flush(ctx context.Context, s *Service) {
	t.mu.Lock()
	users := t.users
	t.users = nil
	t.mu.Unlock()
	if len(users) > 0 {
		s.claimsChanged(ctx, users...)
	}
}

// Badges are the counts a "my coupons" entry point shows.
type Badges struct {
	Available    int64 `json:"available" doc:"coupons the user can use now"`
	ExpiringSoon int64 `json:"expiring_soon" doc:"of those, the ones whose validity ends within the lead"`
	// Lead is the "expiring soon" window, in seconds.
	LeadSeconds int64 `json:"expiring_soon_seconds" doc:"the window of expiring_soon, seconds"`
}

// UserBadges counts the user's available coupons and those expiring soon,
// from the cache (filled on a miss), or from the store.
func (s *Service) UserBadges(ctx context.Context, userID string) (*Badges, error) {
	if err := (coupon.Claimant{UserID: userID}).Validate(); err != nil {
		return nil, err
	}
	now := s.clock()
	soon := now.Add(s.query.cfg.ExpiringSoon)
	out := &Badges{LeadSeconds: int64(s.query.cfg.ExpiringSoon / time.Second)}
	v, err := s.userClaims(ctx, userID)
	if err != nil {
		return nil, err
	}
	if !v.all {
		avail, expiring, err := s.store.CountUserClaims(ctx, userID, now, soon)
		if err != nil {
			return nil, unavailable("count claims", err)
		}
		out.Available, out.ExpiringSoon = avail, expiring
		return out, nil
	}
	for _, c := range v.claims {
		if c.EffectiveStatus(now) != coupon.ClaimAvailable {
			continue
		}
		out.Available++
		if !c.ValidTo.After(soon) {
			out.ExpiringSoon++
		}
	}
	return out, nil
}

// page selects one page of a user's claims from all of them, as the store
// would: by effective status as of now, after the cursor, ordered by
// (valid_to, id), limit+1 of them.
func page(all []*coupon.Claim, status coupon.ClaimStatus, now, afterTo time.Time, afterID string, limit int) []*coupon.Claim {
	out := make([]*coupon.Claim, 0, min(limit, len(all)))
	for _, c := range all {
		if afterID != "" {
			if c.ValidTo.Before(afterTo) || (c.ValidTo.Equal(afterTo) && strings.Compare(c.ID, afterID) <= 0) {
				continue
			}
		}
		if status != "" && c.EffectiveStatus(now) != status {
			continue
		}
		out = append(out, c)
		if len(out) == limit {
			break
		}
	}
	return out
}
