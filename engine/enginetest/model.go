package enginetest

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
)

// model is the engine contract written as plainly as possible, one batch,
// no concurrency. testModel runs random operations against it and an engine
// side by side and requires the same answers.
type model struct {
	batchID string
	active  bool
	limit   int
	pool    []engine.PoolCode // next code first
	users   map[string]map[int]bool
	keys    map[[2]string]engine.KeyEntry
	claimed int64
	loaded  int64                          // LoadedSeq
	pending map[string]engine.PendingClaim // by code
}

func (m *model) claim(p engine.ClaimParams) (engine.ClaimResult, error) {
	if !m.active {
		return engine.ClaimResult{}, engine.ErrNotClaimable
	}
	if p.IdempotencyKey != "" {
		if k, ok := m.keys[[2]string{p.UserID, p.IdempotencyKey}]; ok {
			return engine.ClaimResult{Code: k.Code, Amount: k.Amount, Seq: k.Seq, ClaimID: k.ClaimID, Replayed: true}, nil
		}
	}
	seqs := m.users[p.UserID]
	if len(seqs) >= m.limit {
		return engine.ClaimResult{}, engine.ErrLimitReached
	}
	if len(m.pool) == 0 {
		return engine.ClaimResult{}, engine.ErrSoldOut
	}
	c := m.pool[0]
	m.pool = m.pool[1:]
	seq := 1
	for seqs[seq] {
		seq++
	}
	if seqs == nil {
		seqs = make(map[int]bool)
		m.users[p.UserID] = seqs
	}
	seqs[seq] = true
	if p.IdempotencyKey != "" {
		m.keys[[2]string{p.UserID, p.IdempotencyKey}] = engine.KeyEntry{
			UserID: p.UserID, Key: p.IdempotencyKey, ClaimID: p.ClaimID, Code: c.Code, Amount: c.Amount, Seq: seq,
		}
	}
	m.claimed++
	m.pending[c.Code] = engine.PendingClaim{
		BatchID: p.BatchID, ClaimID: p.ClaimID, UserID: p.UserID, IdempotencyKey: p.IdempotencyKey,
		Code: c.Code, Amount: c.Amount, Seq: seq, At: p.At,
	}
	return engine.ClaimResult{Code: c.Code, Amount: c.Amount, Seq: seq, ClaimID: p.ClaimID}, nil
}

func (m *model) undo(p engine.UndoParams) {
	if c, ok := m.pending[p.Code]; ok && c.UserID == p.UserID {
		delete(m.pending, p.Code)
	}
	if !p.KeepCode {
		m.pool = append([]engine.PoolCode{{Code: p.Code, Amount: p.Amount}}, m.pool...)
	}
	if !p.KeepSeq {
		delete(m.users[p.UserID], p.Seq)
	}
	delete(m.keys, [2]string{p.UserID, p.IdempotencyKey})
	if m.claimed > 0 {
		m.claimed--
	}
}

func (m *model) settle(codes []string) {
	for _, c := range codes {
		delete(m.pending, c)
	}
}

func (m *model) reclaim(p engine.PendingClaim) bool {
	c, ok := m.pending[p.Code]
	if !ok || c.ClaimID != p.ClaimID || c.UserID != p.UserID || c.IdempotencyKey != p.IdempotencyKey ||
		c.Amount != p.Amount || c.Seq != p.Seq {
		return false
	}
	m.undo(engine.UndoParams{
		BatchID: c.BatchID, UserID: c.UserID, IdempotencyKey: c.IdempotencyKey, Code: c.Code, Amount: c.Amount, Seq: c.Seq,
	})
	return true
}

// pendingList is Pending: the claims before `before`, oldest first, at
// most limit of them. The model's claims have distinct times.
func (m *model) pendingList(before time.Time, limit int) []engine.PendingClaim {
	var out []engine.PendingClaim
	for _, c := range m.pending {
		if c.At.Before(before) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(x, y engine.PendingClaim) int { return x.At.Compare(y.At) })
	return out[:min(limit, len(out))]
}

// snapshot returns the model's state for Rebuild and, as Rebuild does,
// resets Claimed to the number of sequence numbers held and drops the
// pending claims.
func (m *model) snapshot() engine.Snapshot {
	s := engine.Snapshot{
		Batch:     engine.BatchState{BatchID: m.batchID, Active: m.active, PerUserLimit: m.limit},
		Pool:      slices.Clone(m.pool),
		LoadedSeq: m.loaded,
	}
	clear(m.pending)
	m.claimed = 0
	for user, seqs := range m.users {
		u := engine.UserSeqs{UserID: user}
		for seq := range seqs {
			u.Seqs = append(u.Seqs, seq)
		}
		s.Users = append(s.Users, u)
		m.claimed += int64(len(seqs))
	}
	for _, k := range m.keys {
		s.Keys = append(s.Keys, k)
	}
	return s
}

// testModel checks random sequences of every operation against the model:
// claims of a few users with a few keys, undos with and without KeepCode and
// KeepSeq, settles, reclaims of pending and of settled claims, limit changes,
// pauses, AddCodes (some of them stale) and Rebuilds from the model; after each step, the figures
// and a random slice of the pending claims.
func testModel(t *testing.T, e engine.Engine) {
	for seed := range uint64(4) {
		t.Run("seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
			t.Parallel()
			runModel(t, e, seed)
		})
	}
}

