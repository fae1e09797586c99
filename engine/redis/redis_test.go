package redis_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/enginetest"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/engine/redis/redistest"
)

// TestEngine runs the conformance suite on the shared Redis, all subtests
// on one engine.
func TestEngine(t *testing.T) {
	e := open(t, redis.Config{URL: redistest.URL(t)})
	enginetest.Run(t, func(*testing.T) engine.Engine { return e })
}

// TestEngineCluster runs the conformance suite on a Redis Cluster of three
// masters of its own, then checks that the batches spread over all three.
func TestEngineCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	e := open(t, redis.Config{URL: c.URL(), Cluster: true})
	t.Cleanup(func() {
		// Runs after the parallel subtests: every master holds batches.
		for _, n := range c.Nodes {
			client := goredis.NewClient(&goredis.Options{Addr: n.Addr()})
			size, err := client.DBSize(context.Background()).Result()
			_ = client.Close()
			if err != nil || size == 0 {
				t.Errorf("cluster node %s holds %d keys (%v): the batches did not spread", n.Addr(), size, err)
			}
		}
	})
	enginetest.Run(t, func(*testing.T) engine.Engine { return e })
}

// TestLostState: a Redis that was flushed, or restarted with nothing on
// disk, answers ErrUnknownBatch to every per-batch call; a Rebuild from the
// store's snapshot then restores the claims exactly as the memory engine,
// the reference, has them after the same Rebuild.
func TestLostState(t *testing.T) {
	srv := redistest.StartServer(t)
	e := open(t, redis.Config{URL: srv.URL()})
	ctx := t.Context()

	for _, lose := range []struct {
		name string
		fn   func(t *testing.T, batchID string)
	}{
		{"flushall", func(t *testing.T, _ string) {
			client := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
			defer client.Close()
			require.NoError(t, client.FlushAll(ctx).Err())
		}},
		{"restart", func(t *testing.T, batchID string) {
			srv.Stop()
			_, err := e.Claim(ctx, engine.ClaimParams{BatchID: batchID, UserID: "u9"})
			require.ErrorIs(t, err, coupon.ErrUnavailable, "Redis is down")
			_, err = e.Stats(ctx, batchID)
			require.ErrorIs(t, err, coupon.ErrUnavailable, "Redis is down")
			srv.Start()
		}},
	} {
		t.Run(lose.name, func(t *testing.T) {
			id := "lost-" + lose.name + "-" + coupon.NewID(time.Now())
			pool := make([]engine.PoolCode, 10)
			for i := range pool {
				pool[i] = engine.PoolCode{Code: "L-" + strconv.Itoa(i+1), Amount: int64(i + 1)}
			}
			require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
				Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2},
				Pool:  pool,
			}))
			c1 := claim(t, e, id, "u1", "k1", "c1")
			c2 := claim(t, e, id, "u1", "", "c2")
			c3 := claim(t, e, id, "u2", "k2", "c3") // never committed
			require.NoError(t, e.Settle(ctx, id, []string{c1.Code, c2.Code}))
			_, ok, err := e.Lock(ctx, "lost-"+id, time.Hour)
			require.NoError(t, err)
			require.True(t, ok)

			lose.fn(t, id)

			// Every per-batch method notices, once the client reconnects.
			require.Eventually(t, func() bool {
				_, err := e.Stats(ctx, id)
				return errors.Is(err, engine.ErrUnknownBatch)
			}, 10*time.Second, 20*time.Millisecond)
			for _, key := range []string{"", "k1"} {
				_, err := e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: "u1", IdempotencyKey: key, ClaimID: "c4"})
				require.ErrorIs(t, err, engine.ErrUnknownBatch)
			}
			require.ErrorIs(t, e.Undo(ctx, engine.UndoParams{BatchID: id, UserID: "u2", IdempotencyKey: "k2", Code: c3.Code, Amount: c3.Amount, Seq: c3.Seq}), engine.ErrUnknownBatch)
			require.ErrorIs(t, e.Settle(ctx, id, []string{c3.Code}), engine.ErrUnknownBatch)
			_, err = e.Pending(ctx, id, time.Now().Add(time.Hour), 10)
			require.ErrorIs(t, err, engine.ErrUnknownBatch)
			ok, err = e.Reclaim(ctx, engine.PendingClaim{BatchID: id, ClaimID: "c3", UserID: "u2", IdempotencyKey: "k2", Code: c3.Code, Amount: c3.Amount, Seq: c3.Seq})
			require.ErrorIs(t, err, engine.ErrUnknownBatch)
			require.False(t, ok)
			require.ErrorIs(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2}), engine.ErrUnknownBatch)
			require.ErrorIs(t, e.AddCodes(ctx, id, 0, 1, pool[:1]), engine.ErrUnknownBatch)
			_, err = e.Stats(ctx, id)
			require.ErrorIs(t, err, engine.ErrUnknownBatch)
			// The lease went too.
			_, ok, err = e.Lock(ctx, "lost-"+id, time.Hour)
			require.NoError(t, err)
			require.True(t, ok)

			// The store holds c1 and c2: every other code is unclaimed.
			snap := engine.Snapshot{
				Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 2},
				Pool:  pool[2:],
				Users: []engine.UserSeqs{{UserID: "u1", Seqs: []int{c1.Seq, c2.Seq}}},
				Keys:  []engine.KeyEntry{{UserID: "u1", Key: "k1", ClaimID: "c1", Code: c1.Code, Amount: c1.Amount, Seq: c1.Seq}},
			}
			ref := memory.New()
			require.NoError(t, ref.Rebuild(ctx, snap))
			require.NoError(t, e.Rebuild(ctx, snap))

			for i, p := range []engine.ClaimParams{
				{UserID: "u1", IdempotencyKey: "k1", ClaimID: "r1"}, // replays c1
				{UserID: "u1", ClaimID: "r2"},                       // at the limit
				{UserID: "u2", IdempotencyKey: "k2", ClaimID: "r3"}, // c3 was lost: a fresh claim of its code
				{UserID: "u2", ClaimID: "r4"},
				{UserID: "u2", ClaimID: "r5"},
				{UserID: "u3", IdempotencyKey: "k3", ClaimID: "r6"},
			} {
				p.BatchID, p.At = id, time.UnixMicro(int64(1e15)+int64(i)).UTC()
				want, wantErr := ref.Claim(ctx, p)
				got, err := e.Claim(ctx, p)
				require.ErrorIs(t, err, wantErr, "claim %+v", p)
				require.Equal(t, want, got, "claim %+v", p)
			}
			wantStats, err := ref.Stats(ctx, id)
			require.NoError(t, err)
			gotStats, err := e.Stats(ctx, id)
			require.NoError(t, err)
			require.Equal(t, wantStats, gotStats)
			require.Equal(t, engine.BatchStats{PoolDepth: 5, Claimed: 5}, gotStats)
			wantPending, err := ref.Pending(ctx, id, time.Now(), 100)
			require.NoError(t, err)
			gotPending, err := e.Pending(ctx, id, time.Now(), 100)
			require.NoError(t, err)
			require.Equal(t, wantPending, gotPending)
			require.Len(t, gotPending, 3)
		})
	}
}

