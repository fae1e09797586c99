package enginetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// Sizes of the stress tests: more claimants than codes, more claims wanted
// than the pool holds, so that the pool and the limits both run out.
const (
	stressWorkers  = 64
	stressAttempts = 100 // per worker and phase
	stressUsers    = 300
	stressPool     = 500
	stressLimit    = 2
)

// held is one successful claim as its claimant saw it.
type held struct {
	user string
	key  string
	res  engine.ClaimResult
}

// hammer runs stressWorkers goroutines of stressAttempts claims each, all
// released at once. Attempt i of worker w claims for user (w·attempts+i) mod
// stressUsers, so every user is tried at least stressWorkers·stressAttempts /
// stressUsers times. If undoEvery > 0, each worker undoes every undoEvery-th
// of its successful claims at once. It returns the claims still held and the
// numbers of successes and undos; failures are returned as errors, not
// reported, since only the test goroutine may stop the test.
func hammer(ctx context.Context, e engine.Engine, batchID, phase string, undoEvery int) (kept []held, successes, undos int, err error) {
	type outcome struct {
		kept       []held
		successes  int
		undos      int
		unexpected error
	}
	out := make([]outcome, stressWorkers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range stressWorkers {
		wg.Go(func() {
			o := &out[w]
			<-start
			for i := range stressAttempts {
				n := w*stressAttempts + i
				user := "u" + strconv.Itoa(n%stressUsers)
				key := ""
				if n%2 == 0 {
					key = phase + "-" + strconv.Itoa(n)
				}
				r, err := e.Claim(ctx, engine.ClaimParams{BatchID: batchID, UserID: user, IdempotencyKey: key, ClaimID: "c" + strconv.Itoa(n)})
				switch {
				case errors.Is(err, engine.ErrSoldOut), errors.Is(err, engine.ErrLimitReached):
					continue
				case err != nil:
					o.unexpected = fmt.Errorf("claim %d: %w", n, err)
					return
				case r.Replayed:
					o.unexpected = fmt.Errorf("claim %d with a fresh key %q was replayed", n, key)
					return
				}
				o.successes++
				if undoEvery > 0 && o.successes%undoEvery == 0 {
					if err := e.Undo(ctx, engine.UndoParams{
						BatchID: batchID, UserID: user, IdempotencyKey: key, Code: r.Code, Amount: r.Amount, Seq: r.Seq,
					}); err != nil {
						o.unexpected = fmt.Errorf("undo of claim %d: %w", n, err)
						return
					}
					o.undos++
					continue
				}
				o.kept = append(o.kept, held{user: user, key: key, res: r})
			}
		})
	}
	close(start)
	wg.Wait()
	var errs []error
	for _, o := range out {
		kept = append(kept, o.kept...)
		successes += o.successes
		undos += o.undos
		errs = append(errs, o.unexpected)
	}
	return kept, successes, undos, errors.Join(errs...)
}

// checkHeld asserts the invariants over the claims held: each code of the
// pool at most once and with its amount, and per user at most limit claims
// with distinct sequence numbers in 1..limit.
func checkHeld(t *testing.T, pool []engine.PoolCode, kept []held, limit int) {
	t.Helper()
	amounts := make(map[string]int64, len(pool))
	for _, c := range pool {
		amounts[c.Code] = c.Amount
	}
	codeHolder := make(map[string]string, len(kept))
	seqs := make(map[string]map[int]bool)
	for _, h := range kept {
		amount, ok := amounts[h.res.Code]
		require.True(t, ok, "code %q is not from the pool", h.res.Code)
		require.Equal(t, amount, h.res.Amount, "amount of code %q", h.res.Code)
		prev, dup := codeHolder[h.res.Code]
		require.False(t, dup, "code %q held by %s and %s", h.res.Code, prev, h.user)
		codeHolder[h.res.Code] = h.user

		require.True(t, h.res.Seq >= 1 && h.res.Seq <= limit, "user %s got sequence number %d outside 1..%d", h.user, h.res.Seq, limit)
		if seqs[h.user] == nil {
			seqs[h.user] = make(map[int]bool)
		}
		require.False(t, seqs[h.user][h.res.Seq], "user %s holds sequence number %d twice", h.user, h.res.Seq)
		seqs[h.user][h.res.Seq] = true
		require.LessOrEqual(t, len(seqs[h.user]), limit, "user %s holds more than the limit", h.user)
	}
}

// testStressClaims: far more claims than codes from many goroutines must give
// exactly the pool's size of claims, no code twice, no user above the limit.
func testStressClaims(t *testing.T, e engine.Engine) {
	pool := codes("S", stressPool)
	id := load(t, e, stressLimit, pool)

	kept, successes, _, err := hammer(t.Context(), e, id, "k", 0)
	require.NoError(t, err)
	// Every user was tried more often than the limit, and 300 users × 2 exceed
	// 500 codes: the pool must have run out, so exactly 500 claims succeeded.
	require.Equal(t, stressPool, successes)
	require.Len(t, kept, stressPool)
	checkHeld(t, pool, kept, stressLimit)
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: stressPool}, stats(t, e, id))
}