func runModel(t *testing.T, e engine.Engine, seed uint64) {
	const steps = 2000
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(seed, 0))
	id := newBatchID()
	m := &model{
		batchID: id, active: true, limit: 2,
		users: map[string]map[int]bool{}, keys: map[[2]string]engine.KeyEntry{}, pending: map[string]engine.PendingClaim{},
	}
	m.pool = codes("M", 5)
	require.NoError(t, e.Rebuild(ctx, m.snapshot()))

	type heldClaim struct {
		user, key string
		res       engine.ClaimResult
	}
	var heldClaims []heldClaim
	nextCode := 0
	for step := range steps {
		switch op := rnd.IntN(100); {
		case op < 50:
			p := engine.ClaimParams{
				BatchID: id, UserID: "u" + strconv.Itoa(rnd.IntN(6)), ClaimID: "c" + strconv.Itoa(step), At: at(step),
			}
			if rnd.IntN(3) > 0 {
				p.IdempotencyKey = "k" + strconv.Itoa(rnd.IntN(8))
			}
			want, wantErr := m.claim(p)
			got, err := e.Claim(ctx, p)
			require.ErrorIs(t, err, wantErr, "step %d: claim %+v", step, p)
			require.Equal(t, want, got, "step %d: claim %+v", step, p)
			if err == nil && !got.Replayed {
				heldClaims = append(heldClaims, heldClaim{user: p.UserID, key: p.IdempotencyKey, res: got})
			}
		case op < 65:
			if len(heldClaims) == 0 {
				continue
			}
			i := rnd.IntN(len(heldClaims))
			h := heldClaims[i]
			heldClaims = slices.Delete(heldClaims, i, i+1)
			p := engine.UndoParams{
				BatchID: id, UserID: h.user, IdempotencyKey: h.key, Code: h.res.Code, Amount: h.res.Amount, Seq: h.res.Seq,
				KeepCode: rnd.IntN(5) == 0, KeepSeq: rnd.IntN(5) == 0,
			}
			m.undo(p)
			require.NoError(t, e.Undo(ctx, p), "step %d: undo %+v", step, p)
		case op < 71:
			// Settle a few held claims, settled or not, and a code never claimed.
			var settle []string
			for range rnd.IntN(3) {
				if len(heldClaims) > 0 {
					settle = append(settle, heldClaims[rnd.IntN(len(heldClaims))].res.Code)
				}
			}
			if rnd.IntN(4) == 0 {
				settle = append(settle, "M-none")
			}
			m.settle(settle)
			require.NoError(t, e.Settle(ctx, id, settle), "step %d: settle %v", step, settle)
		case op < 78:
			// Reclaim a held claim, pending or settled (then nothing happens).
			if len(heldClaims) == 0 {
				continue
			}
			i := rnd.IntN(len(heldClaims))
			h := heldClaims[i]
			p := engine.PendingClaim{
				BatchID: id, ClaimID: h.res.ClaimID, UserID: h.user, IdempotencyKey: h.key,
				Code: h.res.Code, Amount: h.res.Amount, Seq: h.res.Seq, At: at(step),
			}
			want := m.reclaim(p)
			got, err := e.Reclaim(ctx, p)
			require.NoError(t, err, "step %d: reclaim %+v", step, p)
			require.Equal(t, want, got, "step %d: reclaim %+v", step, p)
			if got {
				heldClaims = slices.Delete(heldClaims, i, i+1)
			}
		case op < 84:
			m.active, m.limit = rnd.IntN(8) > 0, rnd.IntN(5)
			require.NoError(t, e.SetBatch(ctx, engine.BatchState{BatchID: id, Active: m.active, PerUserLimit: m.limit}))
		case op < 97:
			more := make([]engine.PoolCode, rnd.IntN(4))
			for i := range more {
				nextCode++
				more[i] = engine.PoolCode{Code: "N-" + strconv.Itoa(nextCode), Amount: int64(nextCode)}
			}
			// Loads continue from LoadedSeq, over a range that may have
			// numbers of claimed codes; now and then one is stale.
			from, through := m.loaded, m.loaded+int64(len(more)+rnd.IntN(2))
			if rnd.IntN(5) == 0 {
				from += int64(1 - 2*rnd.IntN(2))
				through = from + int64(len(more))
				require.ErrorIs(t, e.AddCodes(ctx, id, from, through, more), engine.ErrStaleLoad, "step %d", step)
				break
			}
			m.pool = append(m.pool, more...)
			m.loaded = through
			require.NoError(t, e.AddCodes(ctx, id, from, through, more))
		default:
			require.NoError(t, e.Rebuild(ctx, m.snapshot()), "step %d: rebuild", step)
		}
		require.Equal(t, engine.BatchStats{PoolDepth: int64(len(m.pool)), Claimed: m.claimed, LoadedSeq: m.loaded}, stats(t, e, id), "step %d", step)
		before, limit := at(rnd.IntN(step+2)), 1+rnd.IntN(6)
		got, err := e.Pending(ctx, id, before, limit)
		require.NoError(t, err)
		want := m.pendingList(before, limit)
		if len(want) == 0 {
			require.Empty(t, got, "step %d: pending before %d", step, before.UnixMicro())
		} else {
			require.Equal(t, want, got, "step %d: pending before %d, limit %d", step, before.UnixMicro(), limit)
		}
	}
}