// TestRebuildLarge loads a pool, users and keys larger than one slice of a
// Rebuild pipeline and checks them through claims.
func TestRebuildLarge(t *testing.T) {
	e := open(t, redis.Config{URL: redistest.URL(t)})
	ctx := t.Context()
	const n = 2500
	id := "large-" + coupon.NewID(time.Now())
	snap := engine.Snapshot{Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 3}}
	for i := range n {
		s := strconv.Itoa(i)
		snap.Pool = append(snap.Pool, engine.PoolCode{Code: "P:" + s, Amount: int64(i)})
		snap.Users = append(snap.Users, engine.UserSeqs{UserID: "u" + s, Seqs: []int{2, 2, 0}})
		snap.Keys = append(snap.Keys, engine.KeyEntry{UserID: "u" + s, Key: "k", ClaimID: "c" + s, Code: "X" + s, Amount: 7, Seq: 2})
	}
	require.NoError(t, e.Rebuild(ctx, snap))
	s, err := e.Stats(ctx, id)
	require.NoError(t, err)
	require.Equal(t, engine.BatchStats{PoolDepth: n, Claimed: n}, s)
	for _, i := range []int{0, 999, 1000, 2499} {
		u := "u" + strconv.Itoa(i)
		r, err := e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: u, IdempotencyKey: "k"})
		require.NoError(t, err)
		require.Equal(t, engine.ClaimResult{Code: "X" + strconv.Itoa(i), Amount: 7, Seq: 2, ClaimID: "c" + strconv.Itoa(i), Replayed: true}, r)
		require.Equal(t, 1, claim(t, e, id, u, "", "n1").Seq, "hole 1 first")
		require.Equal(t, 3, claim(t, e, id, u, "", "n2").Seq)
	}
	r := claim(t, e, id, "v", "", "n3")
	require.Equal(t, engine.ClaimResult{Code: "P:8", Amount: 8, Seq: 1, ClaimID: "n3"}, r, "codes with colons, in order")
}

