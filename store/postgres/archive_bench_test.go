package postgres

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/store"
)

// BenchmarkUserClaimsArchived measures the store's side of "my coupons" — the
// hot list a cache miss reads, and the history — for a user with 3 hot
// claims, in a store without archived claims and in one holding
// COUPOND_BENCH_ARCHIVED (default 1,000,000) in monthly partitions: 100,000
// users with 10 each at a million, the user with their share.
func BenchmarkUserClaimsArchived(b *testing.B) {
	archived := 1_000_000
	if v := os.Getenv("COUPOND_BENCH_ARCHIVED"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		archived = n
	}
	var runs []func()
	for _, n := range []int{0, archived} {
		ctx := context.Background()
		s := open(b, Config{})
		now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
		batch := testBatch(now)
		batch.PerUserLimit = 3
		require.NoError(b, s.CreateBatch(ctx, batch))
		codes := addCodes(b, s, batch, 3)
		for i, c := range codes {
			w := claimWrite(batch, c.Code, c.Amount, "bu7", now)
			w.Claim.UserSeq = i + 1
			require.NoError(b, s.InsertClaims(ctx, []store.ClaimWrite{w})[0])
		}
		if n > 0 {
			start := time.Now()
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			_, err := s.MaintainPartitions(ctx, store.MaintainPartitions{Now: t0.AddDate(3, 0, 0), From: t0})
			require.NoError(b, err)
			// Archived rows are written straight into the archive, spread
			// evenly over three years of monthly partitions.
			_, err = s.primary.Exec(ctx, `INSERT INTO claims_archive (id, batch_id, code, user_id, user_seq, user_limit, status, amount,
					valid_from, valid_to, claimed_at, updated_at, batch_name, type, archived_at)
				SELECT 'A' || lpad(i::text, 25, '0'), 'old-batch', 'C' || lpad(i::text, 15, '0'), 'bu' || (i % 100000), i / 100000 + 1, 1000,
					'used', 500, t, t + interval '7 days', t, t, 'old', 'cash', $2
				FROM generate_series(1, $1::int) i, LATERAL (SELECT $3::timestamptz + i * $4::float8 * interval '1 second' AS t) x`,
				n, now, t0, (3*365*24*time.Hour).Seconds()/float64(n+1))
			require.NoError(b, err)
			_, err = s.primary.Exec(ctx, `VACUUM (ANALYZE) claims_archive`)
			require.NoError(b, err)
			b.Logf("loaded %d archived claims in %s", n, time.Since(start).Round(time.Millisecond))
		}
		name := fmt.Sprintf("archived=%d", n)
		runs = append(runs, func() {
			b.Run(name+"/hot", func(b *testing.B) {
				for b.Loop() {
					cs, err := s.ListUserClaims(ctx, store.UserClaimFilter{UserID: "bu7", Limit: 201})
					if err != nil || len(cs) != 3 {
						b.Fatal(len(cs), err)
					}
				}
			})
			b.Run(name+"/history", func(b *testing.B) {
				want := min(3+n/100_000, 20)
				for b.Loop() {
					cs, err := s.ListUserClaimHistory(ctx, store.UserClaimFilter{UserID: "bu7", Limit: 20})
					if err != nil || len(cs) != want {
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

// benchRounds is COUPOND_BENCH_ROUNDS, default 3.
func benchRounds(b *testing.B) int {
	if v := os.Getenv("COUPOND_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		return n
	}
	return 3
}
