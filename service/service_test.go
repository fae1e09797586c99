package service_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// env is one service over a SQLite store in a temp dir and a memory engine.
type env struct {
	svc    *service.Service
	store  *sqlite.Store
	engine *memory.Engine
	path   string
	clock  *clock
	tune   func(*service.Config) // optional changes to the default configuration
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupTuned(t, nil)
}

func setupTuned(t *testing.T, tune func(*service.Config)) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "coupond.db"), clock: &clock{t: time.Now().UTC()}, tune: tune}
	e.open(t)
	t.Cleanup(func() { e.close() })
	return e
}

func (e *env) open(t *testing.T) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: e.path, Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.engine = memory.New()
	cfg := service.Config{Store: st, Engine: e.engine, Now: e.clock.Now}
	if e.tune != nil {
		e.tune(&cfg)
	}
	e.svc = service.New(cfg)
	if err := e.svc.LoadEngine(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) close() {
	if e.svc != nil {
		e.svc.Close()
		_ = e.store.Close()
		e.svc = nil
	}
}

// restart is a crash-free restart: a new engine that knows nothing, the same database.
func (e *env) restart(t *testing.T) {
	e.close()
	e.open(t)
}

func spec(total int64, limit int) coupon.BatchSpec {
	return coupon.BatchSpec{
		Name: "flash sale", TotalQuantity: total, PerUserLimit: limit,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
	}
}