// TestConnectionErrors: an unreachable Redis is coupon.ErrUnavailable.
func TestConnectionErrors(t *testing.T) {
	ctx := t.Context()
	srv := redistest.StartServer(t)
	srv.Stop()
	_, err := redis.Open(ctx, redis.Config{URL: srv.URL()})
	require.ErrorIs(t, err, coupon.ErrUnavailable)

	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
	e := redis.New(client, redis.Options{})
	t.Cleanup(func() { _ = client.Close() })
	_, err = e.Claim(ctx, engine.ClaimParams{BatchID: "b", UserID: "u"})
	require.ErrorIs(t, err, coupon.ErrUnavailable)
	require.Equal(t, coupon.CodeUnavailable, coupon.ErrorCode(err))
	_, _, err = e.Lock(ctx, "l", time.Second)
	require.ErrorIs(t, err, coupon.ErrUnavailable)
}

// open opens an engine whose keys start with a prefix of this run's own, and
// deletes them when the test ends.
func open(tb testing.TB, cfg redis.Config) *redis.Engine {
	tb.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "cptest-" + coupon.NewID(time.Now())
	}
	e, err := redis.Open(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		if err := deleteKeys(cfg, cfg.Prefix+":*"); err != nil {
			tb.Errorf("delete test keys: %v", err)
		}
		_ = e.Close()
	})
	return e
}

// deleteKeys deletes the keys matching pattern on every master.
func deleteKeys(cfg redis.Config, pattern string) error {
	ctx := context.Background()
	del := func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cfg.Cluster {
		o, err := goredis.ParseClusterURL(cfg.URL)
		if err != nil {
			return err
		}
		c := goredis.NewClusterClient(o)
		defer c.Close()
		return c.ForEachMaster(ctx, del)
	}
	o, err := goredis.ParseURL(cfg.URL)
	if err != nil {
		return err
	}
	c := goredis.NewClient(o)
	defer c.Close()
	return del(ctx, c)
}

func claim(t *testing.T, e engine.Engine, batchID, user, key, claimID string) engine.ClaimResult {
	t.Helper()
	r, err := e.Claim(t.Context(), engine.ClaimParams{BatchID: batchID, UserID: user, IdempotencyKey: key, ClaimID: claimID, At: time.Now()})
	require.NoError(t, err)
	require.False(t, r.Replayed)
	return r
}

// Sizes of the benchmark, as in the memory engine's: one hot batch, many
// users, a pool refilled in chunks, claims settled in groups.
const (
	benchUsers  = 10_000
	benchChunk  = 10_000
	settleEvery = 64
)