// testStressClaimsWithUndo: claims and undos of some of them from many
// goroutines; undone codes go back and are claimed again, undone sequence
// numbers are reused, and nothing is held twice.
func testStressClaimsWithUndo(t *testing.T, e engine.Engine) {
	pool := codes("U", stressPool)
	id := load(t, e, stressLimit, pool)

	// Phase 1 undoes every third success while other claims run.
	kept1, successes1, undos, err := hammer(t.Context(), e, id, "k1", 3)
	require.NoError(t, err)
	require.Positive(t, undos)
	require.Equal(t, successes1-undos, len(kept1))
	checkHeld(t, pool, kept1, stressLimit)
	s := stats(t, e, id)
	require.Equal(t, engine.BatchStats{PoolDepth: int64(stressPool - len(kept1)), Claimed: int64(len(kept1))}, s)

	// Phase 2 only claims: as in testStressClaims it must drain the pool.
	kept2, successes2, _, err := hammer(t.Context(), e, id, "k2", 0)
	require.NoError(t, err)
	kept := append(kept1, kept2...)
	successes := successes1 + successes2
	require.Equal(t, successes-undos, len(kept), "claims held = successes − undos")
	require.Len(t, kept, stressPool)
	// More successes than codes: undone codes were handed out again.
	require.Greater(t, successes, stressPool)
	checkHeld(t, pool, kept, stressLimit)
	require.Equal(t, engine.BatchStats{PoolDepth: 0, Claimed: stressPool}, stats(t, e, id))
}

// testStressReplays: the same user and key from 32 goroutines at once make
// exactly one claim, and every caller sees that claim.
func testStressReplays(t *testing.T, e engine.Engine) {
	const (
		callers = 32
		rounds  = 20
	)
	id := load(t, e, rounds, codes("R", 2*rounds))
	firstSeqs := make(map[int]bool)
	for round := range rounds {
		key := "k" + strconv.Itoa(round)
		results := make([]engine.ClaimResult, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				<-start
				results[c], errs[c] = e.Claim(t.Context(), engine.ClaimParams{
					BatchID: id, UserID: "u1", IdempotencyKey: key, ClaimID: "c" + strconv.Itoa(round) + "-" + strconv.Itoa(c),
				})
			})
		}
		close(start)
		wg.Wait()

		require.NoError(t, errors.Join(errs...))
		first := -1
		for c, r := range results {
			if !r.Replayed {
				require.Equal(t, -1, first, "round %d: callers %d and %d both claimed", round, first, c)
				first = c
			}
		}
		require.NotEqual(t, -1, first, "round %d: nobody claimed", round)
		want := results[first]
		require.Equal(t, "c"+strconv.Itoa(round)+"-"+strconv.Itoa(first), want.ClaimID)
		for _, r := range results {
			r.Replayed = false
			require.Equal(t, want, r, "round %d", round)
		}
		require.False(t, firstSeqs[want.Seq], "round %d reused sequence number %d", round, want.Seq)
		firstSeqs[want.Seq] = true
	}
	require.Equal(t, engine.BatchStats{PoolDepth: rounds, Claimed: rounds}, stats(t, e, id))
}
