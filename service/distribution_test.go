package service_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/engine/redis/redistest"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/postgres"
	"github.com/coupond/coupond/store/sqlite"
)

// backends are the store and engine pairs the distribution tests run on:
// the defaults, and the production pair. Each call returns a fresh store
// and engine; calling the returned function again opens another instance
// on the same store and engine state (a second process).
var backends = map[string]func(t *testing.T) func() (store.Store, engine.Engine){
	"sqlite+memory": func(t *testing.T) func() (store.Store, engine.Engine) {
		path := filepath.Join(t.TempDir(), "coupond.db")
		st, err := sqlite.Open(t.Context(), sqlite.Config{Path: path, Synchronous: "normal"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		eng := memory.New()
		// SQLite allows one writer process; the second instance shares it.
		return func() (store.Store, engine.Engine) { return st, eng }
	},
	"postgres+redis": func(t *testing.T) func() (store.Store, engine.Engine) {
		url := backendtest.PostgresSchema(t)
		redisURL := redistest.URL(t)
		opts, err := goredis.ParseURL(redisURL)
		require.NoError(t, err)
		prefix := redistest.Prefix(t, redisURL, "dist")
		return func() (store.Store, engine.Engine) {
			st, err := postgres.Open(context.Background(), postgres.Config{URL: url})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			client := goredis.NewClient(opts)
			t.Cleanup(func() { _ = client.Close() })
			return st, redis.New(client, redis.Options{Prefix: prefix})
		}
	},
}

func newService(t *testing.T, open func() (store.Store, engine.Engine), tune ...func(*service.Config)) (*service.Service, store.Store) {
	t.Helper()
	st, eng := open()
	cfg := service.Config{Store: st, Engine: eng}
	for _, f := range tune {
		f(&cfg)
	}
	svc := service.New(cfg)
	t.Cleanup(svc.Close)
	require.NoError(t, svc.LoadEngine(t.Context()))
	return svc, st
}

func forBackends(t *testing.T, fn func(t *testing.T, open func() (store.Store, engine.Engine))) {
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk(t))
		})
	}
}

func externalSpec(total int64) coupon.BatchSpec {
	s := spec(total, 1)
	s.Source = coupon.SourceExternal
	return s
}

