package service_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/engine/redis/redistest"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/ordersys/ordersystest"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// engines are the engines every cache test runs on.
var engines = map[string]func(t *testing.T) engine.Engine{
	"memory": func(*testing.T) engine.Engine { return memory.New() },
	"redis": func(t *testing.T) engine.Engine {
		url := redistest.URL(t)
		opts, err := goredis.ParseURL(url)
		require.NoError(t, err)
		client := goredis.NewClient(opts)
		t.Cleanup(func() { _ = client.Close() })
		return redis.New(client, redis.Options{Prefix: redistest.Prefix(t, url, "cq")})
	},
}

// qEnv is a service with redemption configured over SQLite and a given
// engine, to watch "my coupons" through claims and redemptions.
type qEnv struct {
	svc   *service.Service
	store store.Store
	clock *clock
	ctx   context.Context
}

func querySetup(t *testing.T, e engine.Engine, mods ...func(*service.Config)) *qEnv {
	t.Helper()
	q := &qEnv{clock: &clock{t: time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)}, ctx: t.Context()}
	st, err := sqlite.Open(q.ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "coupond.db"), Synchronous: "normal"})
	require.NoError(t, err)
	q.store = st
	orders := ordersystest.New(t)
	cfg := service.Config{Store: st, Engine: e, Now: q.clock.Now, Redemption: service.RedemptionConfig{
		OrderSystem: ordersys.New(ordersys.Config{Backoff: time.Millisecond, Attempts: 2}), OrderSystemURL: orders.Endpoint(),
	}}
	for _, m := range mods {
		m(&cfg)
	}
	q.svc = service.New(cfg)
	t.Cleanup(func() {
		q.svc.Close()
		_ = st.Close()
	})
	return q
}

func (q *qEnv) batch(t *testing.T, n int64, mods ...func(*coupon.BatchSpec)) *coupon.Batch {
	t.Helper()
	s := coupon.BatchSpec{Name: "mine", TotalQuantity: n, PerUserLimit: int(min(n, 50)),
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500}}
	for _, m := range mods {
		m(&s)
	}
	b, err := q.svc.CreateBatch(q.ctx, s)
	require.NoError(t, err)
	v, err := q.svc.Transition(q.ctx, b.ID, coupon.Publish)
	require.NoError(t, err)
	return v.Batch
}

func (q *qEnv) claim(t *testing.T, b *coupon.Batch, user string) *coupon.Claim {
	t.Helper()
	c, _, err := q.svc.Claim(q.ctx, claimReq(b.ID, user))
	require.NoError(t, err)
	return c
}