// BenchmarkClaim measures claims of one hot batch on the shared Redis from
// many parallel callers (the claim script's round trip bounds each one),
// each settling its claims in groups as the group commit does. It reports
// claims per second, and the server's time in scripts per claim (from INFO
// commandstats: the figure that other work on the machine moves least).
//
// "protected" claims carry the checks of the app's BenchmarkHTTPClaimProtection
// as the engine sees them: a nonce, four rate limits (batch, user, device,
// IP; never reached) and a risk gate over the device's and the IP's windows
// (never firing), each claim from a user, device and IP of its own.
func BenchmarkClaim(b *testing.B) {
	url := redistest.URL(b)
	for _, name := range []string{"no-key", "with-key", "protected"} {
		withKey, protected := name == "with-key", name == "protected"
		b.Run(name, func(b *testing.B) {
			o, err := goredis.ParseURL(url)
			require.NoError(b, err)
			o.PoolSize = 128
			client := goredis.NewClient(o)
			b.Cleanup(func() { _ = client.Close() })
			prefix := "cpbench-" + coupon.NewID(time.Now())
			b.Cleanup(func() { _ = deleteKeys(redis.Config{URL: url}, prefix+":*") })
			e := redis.New(client, redis.Options{Prefix: prefix})
			ctx := context.Background()
			id := "hot"
			var codeSeq atomic.Int64
			chunk := func() []engine.PoolCode {
				first := codeSeq.Add(benchChunk) - benchChunk
				out := make([]engine.PoolCode, benchChunk)
				for i := range out {
					out[i] = engine.PoolCode{Code: "B" + strconv.FormatInt(first+int64(i), 10), Amount: 100}
				}
				return out
			}
			require.NoError(b, e.Rebuild(ctx, engine.Snapshot{
				Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: math.MaxInt32},
				Pool:  chunk(),
			}))
			var n atomic.Uint64
			b.SetParallelism(32)
			scripts := scriptMicros(b, client)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				settle := make([]string, 0, settleEvery)
				for pb.Next() {
					i := n.Add(1)
					p := engine.ClaimParams{BatchID: id, UserID: "u" + strconv.FormatUint(i%benchUsers, 10), ClaimID: "c", At: time.Now()}
					if withKey {
						p.IdempotencyKey = "k" + strconv.FormatUint(i, 10)
					}
					if protected {
						p.UserID = "u" + strconv.FormatUint(i, 10)
						p.Protect = benchProtection(p.UserID, i, p.At)
					}
					for {
						r, err := e.Claim(ctx, p)
						if errors.Is(err, engine.ErrSoldOut) {
							if err := refill(ctx, e, id, chunk()); err != nil {
								b.Error(err)
								return
							}
							if protected { // the refused attempt spent its nonce
								p.Protect.Nonce += "r"
							}
							continue
						}
						if err != nil || r.Replayed {
							b.Errorf("claim: %v (replayed %t)", err, r.Replayed)
							return
						}
						settle = append(settle, r.Code)
						break
					}
					if len(settle) == settleEvery {
						if err := e.Settle(ctx, id, settle); err != nil {
							b.Error(err)
							return
						}
						settle = settle[:0]
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
			b.ReportMetric((scriptMicros(b, client)-scripts)/float64(b.N), "script-µs/op")
		})
	}
}

// benchProtection is the checks of claim i of BenchmarkClaim's protected
// claims.
func benchProtection(user string, i uint64, at time.Time) *engine.ClaimProtection {
	s := strconv.FormatUint(i, 10)
	device, ip := "d"+s, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	return &engine.ClaimProtection{
		Nonce: "n" + s, NonceTTL: 5 * time.Minute,
		Limits: []engine.RateLimit{
			{Key: "batch", What: "batch", Rate: 1_000_000, Period: time.Second, Burst: 1_000_000},
			{Key: "user:" + user, What: "user", Rate: 5, Period: time.Minute, Burst: 5},
			{Key: "device:" + device, What: "device", Rate: 10, Period: time.Minute, Burst: 10},
			{Key: "ip:" + ip, What: "ip", Rate: 100, Period: time.Minute, Burst: 100},
		},
		Risk: &engine.RiskGate{
			Observation: engine.RiskObservation{At: at, EventID: coupon.NewID(at), UserID: user, DeviceID: device, IP: ip,
				Horizon: 7 * 24 * time.Hour, Windows: []engine.RiskWindow{
					{Counter: engine.DeviceUsers, Window: time.Hour},
					{Counter: engine.IPUsers, Window: 10 * time.Minute},
					{Counter: engine.DeviceClaims, Window: time.Minute},
				}},
			Thresholds: []engine.RiskThreshold{{Window: 0, Above: 5, Deny: true}, {Window: 1, Above: 50}, {Window: 2, Above: 20, Deny: true}},
		},
	}
}

// scriptMicros is the server's total time in EVALSHA so far, in µs.
func scriptMicros(tb testing.TB, client *goredis.Client) float64 {
	info, err := client.Info(context.Background(), "commandstats").Result()
	require.NoError(tb, err)
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
			for f := range strings.SplitSeq(rest, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					us, err := strconv.ParseFloat(v, 64)
					require.NoError(tb, err)
					return us
				}
			}
		}
	}
	return 0
}