// TestImportReportsEveryLineAndAddsNothingTwice imports a file with
// duplicates (in one chunk and across chunks), blank and malformed lines,
// a code of another batch and more codes than the total; then runs the
// same file again. Counts and line reports are exact both times, and the
// codes reach the pool: every one is claimed, with its amount and tags.
func TestImportReportsEveryLineAndAddsNothingTwice(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, open func() (store.Store, engine.Engine)) {
		ctx := t.Context()
		svc, st := newService(t, open)
		other, err := svc.CreateBatch(ctx, spec(1, 1))
		require.NoError(t, err)
		_, err = svc.Transition(ctx, other.ID, coupon.Publish)
		require.NoError(t, err)
		otherCode := firstCode(t, st, other.ID)

		b, err := svc.CreateBatch(ctx, externalSpec(5))
		require.NoError(t, err)
		_, err = svc.Transition(ctx, b.ID, coupon.Publish)
		require.NoError(t, err)

		service.SetImportChunk(svc, 4)
		lines := []string{
			"code,amount,tag",           // 1 header
			"ACME-0001",                 // 2
			"ACME-0002,250",             // 3
			"ACME-0003,300,tier=gold",   // 4
			"",                          // 5 blank
			"ACME-0002",                 // 6 duplicate of 3, in the same chunk
			"bad code!",                 // 7 malformed code
			"ACME-0004,-5",              // 8 malformed amount
			"ACME-0005,100,tier",        // 9 malformed tag
			"   ",                       // 10 blank
			otherCode,                   // 11 another batch's
			"ACME-0001,999",             // 12 duplicate of line 2, in a later chunk
			"ACME-0006,600,src=partner", // 13 the batch's 4th code
			"ACME-0007",                 // 14 5th
			"ACME-0008",                 // 15 full
		}
		file := strings.Join(lines, "\r\n") + "\n"

		var progress []int64
		res, err := svc.ImportCodes(ctx, service.ImportRequest{BatchID: b.ID, Body: strings.NewReader(file),
			Progress: func(r service.ImportResult) { progress = append(progress, r.Lines) }})
		require.NoError(t, err)
		errs := []service.ImportLineError{
			{Line: 5, Code: "blank", Reason: "the line is blank"},
			{Line: 6, Code: "duplicate", Reason: "duplicate of line 3"},
			{Line: 7, Code: "malformed", Reason: `code "bad code!" has a character other than letters, digits, '-', '_' and '.'`},
			{Line: 8, Code: "malformed", Reason: `amount "-5" must be a whole number of minor units between 1 and 10000000000000`},
			{Line: 9, Code: "malformed", Reason: `field 3: "tier" is not key=value (only the second field may be an amount)`},
			{Line: 10, Code: "blank", Reason: "the line is blank"},
			{Line: 11, Code: "taken", Reason: "the code belongs to another batch"},
			{Line: 12, Code: "duplicate", Reason: "duplicate of line 2"},
			{Line: 15, Code: "full", Reason: "the batch holds its total quantity of 5 codes"},
		}
		require.Equal(t, &service.ImportResult{BatchID: b.ID, Lines: 15, Imported: 5, Existing: 0, Rejected: 9,
			Errors: errs, GeneratedCount: 5}, res)
		require.Equal(t, []int64{6, 14, 15}, progress, "after each chunk and at the end")

		// The same file again: nothing added, the same reports, every
		// imported line recognised as such.
		again, err := svc.ImportCodes(ctx, service.ImportRequest{BatchID: b.ID, Body: strings.NewReader(file)})
		require.NoError(t, err)
		require.Equal(t, &service.ImportResult{BatchID: b.ID, Lines: 15, Imported: 0, Existing: 5, Rejected: 9,
			Errors: errs, GeneratedCount: 5}, again)

		// Imported codes are claimed through the pool like generated ones.
		got := map[string]*coupon.Claim{}
		for i := range 6 {
			c, _, err := svc.Claim(ctx, claimReq(b.ID, fmt.Sprintf("u%d", i)))
			if i == 5 {
				require.ErrorIs(t, err, coupon.ErrSoldOut)
				continue
			}
			require.NoError(t, err)
			got[c.Code] = c
		}
		require.Len(t, got, 5)
		require.EqualValues(t, 600, got["ACME-0006"].Amount)
		require.EqualValues(t, 250, got["ACME-0002"].Amount)
		require.EqualValues(t, 500, got["ACME-0001"].Amount, "the batch's fixed amount")
		code, err := svc.GetCode(ctx, "ACME-0003")
		require.NoError(t, err)
		require.Equal(t, map[string]string{"tier": "gold"}, code.Tags)
		require.Equal(t, coupon.CodeClaimed, code.Status)
	})
}

func firstCode(t *testing.T, st store.Store, batchID string) string {
	t.Helper()
	codes, err := st.UnclaimedCodes(t.Context(), batchID, 0, 1)
	require.NoError(t, err)
	require.NotEmpty(t, codes)
	return codes[0].Code
}

