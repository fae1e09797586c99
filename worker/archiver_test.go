package worker_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/postgres"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/worker"
)

// archiveStore is the service's archive calls straight on a store (the
// service adds only the cache bump, which these tests do not look at).
type archiveStore struct{ s store.Store }

func (a archiveStore) ArchiveClaims(ctx context.Context, before time.Time, limit int) (store.ArchiveResult, error) {
	return a.s.(store.ArchiveStore).ArchiveClaims(ctx, store.ArchiveClaims{Before: before, Limit: limit})
}

func (a archiveStore) PruneArchive(ctx context.Context, before time.Time, limit int) (int, error) {
	return a.s.(store.ArchiveStore).PruneArchive(ctx, before, limit)
}

func (a archiveStore) MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error) {
	if m, ok := a.s.(store.PartitionMaintainer); ok {
		return m.MaintainPartitions(ctx, p)
	}
	return store.PartitionReport{}, store.ErrNoArchive
}

// settledClaims stores one used claim per time in ats, of one batch, by
// user "u", and returns them.
func settledClaims(t *testing.T, st store.Store, ats ...time.Time) []*coupon.Claim {
	t.Helper()
	ctx := t.Context()
	now := ats[0]
	b := &coupon.Batch{ID: coupon.NewID(now), Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now, BatchSpec: coupon.BatchSpec{
		Name: "a", Type: coupon.TypeCash, TotalQuantity: 100, PerUserLimit: 100,
		Validity: coupon.Validity{Days: 1}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 10},
	}}
	require.NoError(t, st.CreateBatch(ctx, b))
	codes := make([]coupon.Code, len(ats))
	for i := range codes {
		codes[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{}), Amount: 10}
	}
	_, err := st.AddCodes(ctx, b.ID, codes)
	require.NoError(t, err)
	var out []*coupon.Claim
	var writes []store.ClaimWrite
	for i, at := range ats {
		c := coupon.NewClaim(b, coupon.NewID(at), coupon.Claimant{UserID: "u"}, codes[i].Code, 10, i+1, "", at)
		c.Status = coupon.ClaimUsed
		out = append(out, c)
		writes = append(writes, store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: c.ID, Payload: json.RawMessage(`{}`)}})
	}
	for _, err := range st.InsertClaims(ctx, writes) {
		require.NoError(t, err)
	}
	return out
}

func historyIDs(t *testing.T, st store.Store) []string {
	t.Helper()
	cs, err := st.(store.ArchiveStore).ListUserClaimHistory(t.Context(), store.UserClaimFilter{UserID: "u", Limit: 1000})
	require.NoError(t, err)
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

// The archiver moves what is old enough in chunks, reports it, and the
// retention deletes what the policy says and nothing else (SQLite).
func TestArchiverMovesAndPrunes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	now := time.Date(2031, 6, 15, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cs := settledClaims(t, st, now.Add(-400*day), now.Add(-200*day), now.Add(-100*day), now.Add(-40*day), now.Add(-10*day), now.Add(-time.Hour))
	a := worker.NewArchiver(worker.ArchiverConfig{
		Service: archiveStore{st}, After: 30 * day, Retention: 365 * day, Batch: 2, Pause: time.Millisecond,
		Now: func() time.Time { return now },
	})
	res, err := a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, res.Moved, "the claims older than 30 days")
	require.True(t, res.CaughtUp)
	require.Equal(t, 1, res.Pruned, "the claim older than a year")
	require.EqualValues(t, 4, a.Moved())
	require.Zero(t, a.Lag())

	hot, err := st.ListUserClaims(ctx, store.UserClaimFilter{UserID: "u", Now: now})
	require.NoError(t, err)
	require.Len(t, hot, 2)
	require.Equal(t, []string{cs[1].ID, cs[2].ID, cs[3].ID, cs[4].ID, cs[5].ID}, historyIDs(t, st))

	res, err = a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, worker.ArchivePass{CaughtUp: true}, res, "a second pass finds nothing to do")
}