// TestClaimScriptRedisBenchmark is the yardstick of the claim path: it
// loads a batch, prints the redis-benchmark command line that runs the
// claim script alone against it (EVALSHA of the loaded script, a random
// user of 10,000 per call, no idempotency key), runs it and prints the
// rate. Run it with
//
//	COUPOND_REDIS_BENCHMARK=1 go test -run ClaimScriptRedisBenchmark -v ./engine/redis
func TestClaimScriptRedisBenchmark(t *testing.T) {
	if os.Getenv("COUPOND_REDIS_BENCHMARK") == "" {
		t.Skip("set COUPOND_REDIS_BENCHMARK=1 to measure the claim script alone with redis-benchmark")
	}
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skipf("redis-benchmark is not installed: %v", err)
	}
	url := redistest.URL(t)
	o, err := goredis.ParseURL(url)
	require.NoError(t, err)
	client := goredis.NewClient(o)
	t.Cleanup(func() { _ = client.Close() })
	ctx := t.Context()

	const requests = 200_000
	prefix := "cpbench-" + coupon.NewID(time.Now())
	t.Cleanup(func() { _ = deleteKeys(redis.Config{URL: url}, prefix+":*") })
	e := redis.New(client, redis.Options{Prefix: prefix})
	id := "hot"
	// Enough codes for every run below.
	pool := make([]engine.PoolCode, 3*requests)
	for i := range pool {
		pool[i] = engine.PoolCode{Code: "B" + strconv.Itoa(i), Amount: 100}
	}
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{
		Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: math.MaxInt32},
		Pool:  pool,
	}))
	sha, err := redis.ClaimScript.Load(ctx, client).Result()
	require.NoError(t, err)

	host, port, _ := strings.Cut(o.Addr, ":")
	keys := redis.BatchKeys(e, id)
	for _, run := range []struct{ clients, pipeline int }{{50, 1}, {50, 16}} {
		args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(o.DB),
			"-n", strconv.Itoa(requests), "-c", strconv.Itoa(run.clients), "-P", strconv.Itoa(run.pipeline),
			"-r", strconv.Itoa(benchUsers), "-q",
			"EVALSHA", sha, strconv.Itoa(len(keys))}
		args = append(args, keys...)
		args = append(args, "u:__rand_int__", "", "c", strconv.FormatInt(time.Now().UnixMicro(), 10))
		if o.Password != "" {
			args = append([]string{"-a", o.Password}, args...)
		}
		t.Logf("%s", shellLine(append([]string{"redis-benchmark"}, args...)))
		out, err := exec.CommandContext(ctx, bench, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		rate := regexp.MustCompile(`([0-9.]+) requests per second`).FindSubmatch(out)
		require.NotNil(t, rate, "%s", out)
		t.Logf("claim script alone, %d clients, pipeline %d: %s claims/s", run.clients, run.pipeline, rate[1])
	}
	s, err := e.Stats(ctx, id)
	require.NoError(t, err)
	require.Equal(t, int64(2*requests), s.Claimed, "every call claimed")
}