// list returns the user's claims of a status, every page, as id → status.
func (q *qEnv) list(t *testing.T, user, status string) map[string]coupon.ClaimStatus {
	t.Helper()
	out := map[string]coupon.ClaimStatus{}
	cursor := ""
	for {
		cs, next, err := q.svc.UserClaims(q.ctx, service.UserClaimQuery{UserID: user, Status: status, Cursor: cursor, Limit: 3})
		require.NoError(t, err)
		for _, c := range cs {
			out[c.ID] = c.Status
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// truth is what the store says of the user's claims as of now.
func (q *qEnv) truth(t *testing.T, user string) map[string]coupon.ClaimStatus {
	t.Helper()
	cs, err := q.store.ListUserClaims(q.ctx, store.UserClaimFilter{UserID: user, Limit: 1000})
	require.NoError(t, err)
	out := map[string]coupon.ClaimStatus{}
	for _, c := range cs {
		out[c.ID] = c.EffectiveStatus(q.clock.Now())
	}
	return out
}

func (q *qEnv) reserve(t *testing.T, order, user string, claims ...*coupon.Claim) *coupon.Redemption {
	t.Helper()
	req := service.ReserveRequest{OrderID: order, UserID: user, Platform: "ios", Cart: cart(line("l1", claims[0].MerchantID, 5000, 1))}
	for _, c := range claims {
		req.ClaimIDs = append(req.ClaimIDs, c.ID)
	}
	r, _, err := q.svc.Reserve(q.ctx, req)
	require.NoError(t, err)
	return r
}

// TestReadYourWrites: on every engine, a user's list and badges show each
// of the user's changes at once — claim, reserve, confirm, refund, cancel,
// expiry — though the cache answered the list before each change.
func TestReadYourWrites(t *testing.T) {
	for name, newEngine := range engines {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := querySetup(t, newEngine(t))
			b := q.batch(t, 20)
			user := "ryw-" + name
			require.Empty(t, q.list(t, user, ""), "cached: no claims")

			// Claim, then list.
			var claims []*coupon.Claim
			for i := range 4 {
				claims = append(claims, q.claim(t, b, user))
				got := q.list(t, user, "")
				require.Len(t, got, i+1, "the claim just made is listed")
				require.Equal(t, q.truth(t, user), got)
				badges, err := q.svc.UserBadges(q.ctx, user)
				require.NoError(t, err)
				require.Equal(t, int64(i+1), badges.Available)
			}
			require.Len(t, q.list(t, user, "available"), 4)

			// Redeem, then list.
			r := q.reserve(t, "o-1-"+name, user, claims[0])
			require.Equal(t, coupon.ClaimLocked, q.list(t, user, "")[claims[0].ID])
			require.Len(t, q.list(t, user, "locked"), 1)
			_, err := q.svc.Confirm(q.ctx, service.RedemptionRef{ID: r.ID}, service.ByAPI)
			require.NoError(t, err)
			require.Equal(t, coupon.ClaimUsed, q.list(t, user, "")[claims[0].ID])
			require.Len(t, q.list(t, user, "available"), 3)
			badges, err := q.svc.UserBadges(q.ctx, user)
			require.NoError(t, err)
			require.Equal(t, int64(3), badges.Available)

			// Refund gives it back (still valid: policy return).
			_, err = q.svc.Refund(q.ctx, service.RefundRequest{Ref: service.RedemptionRef{ID: r.ID}, By: service.ByAPI})
			require.NoError(t, err)
			require.Equal(t, coupon.ClaimAvailable, q.list(t, user, "")[claims[0].ID])

			// Reserve and cancel.
			r2 := q.reserve(t, "o-2-"+name, user, claims[1])
			require.Equal(t, coupon.ClaimLocked, q.list(t, user, "")[claims[1].ID])
			_, err = q.svc.Cancel(q.ctx, service.RedemptionRef{ID: r2.ID}, service.ByAPI)
			require.NoError(t, err)
			require.Equal(t, coupon.ClaimAvailable, q.list(t, user, "")[claims[1].ID])

			// Expiry: the cached list reads the clock; the sweep's write is
			// seen too. Badges count "expiring soon" within 72h.
			q.clock.Advance(5 * 24 * time.Hour)
			badges, err = q.svc.UserBadges(q.ctx, user)
			require.NoError(t, err)
			require.Equal(t, int64(4), badges.Available)
			require.Equal(t, int64(4), badges.ExpiringSoon)
			q.clock.Advance(3 * 24 * time.Hour)
			require.Len(t, q.list(t, user, "expired"), 4)
			_, err = q.svc.SweepExpiry(q.ctx)
			require.NoError(t, err)
			require.Equal(t, q.truth(t, user), q.list(t, user, ""))
			st := q.svc.UserCacheStats()
			require.NotZero(t, st.Hits, "the cache answered")
			require.NotZero(t, st.Misses)
		})
	}
}

// TestConcurrentClaimsAndReads: readers list while the user claims; after
// each claim returns, every later read shows it.
func TestConcurrentClaimsAndReads(t *testing.T) {
	for name, newEngine := range engines {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := querySetup(t, newEngine(t))
			b := q.batch(t, 40)
			user := "race-" + name
			var done atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						before := done.Load()
						cs, _, err := q.svc.UserClaims(q.ctx, service.UserClaimQuery{UserID: user, Limit: 100})
						if err != nil {
							t.Error(err)
							return
						}
						if int64(len(cs)) < before {
							t.Errorf("read shows %d claims, %d were acknowledged before it began", len(cs), before)
							return
						}
					}
				}()
			}
			for range 30 {
				q.claim(t, b, user)
				done.Add(1)
			}
			close(stop)
			wg.Wait()
			require.Len(t, q.list(t, user, ""), 30)
		})
	}
}