func (e *env) publish(t *testing.T, s coupon.BatchSpec) *service.BatchView {
	t.Helper()
	ctx := context.Background()
	b, err := e.svc.CreateBatch(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.Transition(ctx, b.ID, coupon.Publish)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != coupon.StatusActive || v.GeneratedCount != s.TotalQuantity {
		t.Fatalf("published batch: status %s, generated %d", v.Status, v.GeneratedCount)
	}
	return v
}

func claimReq(batchID, user string) service.ClaimRequest {
	return service.ClaimRequest{BatchID: batchID, Claimant: coupon.Claimant{UserID: user}}
}

// storm fires n claims from users at once and checks the invariants of
// DESIGN.md: no more claims than the total, none over a user's limit, no
// code twice, engine and store in agreement.
func storm(t *testing.T, e *env, batchID string, n, users int, limit int, want int) []*coupon.Claim {
	t.Helper()
	var (
		mu     sync.Mutex
		claims []*coupon.Claim
		wg     sync.WaitGroup
		start  = make(chan struct{})
		other  atomic.Int64
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, _, err := e.svc.Claim(context.Background(), claimReq(batchID, fmt.Sprintf("user-%d", i%users)))
			switch code := coupon.ErrorCode(err); code {
			case "":
				mu.Lock()
				claims = append(claims, c)
				mu.Unlock()
			case coupon.CodeSoldOut, coupon.CodeLimitReached:
			default:
				other.Add(1)
				t.Errorf("claim: unexpected %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(claims) != want {
		t.Fatalf("%d claims acknowledged, want exactly %d", len(claims), want)
	}
	checkInvariants(t, e, batchID, limit)
	return claims
}

func checkInvariants(t *testing.T, e *env, batchID string, limit int) {
	t.Helper()
	ctx := context.Background()
	b, err := e.svc.GetBatch(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.store.Snapshot(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	var held int64
	for user, seqs := range snap.Users {
		if len(seqs) > limit {
			t.Errorf("user %s holds %d claims, limit %d", user, len(seqs), limit)
		}
		held += int64(len(seqs))
	}
	if held != b.ClaimedCount || b.ClaimedCount > b.TotalQuantity {
		t.Fatalf("claims held %d, claimed_count %d, total %d", held, b.ClaimedCount, b.TotalQuantity)
	}
	if got := int64(len(snap.Pool)) + b.ClaimedCount; got != b.GeneratedCount {
		t.Fatalf("unclaimed %d + claimed %d != generated %d: a code is lost or doubled", len(snap.Pool), b.ClaimedCount, b.GeneratedCount)
	}
	st, err := e.engine.Stats(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	if st.PoolDepth != int64(len(snap.Pool)) {
		t.Fatalf("engine pool %d, store unclaimed %d", st.PoolDepth, len(snap.Pool))
	}
	// Every claim in the store holds a distinct code of this batch.
	seen := map[string]bool{}
	for user := range snap.Users {
		cs, err := e.store.ListUserClaims(ctx, store.UserClaimFilter{UserID: user, Now: e.clock.Now(), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.BatchID != batchID {
				continue
			}
			if seen[c.Code] {
				t.Fatalf("code %s in two claims", c.Code)
			}
			seen[c.Code] = true
		}
	}
	if int64(len(seen)) != b.ClaimedCount {
		t.Fatalf("%d distinct codes in claims, claimed_count %d", len(seen), b.ClaimedCount)
	}
}

func TestFlashSaleNeverOversells(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := e.publish(t, spec(500, 2))
	claims := storm(t, e, b.ID, 2000, 300, 2, 500)
	codes := map[string]bool{}
	for _, c := range claims {
		if codes[c.Code] {
			t.Fatalf("code %s acknowledged twice", c.Code)
		}
		codes[c.Code] = true
		if c.Status != coupon.ClaimAvailable || c.Amount != 500 || !c.ValidTo.Equal(c.ClaimedAt.AddDate(0, 0, 7)) {
			t.Fatalf("claim %+v", c)
		}
	}
	st, err := e.engine.Stats(context.Background(), b.ID)
	if err != nil || st.Claimed != 500 || st.PoolDepth != 0 {
		t.Fatalf("engine stats %+v, %v", st, err)
	}
}

func TestWithoutGroupCommitTheInvariantsHoldToo(t *testing.T) {
	t.Parallel()
	e := &env{path: filepath.Join(t.TempDir(), "c.db"), clock: &clock{t: time.Now().UTC()}}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: e.path, Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.engine = st, memory.New()
	e.svc = service.New(service.Config{Store: st, Engine: e.engine, Now: e.clock.Now})
	t.Cleanup(e.close)
	b := e.publish(t, spec(200, 1))
	storm(t, e, b.ID, 400, 250, 1, 200)
}

func TestIdempotentRetriesMakeOneClaim(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := e.publish(t, spec(100, 5))
	req := claimReq(b.ID, "alice")
	req.IdempotencyKey = "order-42-attempt"
	var (
		wg  sync.WaitGroup
		ids sync.Map
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := e.svc.Claim(context.Background(), req)
			if err != nil {
				t.Errorf("retry: %v", err)
				return
			}
			ids.Store(c.ID+"/"+c.Code, true)
		}()
	}
	wg.Wait()
	n := 0
	ids.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d different claims for one idempotency key", n)
	}
	c, replayed, err := e.svc.Claim(context.Background(), req)
	if err != nil || !replayed {
		t.Fatalf("later retry: replayed=%v err=%v", replayed, err)
	}
	cs, _, err := e.svc.UserClaims(context.Background(), service.UserClaimQuery{UserID: "alice"})
	if err != nil || len(cs) != 1 || cs[0].ID != c.ID {
		t.Fatalf("alice holds %d claims (%v), want the one of the key", len(cs), err)
	}
	// The key survives a restart: the engine relearns it from the store.
	e.restart(t)
	again, replayed, err := e.svc.Claim(context.Background(), req)
	if err != nil || !replayed || again.ID != c.ID {
		t.Fatalf("retry after restart: %v replayed=%v err=%v, want claim %s", again, replayed, err, c.ID)
	}
	// Another key is another claim.
	req.IdempotencyKey = "order-43"
	other, replayed, err := e.svc.Claim(context.Background(), req)
	if err != nil || replayed || other.ID == c.ID {
		t.Fatalf("new key: %v replayed=%v err=%v", other, replayed, err)
	}
}

func TestRestartRebuildsThePoolAndClaimsContinue(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := e.publish(t, spec(300, 3))
	first := storm(t, e, b.ID, 150, 100, 3, 150)
	e.restart(t)
	st, err := e.engine.Stats(context.Background(), b.ID)
	if err != nil || st.PoolDepth != 150 {
		t.Fatalf("after restart the engine pool holds %d (%v), want 150", st.PoolDepth, err)
	}
	// The same 100 users again: those at the limit stay there across the restart.
	second := storm(t, e, b.ID, 600, 100, 3, 150)
	codes := map[string]bool{}
	for _, c := range append(first, second...) {
		if codes[c.Code] {
			t.Fatalf("code %s handed out before and after the restart", c.Code)
		}
		codes[c.Code] = true
	}
}

func TestFailedCommitIsUndone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := e.publish(t, spec(10, 1))
	_ = e.store.Close() // every write now fails
	_, _, err := e.svc.Claim(context.Background(), claimReq(b.ID, "bob"))
	if coupon.ErrorCode(err) != coupon.CodeUnavailable {
		t.Fatalf("claim on a failed store: %v, want unavailable", err)
	}
	st, err := e.engine.Stats(context.Background(), b.ID)
	if err != nil || st.PoolDepth != 10 || st.Claimed != 0 {
		t.Fatalf("engine after undo: %+v %v; want the code back and no claim", st, err)
	}
	// bob's count was undone too: reopen the store and he can claim.
	e.svc.Close()
	e.svc = nil
	st2, err := sqlite.Open(context.Background(), sqlite.Config{Path: e.path})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st2
	e.svc = service.New(service.Config{Store: st2, Engine: e.engine, Now: e.clock.Now})
	if _, _, err := e.svc.Claim(context.Background(), claimReq(b.ID, "bob")); err != nil {
		t.Fatalf("bob after the failed claim: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	draft, err := e.svc.CreateBatch(ctx, spec(5, 1))
	if err != nil {
		t.Fatal(err)
	}
	s := spec(5, 1)
	s.ClaimPlatforms = []string{"ios"}
	ios := e.publish(t, s)
	later := spec(5, 1)
	later.ClaimStart = e.clock.Now().Add(time.Hour)
	notYet := e.publish(t, later)
	paused := e.publish(t, spec(5, 1))
	if _, err := e.svc.Transition(ctx, paused.ID, coupon.Pause); err != nil {
		t.Fatal(err)
	}
	one := e.publish(t, spec(1, 1))
	if _, _, err := e.svc.Claim(ctx, claimReq(one.ID, "first")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		req  service.ClaimRequest
		code string
	}{
		{"draft", claimReq(draft.ID, "u"), coupon.CodeNotClaimable},
		{"paused", claimReq(paused.ID, "u"), coupon.CodeNotClaimable},
		{"before the window", claimReq(notYet.ID, "u"), coupon.CodeNotClaimable},
		{"wrong platform", service.ClaimRequest{BatchID: ios.ID, Claimant: coupon.Claimant{UserID: "u", Platform: "web"}}, coupon.CodeNotClaimable},
		{"no platform where one is required", claimReq(ios.ID, "u"), coupon.CodeNotClaimable},
		{"unknown batch", claimReq(coupon.NewID(time.Now()), "u"), coupon.CodeNotFound},
		{"malformed batch id", claimReq("nope", "u"), coupon.CodeNotFound},
		{"no user", claimReq(ios.ID, ""), coupon.CodeInvalid},
		{"sold out", claimReq(one.ID, "second"), coupon.CodeSoldOut},
		{"limit", claimReq(one.ID, "first"), coupon.CodeLimitReached},
	} {
		_, _, err := e.svc.Claim(ctx, tc.req)
		if got := coupon.ErrorCode(err); got != tc.code {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.code)
		}
	}
	// Resume, and the paused batch is claimable again.
	if _, err := e.svc.Transition(ctx, paused.ID, coupon.Resume); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Claim(ctx, claimReq(paused.ID, "u")); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	// Transitions from the wrong status conflict.
	if _, err := e.svc.Transition(ctx, paused.ID, coupon.Publish); coupon.ErrorCode(err) != coupon.CodeConflict {
		t.Fatalf("publishing an active batch: %v", err)
	}
	if _, err := e.svc.Transition(ctx, paused.ID, coupon.End); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Claim(ctx, claimReq(paused.ID, "v")); coupon.ErrorCode(err) != coupon.CodeNotClaimable {
		t.Fatalf("claim of an ended batch: %v", err)
	}
}

func TestSplitBudgetIsExactAfterPublish(t *testing.T) {
	t.Parallel()
	e := setup(t)
	s := spec(2500, 1)
	s.Amount = coupon.AmountSpec{Type: coupon.AmountSplit, Budget: 1_000_003, Min: 7}
	b := e.publish(t, s)
	snap, err := e.store.Snapshot(context.Background(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, c := range snap.Pool {
		if c.Amount < 7 {
			t.Fatalf("amount %d below the minimum", c.Amount)
		}
		sum += c.Amount
	}
	if len(snap.Pool) != 2500 || sum != 1_000_003 || snap.Batch.GeneratedAmount != sum {
		t.Fatalf("%d codes summing to %d (generated_amount %d), want 2500 summing to 1000003", len(snap.Pool), sum, snap.Batch.GeneratedAmount)
	}
}

func TestMyCouponsOrderStatusAndPages(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	var ids []string
	for days := 5; days >= 1; days-- {
		s := spec(3, 1)
		s.Validity = coupon.Validity{Days: days}
		b := e.publish(t, s)
		c, _, err := e.svc.Claim(ctx, claimReq(b.ID, "carol"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append([]string{c.ID}, ids...) // soonest expiry first
	}
	var got []string
	cursor := ""
	for {
		cs, next, err := e.svc.UserClaims(ctx, service.UserClaimQuery{UserID: "carol", Status: "available", Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("pages gave %v, want %v", got, ids)
	}
	// Two days on, the two shortest are expired.
	e.clock.Advance(49 * time.Hour)
	avail, _, _ := e.svc.UserClaims(ctx, service.UserClaimQuery{UserID: "carol", Status: "available"})
	expired, _, _ := e.svc.UserClaims(ctx, service.UserClaimQuery{UserID: "carol", Status: "expired"})
	if len(avail) != 3 || len(expired) != 2 || expired[0].Status != coupon.ClaimExpired {
		t.Fatalf("available %d, expired %d; want 3 and 2", len(avail), len(expired))
	}
	if _, _, err := e.svc.UserClaims(ctx, service.UserClaimQuery{UserID: "carol", Cursor: "garbage!"}); coupon.ErrorCode(err) != coupon.CodeInvalid {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := e.svc.UserClaims(ctx, service.UserClaimQuery{UserID: "carol", Status: "lost"}); coupon.ErrorCode(err) != coupon.CodeInvalid {
		t.Fatalf("bad status: %v", err)
	}
}

// When the engine has lost an idempotency key that the store holds, the
// store's constraint refuses the second claim, the engine step is undone,
// and the caller gets the first claim.
func TestKeyTheEngineForgotIsAnsweredFromTheStore(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	b := e.publish(t, spec(10, 3))
	req := claimReq(b.ID, "dave")
	req.IdempotencyKey = "k-1"
	first, _, err := e.svc.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Rebuild the engine from the store but drop the keys.
	snap, err := e.store.Snapshot(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	es := engine.Snapshot{Batch: engine.BatchState{BatchID: b.ID, Active: true, PerUserLimit: 3}}
	for _, c := range snap.Pool {
		es.Pool = append(es.Pool, engine.PoolCode{Code: c.Code, Amount: c.Amount})
	}
	for u, seqs := range snap.Users {
		es.Users = append(es.Users, engine.UserSeqs{UserID: u, Seqs: seqs})
	}
	if err := e.engine.Rebuild(ctx, es); err != nil {
		t.Fatal(err)
	}
	again, replayed, err := e.svc.Claim(ctx, req)
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("retry: %+v replayed=%v err=%v; want the first claim %s", again, replayed, err, first.ID)
	}
	st, _ := e.engine.Stats(ctx, b.ID)
	if st.PoolDepth != 9 || st.Claimed != 1 {
		t.Fatalf("engine after the refused claim: %+v; want the popped code back", st)
	}
}
