package worker_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

func (a archiveStore) ArchiveRedemptions(ctx context.Context, before time.Time, limit int) (int, error) {
	if r, ok := a.s.(store.RedemptionArchiver); ok {
		return r.ArchiveRedemptions(ctx, store.ArchiveRedemptions{Before: before, Limit: limit})
	}
	return 0, store.ErrNoArchive
}

func (a archiveStore) PruneArchive(ctx context.Context, before time.Time, limit int) (int, error) {
	return a.s.(store.ArchiveStore).PruneArchive(ctx, before, limit)
}

func (a archiveStore) PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error) {
	return a.s.(store.OutboxPruner).PruneOutbox(ctx, before, limit)
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

// Partition maintenance of the outbox and of the record of counted events
// on PostgreSQL, with an injected clock: days exist before their rows come;
// the retention drops a day only once nothing in it is still needed — an
// unpublished event keeps its day, and so does an event counted late,
// within the dedupe window; and a redelivered event counts once though
// its redelivery comes on the next day.
func TestArchiverPartitionsOutboxAndCountedEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := backendtest.PostgresSchema(t)
	var mu sync.Mutex
	clock := time.Date(2031, 3, 15, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	set := func(at time.Time) { mu.Lock(); defer mu.Unlock(); clock = at }
	st, err := postgres.Open(ctx, postgres.Config{URL: u, Now: now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	conn, err := pgx.Connect(ctx, u)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))

	day := 24 * time.Hour
	a := worker.NewArchiver(worker.ArchiverConfig{
		Service: archiveStore{st}, OutboxRetention: 2 * day, EventsRetention: day, DaysAhead: 3, Pause: time.Millisecond, Now: now,
	})
	pass := func() worker.ArchivePass {
		t.Helper()
		res, err := a.Pass(ctx)
		require.NoError(t, err)
		return res
	}
	names := func(table string) []string {
		t.Helper()
		ps, err := st.Partitions(ctx, table)
		require.NoError(t, err)
		var out []string
		for _, p := range ps {
			if !p.From.IsZero() {
				out = append(out, p.Name)
			}
		}
		return out
	}
	partitionOf := func(q string, args ...any) string {
		t.Helper()
		var name string
		require.NoError(t, conn.QueryRow(ctx, q, args...).Scan(&name))
		return name
	}

	res := pass()
	require.Equal(t, []string{"outbox_y2031m03d15", "outbox_y2031m03d16", "outbox_y2031m03d17", "outbox_y2031m03d18"},
		only("outbox_y", res.Partitions.Created), "today and three days ahead")
	require.Equal(t, []string{"stats_events_y2031m03d15", "stats_events_y2031m03d16", "stats_events_y2031m03d17", "stats_events_y2031m03d18"},
		names("stats_events"))

	// Events of the 15th and the 16th land in their days' partitions.
	cs := settledClaims(t, st, time.Date(2031, 3, 15, 10, 0, 0, 0, time.UTC), time.Date(2031, 3, 15, 11, 0, 0, 0, time.UTC),
		time.Date(2031, 3, 16, 9, 0, 0, 0, time.UTC))
	pending, err := st.PendingEvents(ctx, 100)
	require.NoError(t, err)
	event := map[string]int64{}
	for _, e := range pending {
		event[e.AggregateID] = e.ID
	}
	require.Equal(t, "outbox_y2031m03d15", partitionOf(`SELECT tableoid::regclass::text FROM outbox WHERE id = $1`, event[cs[0].ID]))
	require.Equal(t, "outbox_y2031m03d16", partitionOf(`SELECT tableoid::regclass::text FROM outbox WHERE id = $1`, event[cs[2].ID]))
	// The 15th keeps one unpublished event.
	require.NoError(t, st.MarkPublished(ctx, []int64{event[cs[0].ID], event[cs[2].ID]}, clock))

	claimed := func(id int64, at time.Time) store.StatsEvent {
		return store.StatsEvent{ID: id, At: at, Deltas: []store.StatsDelta{{BatchID: cs[0].BatchID, Hour: at,
			StatsCounts: store.StatsCounts{Claimed: 1}}}}
	}
	apply := func(at time.Time, evs ...store.StatsEvent) {
		t.Helper()
		set(at)
		_, err := st.ApplyStats(ctx, evs)
		require.NoError(t, err)
	}
	counted := func() int64 {
		t.Helper()
		rows, err := st.BatchStats(ctx, cs[0].BatchID)
		require.NoError(t, err)
		var n int64
		for _, r := range rows {
			n += r.Claimed
		}
		return n
	}
	// Event 1 occurs a moment before midnight and is counted at once; its
	// redelivery comes after midnight.
	lastMoment := time.Date(2031, 3, 15, 23, 59, 59, 999999000, time.UTC)
	apply(lastMoment, claimed(1, lastMoment))
	apply(lastMoment.Add(2*time.Second), claimed(1, lastMoment))
	require.EqualValues(t, 1, counted(), "the redelivery on the next day counts nothing")
	require.Equal(t, "stats_events_y2031m03d15", partitionOf(`SELECT tableoid::regclass::text FROM stats_events WHERE id = 1`),
		"recorded in its event's day, whenever it was counted")
	// Event 2 occurs on the 16th and is counted late, on the 17th (the
	// consumer was paused).
	apply(time.Date(2031, 3, 17, 13, 0, 0, 0, time.UTC), claimed(2, time.Date(2031, 3, 16, 8, 0, 0, 0, time.UTC)))
	require.EqualValues(t, 2, counted())

	// The 18th, noon: the outbox keeps 2 days (to the 16th, noon), the
	// record 1 day (to the 17th, noon).
	set(time.Date(2031, 3, 18, 12, 0, 0, 0, time.UTC))
	res = pass()
	require.Equal(t, []string{"outbox_y2031m03d15"}, only("outbox_y", res.Partitions.Kept), "an unpublished event keeps its day")
	require.Empty(t, only("outbox_y", res.Partitions.Dropped), "the 16th ends after the cutoff")
	require.Equal(t, []string{"stats_events_y2031m03d15"}, only("stats_events_y", res.Partitions.Dropped))
	require.Equal(t, []string{"stats_events_y2031m03d16"}, only("stats_events_y", res.Partitions.Kept),
		"an event counted within the window keeps its day")
	require.Equal(t, []string{"outbox_y2031m03d19", "outbox_y2031m03d20", "outbox_y2031m03d21"}, only("outbox_y", res.Partitions.Created))
	require.Equal(t, []string{"outbox_y2031m03d15", "outbox_y2031m03d16", "outbox_y2031m03d17", "outbox_y2031m03d18",
		"outbox_y2031m03d19", "outbox_y2031m03d20", "outbox_y2031m03d21"}, names("outbox"))
	apply(clock, claimed(2, time.Date(2031, 3, 16, 8, 0, 0, 0, time.UTC)))
	require.EqualValues(t, 2, counted(), "the late event's redelivery still counts once")
	pending, err = st.PendingEvents(ctx, 100)
	require.NoError(t, err)
	require.Len(t, pending, 1, "the unpublished event is still there")

	// Once published, its day goes.
	require.NoError(t, st.MarkPublished(ctx, []int64{event[cs[1].ID]}, clock))
	res = pass()
	require.Equal(t, []string{"outbox_y2031m03d15"}, only("outbox_y", res.Partitions.Dropped))

	// A day later the late event's window has passed too.
	set(time.Date(2031, 3, 19, 14, 0, 0, 0, time.UTC))
	res = pass()
	require.Equal(t, []string{"stats_events_y2031m03d16", "stats_events_y2031m03d17"}, only("stats_events_y", res.Partitions.Dropped),
		"the 16th, and the 17th (nothing in it)")
	require.Equal(t, []string{"outbox_y2031m03d16"}, only("outbox_y", res.Partitions.Dropped))
	require.Empty(t, res.Partitions.Kept)
	require.Equal(t, []string{"outbox_y2031m03d17", "outbox_y2031m03d18", "outbox_y2031m03d19", "outbox_y2031m03d20",
		"outbox_y2031m03d21", "outbox_y2031m03d22"}, names("outbox"))
}

// SQLite's outbox retention deletes old published events row by row and
// never an unpublished one.
func TestArchiverPrunesOutbox(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2031, 6, 15, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cs := settledClaims(t, st, now.Add(-10*day), now.Add(-9*day), now.Add(-8*day), now.Add(-day))
	pending, err := st.PendingEvents(ctx, 100)
	require.NoError(t, err)
	require.Len(t, pending, 4)
	// The oldest stays unpublished.
	require.NoError(t, st.MarkPublished(ctx, []int64{pending[1].ID, pending[2].ID, pending[3].ID}, now))
	a := worker.NewArchiver(worker.ArchiverConfig{
		Service: archiveStore{st}, OutboxRetention: 7 * day, Batch: 1, Pause: time.Millisecond, Now: func() time.Time { return now },
	})
	res, err := a.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, res.OutboxPruned, "the published events older than a week")
	left, err := st.PendingEvents(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{pending[0].ID}, []int64{left[0].ID}, "the unpublished one stays")
	_ = cs
}