// A pass that stops before the backlog is worked off reports lag.
func TestArchiverLag(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2031, 6, 15, 12, 0, 0, 0, time.UTC)
	old := now.Add(-100 * 24 * time.Hour)
	settledClaims(t, st, old, old.Add(time.Second), old.Add(2*time.Second), old.Add(3*time.Second), old.Add(4*time.Second))
	clock := now
	a := worker.NewArchiver(worker.ArchiverConfig{
		Service: archiveStore{st}, After: 30 * 24 * time.Hour, Batch: 1, Chunks: 2, Pause: time.Millisecond,
		Now: func() time.Time { return clock },
	})
	res, err := a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, res.Moved)
	require.False(t, res.CaughtUp)
	clock = clock.Add(time.Minute)
	require.Equal(t, time.Minute, a.Lag())
	for range 3 {
		_, err = a.Pass(ctx)
		require.NoError(t, err)
	}
	require.Zero(t, a.Lag())
	require.EqualValues(t, 5, a.Moved())
}

// Partition maintenance on PostgreSQL with an injected clock: the months
// ahead exist before any claim needs them, and the retention drops whole
// partitions past it and deletes from the default partition only what is
// past it.
func TestArchiverPartitions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := backendtest.PostgresSchema(t)
	st, err := postgres.Open(ctx, postgres.Config{URL: u})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	day := 24 * time.Hour
	clock := time.Date(2031, 3, 15, 12, 0, 0, 0, time.UTC)
	a := worker.NewArchiver(worker.ArchiverConfig{
		Service: archiveStore{st}, After: 30 * day, Retention: 90 * day, Ahead: 3, Pause: time.Millisecond,
		Now: func() time.Time { return clock },
	})
	names := func() []string {
		ps, err := st.ArchivePartitions(ctx)
		require.NoError(t, err)
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}

	// A claim from long before the archive existed goes to the default
	// partition; its month gets no partition of its own.
	cs := settledClaims(t, st, time.Date(2030, 6, 10, 0, 0, 0, 0, time.UTC))
	res, err := a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Moved)
	require.Equal(t, 1, res.Pruned, "2030-06 is past the 90 days")
	require.Equal(t, []string{"claims_archive_y2031m01", "claims_archive_y2031m02", "claims_archive_y2031m03",
		"claims_archive_y2031m04", "claims_archive_y2031m05", "claims_archive_y2031m06"}, names(),
		"from the month before the archive age through three months ahead")
	require.Empty(t, historyIDs(t, st))
	_ = cs

	// Claims of January and February are archived into their partitions.
	jan := settledClaims(t, st, time.Date(2031, 1, 20, 0, 0, 0, 0, time.UTC))
	feb := settledClaims(t, st, time.Date(2031, 2, 5, 0, 0, 0, 0, time.UTC))
	res, err = a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, res.Moved)
	var inJan, inFeb int
	conn, err := pgx.Connect(ctx, u)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	require.NoError(t, conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM claims_archive_y2031m01), (SELECT count(*) FROM claims_archive_y2031m02)`).Scan(&inJan, &inFeb))
	require.Equal(t, 1, inJan)
	require.Equal(t, 1, inFeb)

	// Time passes: on 2031-05-10 the retention (90 days: 2031-02-09) drops
	// January, which ended before it, and keeps February, which did not.
	clock = time.Date(2031, 5, 10, 0, 0, 0, 0, time.UTC)
	res, err = a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"claims_archive_y2031m01"}, only("claims_archive_", res.Partitions.Dropped))
	require.Equal(t, []string{"claims_archive_y2031m07", "claims_archive_y2031m08"}, only("claims_archive_", res.Partitions.Created))
	require.Equal(t, []string{"redemptions_archive_y2031m01"}, only("redemptions_archive_", res.Partitions.Dropped),
		"the redemption archive follows the claims archive's months")
	have := names()
	require.False(t, slices.Contains(have, "claims_archive_y2031m01"))
	require.True(t, slices.Contains(have, "claims_archive_y2031m08"), "three months ahead of May")
	require.Equal(t, []string{feb[0].ID}, historyIDs(t, st))
	_ = jan
}

// only keeps the names that start with prefix.
func only(prefix string, names []string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