// TestImportIntoDraftLoadsAtPublish: codes imported before publication are
// in the pool once the batch is live; an internal batch refuses imports.
func TestImportIntoDraftLoadsAtPublish(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, _ := newService(t, backends["sqlite+memory"](t))
	internal, err := svc.CreateBatch(ctx, spec(3, 1))
	require.NoError(t, err)
	_, err = svc.ImportCodes(ctx, service.ImportRequest{BatchID: internal.ID, Body: strings.NewReader("X-1\n")})
	require.ErrorIs(t, err, coupon.ErrConflict)

	b, err := svc.CreateBatch(ctx, externalSpec(3))
	require.NoError(t, err)
	res, err := svc.ImportCodes(ctx, service.ImportRequest{BatchID: b.ID, Body: strings.NewReader("X-1\nX-2")})
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Imported)
	v, err := svc.Transition(ctx, b.ID, coupon.Publish)
	require.NoError(t, err)
	require.EqualValues(t, 2, v.GeneratedCount, "publication generates nothing for a partner's batch")
	require.EqualValues(t, 2, v.PoolDepth)
	for _, u := range []string{"a", "b"} {
		_, _, err := svc.Claim(ctx, claimReq(b.ID, u))
		require.NoError(t, err)
	}
	_, _, err = svc.Claim(ctx, claimReq(b.ID, "c"))
	require.ErrorIs(t, err, coupon.ErrSoldOut)
	// Imported while live, claimed at once.
	_, err = svc.ImportCodes(ctx, service.ImportRequest{BatchID: b.ID, Body: strings.NewReader("X-3\n")})
	require.NoError(t, err)
	c, _, err := svc.Claim(ctx, claimReq(b.ID, "c"))
	require.NoError(t, err)
	require.Equal(t, "X-3", c.Code)
}

// TestGrantsAreIdempotent: a grant needs a key, records its channel, and a
// retry with the key returns the same claim, concurrently too.
func TestGrantsAreIdempotent(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, open func() (store.Store, engine.Engine)) {
		ctx := t.Context()
		svc, st := newService(t, open)
		v, err := svc.CreateBatch(ctx, spec(10, 3))
		require.NoError(t, err)
		_, err = svc.Transition(ctx, v.ID, coupon.Publish)
		require.NoError(t, err)

		_, _, err = svc.Grant(ctx, service.GrantRequest{BatchID: v.ID, Claimant: coupon.Claimant{UserID: "amy"}})
		require.Equal(t, coupon.CodeInvalid, coupon.ErrorCode(err), "no key")

		var wg sync.WaitGroup
		claims := make([]*coupon.Claim, 8)
		var replays atomic.Int32
		for i := range claims {
			wg.Go(func() {
				c, replayed, err := svc.Grant(ctx, service.GrantRequest{BatchID: v.ID, Claimant: coupon.Claimant{UserID: "amy"},
					IdempotencyKey: "crm-42", Channel: "crm"})
				if err != nil {
					t.Errorf("grant: %v", err)
					return
				}
				if replayed {
					replays.Add(1)
				}
				claims[i] = c
			})
		}
		wg.Wait()
		require.EqualValues(t, 7, replays.Load())
		for _, c := range claims {
			require.Equal(t, claims[0].ID, c.ID)
		}
		require.Equal(t, "crm", claims[0].Channel)
		n, err := st.ClaimedCount(ctx, v.ID)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		c, replayed, err := svc.Grant(ctx, service.GrantRequest{BatchID: v.ID, Claimant: coupon.Claimant{UserID: "amy"}, IdempotencyKey: "crm-43"})
		require.NoError(t, err)
		require.False(t, replayed)
		require.Equal(t, service.ChannelGrant, c.Channel)
		stored, err := st.GetClaim(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, service.ChannelGrant, stored.Channel)
	})
}

// jobLease is a lease that a test can take away.
type jobLease struct{ lost atomic.Bool }

func (l *jobLease) Extend(context.Context) (bool, error) { return !l.lost.Load(), nil }

