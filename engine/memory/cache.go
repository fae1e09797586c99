package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/engine"
)

// The user cache is sharded by user so that readers of different users
// rarely share a mutex; a change and a fill of one user serialise on the
// user's shard, which is what makes the fill's version check atomic.
const cacheShards = 64

// maxCacheEntries bounds the users a shard keeps; past it, entries whose
// time is up are dropped, then cached values (never a live version).
const maxCacheEntries = 1 << 16

type userCache struct {
	seed    maphash.Seed
	shards  [cacheShards]cacheShard
	version atomic.Int64 // versions come from one counter, so none repeats
	once    sync.Once
}

type cacheShard struct {
	mu sync.Mutex
	m  map[string]*cacheEntry
}

type cacheEntry struct {
	version int64
	value   []byte    // nil: nothing cached
	expires time.Time // of value
	keep    time.Time // of the version
}

func (c *userCache) shard(user string) *cacheShard {
	// The maps are made once, with the seed: made lazily per shard, outside
	// the shard's mutex, they raced with another caller's first use.
	c.once.Do(func() {
		c.seed = maphash.MakeSeed()
		for i := range c.shards {
			c.shards[i].m = make(map[string]*cacheEntry)
		}
	})
	return &c.shards[maphash.String(c.seed, user)%cacheShards]
}

// GetUserClaims returns the cached value, or the user's version on a miss.
func (e *Engine) GetUserClaims(_ context.Context, userID string) ([]byte, int64, bool, error) {
	now := e.Now()
	s := e.cache.shard(userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	ent := s.m[userID]
	if ent == nil {
		return nil, 0, false, nil
	}
	if ent.value != nil && now.Before(ent.expires) {
		return ent.value, ent.version, true, nil
	}
	return nil, ent.version, false, nil
}

// FillUserClaims stores value if the user's version is still version.
func (e *Engine) FillUserClaims(_ context.Context, userID string, version int64, value []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 || ttl >= engine.VersionTTL {
		return false, fmt.Errorf("memory engine: fill ttl %v must be positive and below %v", ttl, engine.VersionTTL)
	}
	now := e.Now()
	s := e.cache.shard(userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	ent := s.m[userID]
	have := int64(0)
	if ent != nil {
		have = ent.version
	}
	if have != version {
		return false, nil
	}
	if ent == nil {
		s.trim(now)
		ent = &cacheEntry{version: version}
		s.m[userID] = ent
	}
	// The caller may reuse its buffer; the cache keeps its own copy.
	ent.value, ent.expires, ent.keep = slices.Clone(value), now.Add(ttl), now.Add(engine.VersionTTL)
	if ent.value == nil {
		ent.value = []byte{}
	}
	return true, nil
}

// UserClaimsChanged bumps each user's version and drops the cached value.
func (e *Engine) UserClaimsChanged(_ context.Context, userIDs []string) error {
	now := e.Now()
	for _, u := range userIDs {
		s := e.cache.shard(u)
		s.mu.Lock()
		ent := s.m[u]
		if ent == nil {
			s.trim(now)
			ent = &cacheEntry{}
			s.m[u] = ent
		}
		ent.version = e.cache.version.Add(1)
		ent.value, ent.keep = nil, now.Add(engine.VersionTTL)
		s.mu.Unlock()
	}
	return nil
}

// SettleAndTouch settles each batch's codes and bumps the users; in memory
// there is no round trip to share.
func (e *Engine) SettleAndTouch(ctx context.Context, settled []engine.Settlement, userIDs []string) error {
	var first error
	for _, st := range settled {
		if err := e.Settle(ctx, st.BatchID, st.Codes); err != nil && first == nil {
			first = err
		}
	}
	if err := e.UserClaimsChanged(ctx, userIDs); err != nil && first == nil {
		first = err
	}
	return first
}

// trim makes room in a full shard: first entries whose version's time is
// up, then cached values. The caller holds s.mu.
func (s *cacheShard) trim(now time.Time) {
	if len(s.m) < maxCacheEntries {
		return
	}
	for u, ent := range s.m {
		if !now.Before(ent.keep) {
			delete(s.m, u)
		}
	}
	if len(s.m) < maxCacheEntries {
		return
	}
	for _, ent := range s.m {
		ent.value = nil
	}
}

// tagStore holds the tags: ref → its tags, ordered by batch id. Reads are
// the hot side (a product page asks for its badges; a batch tags or untags
// its products twice in its life), so a ref's slice is replaced, never
// changed in place, and Tags hands it out as it is.
type tagStore struct {
	mu sync.RWMutex
	m  map[string][]engine.Tag
}

func compareTag(t engine.Tag, batchID string) int { return strings.Compare(t.BatchID, batchID) }

// SetTags records batchID's tag on each ref.
func (e *Engine) SetTags(_ context.Context, batchID string, refs []string, data []byte) error {
	t := &e.tags
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string][]engine.Tag)
	}
	tag := engine.Tag{BatchID: batchID, Data: slices.Clone(data)}
	for _, r := range refs {
		old := t.m[r]
		i, found := slices.BinarySearchFunc(old, batchID, compareTag)
		tags := make([]engine.Tag, 0, len(old)+1)
		tags = append(tags, old[:i]...)
		tags = append(tags, tag)
		if found {
			i++
		}
		t.m[r] = append(tags, old[i:]...)
	}
	return nil
}

// RemoveTags removes batchID's tag from each ref.
func (e *Engine) RemoveTags(_ context.Context, batchID string, refs []string) error {
	t := &e.tags
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range refs {
		old := t.m[r]
		i, found := slices.BinarySearchFunc(old, batchID, compareTag)
		switch {
		case !found:
		case len(old) == 1:
			delete(t.m, r)
		default:
			t.m[r] = slices.Concat(old[:i], old[i+1:])
		}
	}
	return nil
}

// Tags returns the tags of each ref, by batch id: the stored slices
// themselves (see tagStore), an empty one for a ref without tags.
func (e *Engine) Tags(_ context.Context, refs []string) ([][]engine.Tag, error) {
	t := &e.tags
	out := make([][]engine.Tag, len(refs))
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i, r := range refs {
		if tags := t.m[r]; tags != nil {
			out[i] = slices.Clip(tags)
		} else {
			out[i] = []engine.Tag{}
		}
	}
	return out, nil
}