// shellLine quotes args for a POSIX shell.
func shellLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " '\"{}$\\*?[]&;|<>()!#`~") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// refill loads more codes after the batch's LoadedSeq; a loader that lost
// the race to another leaves it at that.
func refill(ctx context.Context, e engine.Engine, batchID string, codes []engine.PoolCode) error {
	st, err := e.Stats(ctx, batchID)
	if err != nil {
		return err
	}
	err = e.AddCodes(ctx, batchID, st.LoadedSeq, st.LoadedSeq+int64(len(codes)), codes)
	if errors.Is(err, engine.ErrStaleLoad) {
		return nil
	}
	return err
}

// TestRiskSetsStayNearTheCap: the risk windows' sorted sets are trimmed to
// the cap (lua/risk_set.lua, through both lua/protect_claim.lua and
// lua/protect_risk.lua): after three times the cap of attempts from one
// device, the set holds about the cap of users and of attempts, and the
// counts stop at it; entries past the horizon are dropped.
func TestRiskSetsStayNearTheCap(t *testing.T) {
	ctx := t.Context()
	cfg := redis.Config{URL: redistest.URL(t)}
	e := open(t, cfg)
	prefix := strings.TrimSuffix(redis.KeyPrefix(e), ":")
	id := "b-" + coupon.NewID(time.Now())
	pool := make([]engine.PoolCode, 3*engine.MaxRiskEvents)
	for i := range pool {
		pool[i] = engine.PoolCode{Code: "RISKCAP" + strconv.Itoa(i), Amount: 1}
	}
	require.NoError(t, e.Rebuild(ctx, engine.Snapshot{Batch: engine.BatchState{BatchID: id, Active: true, PerUserLimit: 1}, Pool: pool}))
	at := time.Now().Add(time.Hour)
	windows := []engine.RiskWindow{{Counter: engine.DeviceUsers, Window: time.Hour}, {Counter: engine.DeviceClaims, Window: time.Hour}}
	var last []int64
	for i := range 3 * engine.MaxRiskEvents {
		at = at.Add(time.Millisecond)
		user := "u" + strconv.Itoa(i)
		o := engine.RiskObservation{At: at, EventID: coupon.NewID(at), UserID: user, DeviceID: "dev-cap", Horizon: time.Hour, Windows: windows}
		if i%2 == 0 {
			var err error
			last, err = e.ObserveRisk(ctx, o)
			require.NoError(t, err)
			continue
		}
		_, err := e.Claim(ctx, engine.ClaimParams{BatchID: id, UserID: user, ClaimID: o.EventID, At: at,
			Protect: &engine.ClaimProtection{Risk: &engine.RiskGate{Observation: o}}})
		require.NoError(t, err)
	}
	require.Equal(t, []int64{engine.MaxRiskEvents, engine.MaxRiskEvents}, last, "counts stop at the cap")
	opts, err := goredis.ParseURL(cfg.URL)
	require.NoError(t, err)
	client := goredis.NewClient(opts)
	defer client.Close()
	// One attempt in 16 trims the set, so it may hold a few entries over the
	// cap: 200 attempts in a row without a trim happen once in 400,000 runs.
	key := prefix + ":risk:{d:dev-cap}"
	users, err := client.ZCount(ctx, key, "0", "+inf").Result()
	require.NoError(t, err)
	claims, err := client.ZCount(ctx, key, "-inf", "(0").Result()
	require.NoError(t, err)
	for what, n := range map[string]int64{"users": users, "attempts": claims} {
		require.GreaterOrEqual(t, n, int64(engine.MaxRiskEvents), "%s: the newest are kept", what)
		require.LessOrEqual(t, n, int64(engine.MaxRiskEvents+200), "%s: the set is trimmed", what)
	}

	// Two hours later, with a horizon of one: the first trim drops every
	// entry past the horizon, and the set holds the new attempts alone.
	later := at.Add(2 * time.Hour)
	for i := range 200 {
		later = later.Add(time.Millisecond)
		_, err := e.ObserveRisk(ctx, engine.RiskObservation{At: later, EventID: coupon.NewID(later), UserID: "later" + strconv.Itoa(i),
			DeviceID: "dev-cap", Horizon: time.Hour, Windows: windows})
		require.NoError(t, err)
	}
	n, err := client.ZCard(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, int64(2*200), n, "200 users and 200 attempts, the older ones trimmed")
}