// TestCacheKilledMidRun: a private Redis serves claims and the cache; it is
// killed while readers list, and every read still answers, correctly, from
// the store; when it comes back (empty), claims and lists go on.
func TestCacheKilledMidRun(t *testing.T) {
	srv := redistest.StartServer(t)
	opts, err := goredis.ParseURL(srv.URL())
	require.NoError(t, err)
	opts.MaxRetries, opts.DialTimeout = -1, 100*time.Millisecond
	client := goredis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	q := querySetup(t, redis.New(client, redis.Options{}))
	b := q.batch(t, 100)
	users := []string{"k1", "k2", "k3"}
	for _, u := range users {
		for range 3 {
			q.claim(t, b, u)
		}
		require.Equal(t, q.truth(t, u), q.list(t, u, ""))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reads atomic.Int64
	for _, u := range users {
		want := q.truth(t, u)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cs, _, err := q.svc.UserClaims(q.ctx, service.UserClaimQuery{UserID: u, Limit: 100})
				if err != nil {
					t.Errorf("read failed with the cache down: %v", err)
					return
				}
				if len(cs) != len(want) {
					t.Errorf("read shows %d claims, want %d", len(cs), len(want))
					return
				}
				for _, c := range cs {
					if want[c.ID] != c.Status {
						t.Errorf("claim %s is %s, want %s", c.ID, c.Status, want[c.ID])
						return
					}
				}
				reads.Add(1)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	srv.Stop()
	before := reads.Load()
	require.Eventually(t, func() bool { return reads.Load() > before+20 }, 10*time.Second, 5*time.Millisecond, "reads go on without Redis")
	close(stop)
	wg.Wait()
	require.NotZero(t, q.svc.UserCacheStats().Fallbacks)
	badges, err := q.svc.UserBadges(q.ctx, "k1")
	require.NoError(t, err, "badges answer from the store")
	require.Equal(t, int64(3), badges.Available)

	srv.Start() // empty: the batch is rebuilt from the store on the next claim
	require.Eventually(t, func() bool { return client.Ping(q.ctx).Err() == nil }, 5*time.Second, 10*time.Millisecond)
	c := q.claim(t, b, "k1")
	got := q.list(t, "k1", "")
	require.Contains(t, got, c.ID)
	require.Equal(t, q.truth(t, "k1"), got)
}

// flakyCache is an engine whose cache calls fail while failing is set.
type flakyCache struct {
	engine.Engine
	failing atomic.Bool
}

var errCacheDown = errors.New("cache down")

func (f *flakyCache) GetUserClaims(ctx context.Context, u string) ([]byte, int64, bool, error) {
	if f.failing.Load() {
		return nil, 0, false, errCacheDown
	}
	return f.Engine.GetUserClaims(ctx, u)
}

func (f *flakyCache) FillUserClaims(ctx context.Context, u string, v int64, val []byte, ttl time.Duration) (bool, error) {
	if f.failing.Load() {
		return false, errCacheDown
	}
	return f.Engine.FillUserClaims(ctx, u, v, val, ttl)
}

func (f *flakyCache) UserClaimsChanged(ctx context.Context, users []string) error {
	if f.failing.Load() {
		return errCacheDown
	}
	return f.Engine.UserClaimsChanged(ctx, users)
}

func (f *flakyCache) SettleAndTouch(ctx context.Context, s []engine.Settlement, users []string) error {
	if f.failing.Load() {
		return errCacheDown
	}
	return f.Engine.SettleAndTouch(ctx, s, users)
}

// TestCacheFailsDuringChange: the cache fails while a change is made, so
// its bump is lost; the cache then comes back still holding the list from
// before. Reads never show that stale list: the instance reads the store
// for that user until a retried bump has dropped it.
func TestCacheFailsDuringChange(t *testing.T) {
	f := &flakyCache{Engine: memory.New()}
	q := querySetup(t, f)
	b := q.batch(t, 10)
	c := q.claim(t, b, "fl")
	require.Equal(t, coupon.ClaimAvailable, q.list(t, "fl", "")[c.ID]) // cached

	f.failing.Store(true)
	q.reserve(t, "o-fl", "fl", c)
	require.Equal(t, coupon.ClaimLocked, q.list(t, "fl", "")[c.ID], "from the store while the cache is down")
	f.failing.Store(false)
	for range 20 {
		require.Equal(t, coupon.ClaimLocked, q.list(t, "fl", "")[c.ID], "never the stale cached list")
		time.Sleep(5 * time.Millisecond)
	}
	// The retried bump has dropped the stale entry: the cache answers again.
	require.Eventually(t, func() bool {
		before := q.svc.UserCacheStats().Hits
		q.list(t, "fl", "")
		return q.svc.UserCacheStats().Hits > before
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, coupon.ClaimLocked, q.list(t, "fl", "")[c.ID])
}

// TestManyClaimsSkipTheCache: a user holding more claims than the cache
// keeps is served by the store, with the same pages and badges.
func TestManyClaimsSkipTheCache(t *testing.T) {
	q := querySetup(t, memory.New(), func(c *service.Config) { c.Query.CacheMaxClaims = 3 })
	b := q.batch(t, 10)
	for range 5 {
		q.claim(t, b, "big")
	}
	require.Equal(t, q.truth(t, "big"), q.list(t, "big", ""))
	require.Len(t, q.list(t, "big", "available"), 5)
	q.claim(t, b, "big")
	require.Len(t, q.list(t, "big", ""), 6)
	badges, err := q.svc.UserBadges(q.ctx, "big")
	require.NoError(t, err)
	require.Equal(t, int64(6), badges.Available)
}
