package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
)

// archivedRows is how many archived claims BenchmarkUserClaimsArchived
// loads: COUPOND_BENCH_ARCHIVED, default 1,000,000.
func archivedRows(b *testing.B) int {
	if v := os.Getenv("COUPOND_BENCH_ARCHIVED"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		return n
	}
	return 1_000_000
}

// BenchmarkUserClaimsArchived measures the store's side of "my coupons" — the
// hot list a cache miss reads, and the history — for a user with 3 hot
// claims, in a store without archived claims and in one holding millions
// (100,000 users with 10 each at a million; the user has their share).
func BenchmarkUserClaimsArchived(b *testing.B) {
	var runs []func()
	for _, archived := range []int{0, archivedRows(b)} {
		s := open(b, sqlite.Config{})
		ctx := context.Background()
		user := hotUser(b, s)
		if archived > 0 {
			start := time.Now()
			// Archived rows are written straight into the archive: the
			// archiver's path is measured by the storetest, not here.
			_, err := s.Writer().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
				INSERT INTO claims_archive (id, batch_id, code, user_id, user_seq, user_limit, status, amount,
					valid_from, valid_to, claimed_at, updated_at, batch_name, type, archived_at)
				SELECT printf('A%025d', i), 'old-batch', printf('C%015d', i), 'bu' || (i % 100000), i / 100000 + 1, 1000, 'used', 500,
					? + i * 30000000, ? + i * 30000000 + 604800000000, ? + i * 30000000, ? + i * 30000000, 'old', 'cash', ?
				FROM n`, archived, t0, t0, t0, t0, t0+int64(400*24*time.Hour/time.Microsecond))
			require.NoError(b, err)
			_, err = s.Writer().ExecContext(ctx, `ANALYZE`)
			require.NoError(b, err)
			b.Logf("loaded %d archived claims in %s", archived, time.Since(start).Round(time.Millisecond))
		}
		name := fmt.Sprintf("archived=%d", archived)
		runs = append(runs, func() {
			b.Run(name+"/hot", func(b *testing.B) {
				for b.Loop() {
					cs, err := s.ListUserClaims(ctx, store.UserClaimFilter{UserID: user, Limit: 201})
					if err != nil || len(cs) != 3 {
						b.Fatal(len(cs), err)
					}
				}
			})
			b.Run(name+"/history", func(b *testing.B) {
				want := 3 + archived/100_000
				for b.Loop() {
					cs, err := s.ListUserClaimHistory(ctx, store.UserClaimFilter{UserID: user, Limit: 20})
					if err != nil || len(cs) != min(want, 20) {
						b.Fatal(len(cs), err)
					}
				}
			})
		})
	}
	// Rounds alternate the stores, so that the machine's noise falls on both.
	for range benchRounds(b) {
		for _, run := range runs {
			run()
		}
	}
}

// t0 is 2030-01-01 in microseconds: archived claims are a year older than
// the hot ones.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// hotUser stores 3 hot claims of user bu7 and returns the user.
func hotUser(b *testing.B, s *sqlite.Store) string {
	b.Helper()
	ctx := context.Background()
	batch := benchBatch()
	batch.PerUserLimit = 3
	require.NoError(b, s.CreateBatch(ctx, batch))
	pool := addBenchCodes(b, s, batch, 3)
	var writes []store.ClaimWrite
	for i, p := range pool {
		c := coupon.NewClaim(batch, coupon.NewID(benchNow), coupon.Claimant{UserID: "bu7"}, p.Code, p.Amount, i+1, "", benchNow)
		writes = append(writes, store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: json.RawMessage(`{}`)}})
	}
	for _, err := range s.InsertClaims(ctx, writes) {
		require.NoError(b, err)
	}
	return "bu7"
}

// benchRounds is COUPOND_BENCH_ROUNDS, default 3.
func benchRounds(b *testing.B) int {
	if v := os.Getenv("COUPOND_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		return n
	}
	return 3
}