// TestBulkGrantKilledHalfWayResumes runs a job on one instance, kills it in
// the middle of a step (its grants made, its progress not recorded), then
// lets a second instance finish the job: every user is granted exactly
// once, the counts are exact, the failures carry their reasons.
func TestBulkGrantKilledHalfWayResumes(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, open func() (store.Store, engine.Engine)) {
		ctx := t.Context()
		const users = 1000
		var killed atomic.Bool
		runCtx, kill := context.WithCancel(ctx)
		first, st := newService(t, open, func(c *service.Config) {})
		service.SetBeforeAdvance(first, func(_ string, step store.AdvanceGrantJob) {
			if step.From >= users/2 && killed.CompareAndSwap(false, true) {
				kill() // the process dies: this step's grants are made, its record is not
			}
		})
		v, err := first.CreateBatch(ctx, spec(users, 1))
		require.NoError(t, err)
		_, err = first.Transition(ctx, v.ID, coupon.Publish)
		require.NoError(t, err)

		var list strings.Builder
		list.WriteString("user_id\n")
		for i := range users {
			fmt.Fprintf(&list, "user-%04d\n", i)
			if i == 10 {
				list.WriteString("\n")          // a blank line keeps its number
				list.WriteString("user-0003\n") // a user twice: the second is over the limit
			}
		}
		list.WriteString("bad\x01user\n") // a malformed user id
		j, err := first.CreateGrantJob(ctx, service.GrantJobRequest{BatchID: v.ID, Users: strings.NewReader(list.String())})
		require.NoError(t, err)
		require.Equal(t, store.JobPending, j.Status)
		require.EqualValues(t, users+2, j.Total)

		_, err = first.RunJob(runCtx, j.ID, &jobLease{})
		require.Error(t, err, "killed")
		mid, err := first.GetJob(ctx, j.ID, 0, 0)
		require.NoError(t, err)
		require.Equal(t, store.JobPending, mid.Status)
		require.Greater(t, mid.Remaining, int64(0))
		require.Less(t, mid.Remaining, int64(users))

		second, _ := newService(t, open)
		done, err := second.RunJob(ctx, j.ID, &jobLease{})
		require.NoError(t, err)
		require.Equal(t, store.JobDone, done.Status)

		final, err := second.GetJob(ctx, j.ID, 0, 10)
		require.NoError(t, err)
		require.EqualValues(t, users, final.Done)
		require.EqualValues(t, 2, final.Failed)
		require.EqualValues(t, 0, final.Remaining)
		require.Len(t, final.Failures, 2)
		require.Equal(t, "user-0003", final.Failures[0].UserID)
		require.Equal(t, "limit_reached", final.Failures[0].Code)
		// Lines 5 and 14 are granted in the same step, at once: either is refused.
		require.Contains(t, []int64{5, 14}, final.Failures[0].Line)
		require.Equal(t, "invalid", final.Failures[1].Code)

		n, err := st.ClaimedCount(ctx, v.ID)
		require.NoError(t, err)
		require.EqualValues(t, users, n, "each user granted exactly once")
		for _, u := range []string{"user-0000", "user-0003", "user-0999"} {
			cs, _, err := second.UserClaims(ctx, service.UserClaimQuery{UserID: u})
			require.NoError(t, err)
			require.Len(t, cs, 1, u)
			require.Equal(t, service.ChannelJob, cs[0].Channel)
		}
	})
}

// TestEventGrantsOncePerEvent delivers events again and again: each grants
// each triggered batch once.
func TestEventGrantsOncePerEvent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, st := newService(t, backends["sqlite+memory"](t))
	s := spec(10, 5)
	s.TriggerSubject = "user.registered"
	v, err := svc.CreateBatch(ctx, s)
	require.NoError(t, err)
	_, err = svc.Transition(ctx, v.ID, coupon.Publish)
	require.NoError(t, err)
	subjects, err := svc.TriggerSubjects(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"user.registered"}, subjects)

	for range 3 {
		for _, id := range []string{"e1", "e2"} {
			out, err := svc.GrantOnEvent(ctx, service.TriggerEvent{Subject: "user.registered", ID: id, Claimant: coupon.Claimant{UserID: "amy"}})
			require.NoError(t, err)
			require.Len(t, out, 1)
			require.NoError(t, out[0].Err)
		}
	}
	out, err := svc.GrantOnEvent(ctx, service.TriggerEvent{Subject: "order.paid", ID: "e3", Claimant: coupon.Claimant{UserID: "amy"}})
	require.NoError(t, err)
	require.Empty(t, out)
	n, err := st.ClaimedCount(ctx, v.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
}

// TestMerchantSeesOnlyItsOwnDistribution: a merchant's credential imports,
// grants and follows jobs of its own merchant's batches only; another's
// answer not_found, as what does not exist.
func TestMerchantSeesOnlyItsOwnDistribution(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, _ := newService(t, backends["sqlite+memory"](t))
	mk := func(merchant string) string {
		s := externalSpec(5)
		s.MerchantID = merchant
		v, err := svc.CreateBatch(ctx, s)
		require.NoError(t, err)
		_, err = svc.ImportCodes(ctx, service.ImportRequest{BatchID: v.ID, Body: strings.NewReader(merchant + "-1\n" + merchant + "-2\n")})
		require.NoError(t, err)
		_, err = svc.Transition(ctx, v.ID, coupon.Publish)
		require.NoError(t, err)
		return v.ID
	}
	own, other := mk("m1"), mk("m2")
	job, err := svc.CreateGrantJob(ctx, service.GrantJobRequest{BatchID: other, Users: strings.NewReader("u1\n")})
	require.NoError(t, err)

	m1 := auth.With(ctx, auth.Principal{KeyID: "k", Role: auth.Merchant, MerchantID: "m1"})
	notFound := func(err error) {
		t.Helper()
		require.Equal(t, coupon.CodeNotFound, coupon.ErrorCode(err), "%v", err)
	}
	_, err = svc.ImportCodes(m1, service.ImportRequest{BatchID: other, Body: strings.NewReader("X-1\n")})
	notFound(err)
	_, _, err = svc.Grant(m1, service.GrantRequest{BatchID: other, Claimant: coupon.Claimant{UserID: "u"}, IdempotencyKey: "k"})
	notFound(err)
	_, err = svc.CreateGrantJob(m1, service.GrantJobRequest{BatchID: other, Users: strings.NewReader("u\n")})
	notFound(err)
	_, err = svc.GetJob(m1, job.ID, 0, 0)
	notFound(err)

	res, err := svc.ImportCodes(m1, service.ImportRequest{BatchID: own, Body: strings.NewReader("m1-3\n")})
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Imported)
	c, _, err := svc.Grant(m1, service.GrantRequest{BatchID: own, Claimant: coupon.Claimant{UserID: "u"}, IdempotencyKey: "k"})
	require.NoError(t, err)
	require.Equal(t, own, c.BatchID)
	j, err := svc.CreateGrantJob(m1, service.GrantJobRequest{BatchID: own, Users: strings.NewReader("u2\n")})
	require.NoError(t, err)
	_, err = svc.GetJob(m1, j.ID, 0, 0)
	require.NoError(t, err)
}

// TestStrandedImportIsLoadedByTheReplenisher: a chunk written by an import
// whose process died before loading it is found by the replenisher's
// listing and loaded once.
func TestStrandedImportIsLoadedByTheReplenisher(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, st := newService(t, backends["sqlite+memory"](t))
	v, err := svc.CreateBatch(ctx, externalSpec(5))
	require.NoError(t, err)
	_, err = svc.Transition(ctx, v.ID, coupon.Publish)
	require.NoError(t, err)
	// The store write of an import, without its load.
	_, err = st.ImportCodes(ctx, v.ID, 0, []store.ImportCode{{Code: "S-1", Amount: 500, Line: 1}, {Code: "S-2", Amount: 500, Line: 2}})
	require.NoError(t, err)
	ids, err := svc.BatchesToReplenish(ctx)
	require.NoError(t, err)
	require.Contains(t, ids, v.ID)
	res, err := svc.Replenish(ctx, v.ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Loaded)
	require.EqualValues(t, 0, res.Generated, "nothing is generated for a partner's batch")
	ids, err = svc.BatchesToReplenish(ctx)
	require.NoError(t, err)
	require.NotContains(t, ids, v.ID)
	for _, u := range []string{"a", "b"} {
		_, _, err := svc.Claim(ctx, claimReq(v.ID, u))
		require.NoError(t, err)
	}
	_, _, err = svc.Claim(ctx, claimReq(v.ID, "c"))
	require.ErrorIs(t, err, coupon.ErrSoldOut)
}
