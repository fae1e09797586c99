package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/storetest"
)

// The tests need a PostgreSQL server; each store gets a schema of its own,
// dropped when the test ends.
const defaultTestURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func TestStore(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Config{})
	})
}

// TestStoreWithReplica runs the suite again with the replica pool on the
// same schema (a replica without lag), so that every query works through
// the read-only connections it is routed to.
func TestStoreWithReplica(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		schema := newSchema(t)
		return open(t, Config{Schema: schema, ReplicaURL: testURL(t), MaxConns: 2})
	})
}

// TestMigrations: Migrate creates the schema (whose name needs quoting) and
// applies every migration, a second run is a no-op, and all of them go down
// and up again.
func TestMigrations(t *testing.T) {
	ctx := t.Context()
	u := testURL(t)
	schema := newSchema(t) + ` "Odd" name`
	t.Cleanup(func() { dropSchema(t, u, schema) })

	require.NoError(t, Migrate(ctx, Config{URL: u, Schema: schema}))
	require.NoError(t, Migrate(ctx, Config{URL: u, Schema: schema}), "migrating twice is a no-op")
	// Partitions named by their days (the day the migration ran) aside.
	var named, dated []string
	for _, tb := range tables(t, u, schema) {
		if datedPartition.MatchString(tb) {
			dated = append(dated, datedPartition.ReplaceAllString(tb, "_<day>"))
		} else {
			named = append(named, tb)
		}
	}
	require.ElementsMatch(t, []string{"batches", "rules", "codes", "claims", "outbox", "goose_db_version",
		"redemptions", "redemption_claims", "claim_expiry", "batch_stats", "stats_seen", "batch_flags",
		"api_keys", "list_entries", "list_version", "risk_rule_sets", "refusals", "claim_devices",
		"grant_jobs", "grant_job_users", "grant_job_failures",
		"claims_archive", "claims_archive_default", "claims_all",
		"outbox_default", "stats_events", "stats_events_default",
		"redemptions_archive", "redemptions_archive_default", "redemption_claims_archive", "redemption_claims_archive_default"}, named)
	require.ElementsMatch(t, []string{"outbox_before_<day>", "outbox_<day>", "outbox_<day>", "outbox_<day>",
		"stats_events_before_<day>", "stats_events_<day>", "stats_events_<day>", "stats_events_<day>"}, dated,
		"the rows before the migration's day in one partition; that day and the next two made ahead")

	s := open(t, Config{URL: u, Schema: schema})
	ok, err := s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.True(t, ok)

	_, err = s.migrations.DownTo(ctx, 0)
	require.NoError(t, err)
	ok, err = s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, []string{"goose_db_version"}, tables(t, u, schema))

	_, err = s.migrations.Up(ctx)
	require.NoError(t, err)
	ok, err = s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.True(t, ok)

	// The store works on the recreated tables, through the statements its
	// connections prepared before.
	b := testBatch(time.Now())
	require.NoError(t, s.CreateBatch(ctx, b))
	_, err = s.AddCodes(ctx, b.ID, []coupon.Code{{Code: "AFTER-UP", Amount: 1}})
	require.NoError(t, err)
}

// TestMigrationPartitionsKeepsRows: migration 00010 turns a used outbox and
// record of counted events into partitioned tables with every row in place
// (the outbox's ids, their sequence and the unpublished events; each counted
// event still recognised when it comes again), and its Down puts them back.
func TestMigrationPartitionsKeepsRows(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	_, err := s.migrations.DownTo(ctx, 9)
	require.NoError(t, err)

	now := time.Now().UTC().Truncate(time.Microsecond)
	created := []time.Time{now.Add(-72 * time.Hour), now.Add(-48 * time.Hour), now.Add(-time.Minute)}
	var ids []int64
	for i, at := range created {
		var published *time.Time
		if i == 0 {
			published = &now
		}
		var id int64
		require.NoError(t, s.primary.QueryRow(ctx, `INSERT INTO outbox (type, aggregate_id, payload, created_at, published_at)
			VALUES ('claim.created', 'c', '{}', $1, $2) RETURNING id`, at, published).Scan(&id))
		ids = append(ids, id)
	}
	_, err = s.primary.Exec(ctx, `INSERT INTO stats_seen (key, at) VALUES ($1, $2), ('e:999999', $2), ('k:refund:c1', $2)`,
		fmt.Sprintf("e:%d", ids[0]), now.Add(-71*time.Hour))
	require.NoError(t, err)

	_, err = s.migrations.UpTo(ctx, 10)
	require.NoError(t, err)
	var before string
	require.NoError(t, s.primary.QueryRow(ctx, `SELECT tableoid::regclass::text FROM outbox WHERE id = $1`, ids[0]).Scan(&before))
	require.Regexp(t, `^outbox_before_y\d{4}m\d{2}d\d{2}$`, before, "the old table became the partition of the days before")
	pending, err := s.PendingEvents(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []int64{ids[1], ids[2]}, []int64{pending[0].ID, pending[1].ID})
	require.True(t, created[1].Equal(pending[0].CreatedAt))
	require.NoError(t, s.MarkPublished(ctx, []int64{ids[1]}, now))

	// Counted events are still known: event ids[0] at its own time, the
	// event without an outbox row in the default partition, and the
	// once-only key where it was.
	b := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, b))
	_, err = s.ApplyStats(ctx, []store.StatsEvent{
		{ID: ids[0], At: created[0], Deltas: []store.StatsDelta{{BatchID: b.ID, Hour: now, StatsCounts: store.StatsCounts{Claimed: 1}}}},
		{ID: 999999, Deltas: []store.StatsDelta{{BatchID: b.ID, Hour: now, StatsCounts: store.StatsCounts{Claimed: 1}}}},
		{ID: ids[2] + 1000, At: now, Deltas: []store.StatsDelta{{BatchID: b.ID, Hour: now, Key: "refund:c1", StatsCounts: store.StatsCounts{Refunded: 1}}}},
	})
	require.NoError(t, err)
	rows, err := s.BatchStats(ctx, b.ID)
	require.NoError(t, err)
	require.Empty(t, rows, "nothing counted twice")

	// New events continue the ids.
	cs := addCodes(t, s, b, 1)
	w := claimWrite(b, cs[0].Code, cs[0].Amount, "u", now)
	for _, err := range s.InsertClaims(ctx, []store.ClaimWrite{w}) {
		require.NoError(t, err)
	}
	pending, err = s.PendingEvents(ctx, 10)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	require.Greater(t, pending[1].ID, ids[2])

	_, err = s.migrations.DownTo(ctx, 9)
	require.NoError(t, err)
	var n, unpublished, keys int
	require.NoError(t, s.primary.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE published_at IS NULL),
		(SELECT count(*) FROM stats_seen) FROM outbox`).Scan(&n, &unpublished, &keys))
	require.Equal(t, 4, n)
	require.Equal(t, 2, unpublished)
	require.Equal(t, 4, keys, "the three events' records back as keys, and the key")
	_, err = s.migrations.Up(ctx)
	require.NoError(t, err)
}

// TestMigrationsConcurrent: several instances starting on an empty schema at
// once apply each migration once.
func TestMigrationsConcurrent(t *testing.T) {
	u := testURL(t)
	schema := newSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(t.Context(), Config{URL: u, Schema: schema}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var applied int
	conn := connect(t, u)
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT count(*) FROM `+pgx.Identifier{schema, "goose_db_version"}.Sanitize()+` WHERE version_id > 0`).Scan(&applied))
	files, err := fs.Glob(migrationFiles, "migrations/*.sql")
	require.NoError(t, err)
	require.Equal(t, len(files), applied, "each migration applied once")
}

// TestSchema checks the names the store relies on: the constraints that
// tell InsertClaims's outcomes apart, and the order of the unique indexes
// of claims, which is the order PostgreSQL checks them in and the order of
// the group statement's diagnosis.
func TestSchema(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	rows, err := s.primary.Query(ctx, `SELECT conname, contype::text FROM pg_constraint
		WHERE conrelid = 'claims'::regclass ORDER BY conname`)
	require.NoError(t, err)
	got := map[string]string{}
	for rows.Next() {
		var name, typ string
		require.NoError(t, rows.Scan(&name, &typ))
		got[name] = typ
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]string{
		"claims_pkey": "p", "claims_code": "u", "claims_batch_user_seq": "u",
		"claims_user_seq": "c", "claims_code_fk": "f",
	}, got)

	rows, err = s.primary.Query(ctx, `SELECT i.indexrelid::regclass::text FROM pg_index i
		WHERE i.indrelid = 'claims'::regclass AND i.indisunique ORDER BY i.indexrelid`)
	require.NoError(t, err)
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"claims_pkey", "claims_code", "claims_batch_user_seq", "claims_idempotency"}, indexes)
}

// TestQueryPlans checks that the frequent queries use the indexes meant for
// them and sort nothing.
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	b.TotalQuantity = 10_000
	require.NoError(t, s.CreateBatch(ctx, b))
	in := make([]coupon.Code, 5000)
	for i := range in {
		in[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 1}
	}
	cs, err := s.AddCodes(ctx, b.ID, in)
	require.NoError(t, err)
	var writes []store.ClaimWrite
	for i, c := range cs[:4000] {
		writes = append(writes, claimWrite(b, c.Code, c.Amount, fmt.Sprintf("user-%d", i), now))
	}
	for i := 0; i < len(writes); i += 500 {
		for _, err := range s.InsertClaims(ctx, writes[i:i+500]) {
			require.NoError(t, err)
		}
	}
	// A small batch among the large one, as most batches are.
	small := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, small))
	sc := addCodes(t, s, small, 3)
	for _, err := range s.InsertClaims(ctx, []store.ClaimWrite{claimWrite(small, sc[0].Code, sc[0].Amount, "", now)}) {
		require.NoError(t, err)
	}
	_, err = s.primary.Exec(ctx, `ANALYZE`)
	require.NoError(t, err)
	// The batches table is tiny here; a scan of it would be the right plan.
	conn, err := s.primary.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET enable_seqscan = off`)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET enable_seqscan`) }()

	for _, tc := range []struct {
		query string
		args  []any
		want  string // a fragment of the plan
	}{
		{`SELECT id FROM claims WHERE user_id = $1 AND (valid_to, id) > ($2, $3) ORDER BY valid_to, id LIMIT 10`,
			[]any{"user-1", now, "x"}, "claims_user"},
		{`SELECT count(*) FROM claims WHERE batch_id = $1`, []any{small.ID}, "claims_batch_id"},
		// Each partition's outbox_pending, merged: no sort of the pending events.
		{`SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 10`, nil, "Merge Append"},
		{`UPDATE outbox SET published_at = $1 WHERE id = ANY($2::bigint[]) AND published_at IS NULL`,
			[]any{now, []int64{1, 2}}, "outbox_default_id_idx"},
		{`SELECT id FROM batches WHERE status = $1 AND id < $2 ORDER BY id DESC LIMIT 10`, []any{"active", "z"}, "batches_status_id"},
		{`SELECT code FROM claims WHERE code = ANY($1::text[])`, []any{[]string{cs[0].Code}}, "claims_code"},
		{`SELECT user_id, user_seq FROM claims WHERE batch_id = $1 ORDER BY user_id, user_seq`, []any{small.ID}, "claims_batch_user_seq"},
		{`SELECT c.code FROM codes c WHERE c.batch_id = $1 AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code) ORDER BY c.seq`,
			[]any{small.ID}, "codes_batch_seq"},
	} {
		var plan strings.Builder
		rows, err := conn.Query(ctx, "EXPLAIN "+tc.query, tc.args...)
		require.NoError(t, err)
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			plan.WriteString(line + "\n")
		}
		require.NoError(t, rows.Err())
		require.Contains(t, plan.String(), tc.want, "%s\n%s", tc.query, plan.String())
		require.NotContains(t, plan.String(), "Sort  (", "%s\n%s", tc.query, plan.String()) // a Sort node; Merge Append prints its "Sort Key"
		require.NotContains(t, plan.String(), "Seq Scan", "%s\n%s", tc.query, plan.String())
	}

	// The writes of the hot paths probe the indexes of codes and claims,
	// whatever the planner thinks of hashing them whole.
	for _, seqScan := range []bool{true, false} {
		_, err = conn.Exec(ctx, fmt.Sprintf(`SET enable_seqscan = %t`, seqScan))
		require.NoError(t, err)
		group := make([]store.ClaimWrite, 256)
		idx := make([]int, len(group))
		for i := range group {
			group[i] = claimWrite(b, cs[4000+i].Code, cs[4000+i].Amount, "", now)
			idx[i] = i
		}
		requirePlan(t, conn, insertClaimsSQL, groupArgs(group, idx), "claims_pkey", "claims_code")

		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, createStagingSQL)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO coupond_staging_codes SELECT i, 'X' || i, 1, NULL, now() FROM generate_series(1, 10000) i`)
		require.NoError(t, err)
		requirePlan(t, tx, insertStagedSQL, []any{b.ID, int64(0)}, "codes_pkey")
		require.NoError(t, tx.Rollback(ctx))
	}
}

// TestArchiveSearchPlans: every shape of the back-office search reads the
// hot table and each monthly partition of the archive through an index in
// id order (a Merge Append of the partitions), never a scan of either.
func TestArchiveSearchPlans(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	now := time.Date(2031, 3, 15, 0, 0, 0, 0, time.UTC)
	_, err := s.MaintainPartitions(ctx, store.MaintainPartitions{Now: now, From: now.AddDate(0, -3, 0), Ahead: 1})
	require.NoError(t, err)
	// A small batch of its own merchant among a large one, as most are.
	big, b := testBatch(now), testBatch(now)
	big.TotalQuantity, big.PerUserLimit = 3000, 3000
	b.MerchantID = "m-small"
	require.NoError(t, s.CreateBatch(ctx, big))
	require.NoError(t, s.CreateBatch(ctx, b))
	cs := append(addCodes(t, s, big, 2990), addCodes(t, s, b, 10)...)
	var writes []store.ClaimWrite
	for i, c := range cs {
		at := now.AddDate(0, -3, 0).Add(time.Duration(i) * time.Hour)
		bt := big
		if i >= 2990 {
			bt = b
		}
		w := claimWrite(bt, c.Code, c.Amount, fmt.Sprint("user-", i%300), at)
		w.Claim.UserSeq, w.Claim.UserLimit, w.Claim.Status, w.Claim.Channel, w.Claim.Phone = i/300+1, 100, coupon.ClaimUsed, fmt.Sprint("ch-", i%5), fmt.Sprint("+86", i%700)
		if i%100 == 0 {
			w.Claim.Status = coupon.ClaimRefunded
		}
		writes = append(writes, w)
	}
	for i := 0; i < len(writes); i += 500 {
		for _, err := range s.InsertClaims(ctx, writes[i:i+500]) {
			require.NoError(t, err)
		}
	}
	for {
		res, err := s.ArchiveClaims(ctx, store.ArchiveClaims{Before: now, Limit: 1000})
		require.NoError(t, err)
		if res.Moved < 1000 {
			break
		}
	}
	_, err = s.primary.Exec(ctx, `ANALYZE`)
	require.NoError(t, err)
	conn, err := s.primary.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET enable_seqscan = off`) // the tables are small; at scale the indexes win anyway
	require.NoError(t, err)

	for _, tc := range []struct {
		f    store.ClaimSearch
		want []string
	}{
		{store.ClaimSearch{BatchID: b.ID, BeforeID: writes[2995].Claim.ID}, []string{"claims_batch_id", "_batch_id_id_idx"}},
		{store.ClaimSearch{MerchantID: b.MerchantID}, []string{"claims_merchant_id", "_merchant_id_id_idx"}},
		{store.ClaimSearch{Phone: "+861"}, []string{"claims_phone_id", "_phone_id_idx"}},
		{store.ClaimSearch{Channel: "ch-1"}, []string{"claims_channel_id", "_channel_id_idx"}},
		{store.ClaimSearch{Status: coupon.ClaimRefunded}, []string{"claims_status_id", "_status_id_idx"}},
		{store.ClaimSearch{Code: cs[5].Code}, []string{"claims_code", "_code_idx"}},
		{store.ClaimSearch{UserID: "user-1"}, []string{"claims_user", "_user_id_valid_to_id_idx"}},
		{store.ClaimSearch{}, []string{"claims_pkey", "_id_idx"}},
	} {
		tc.f.Now, tc.f.Limit = now, 21
		q, args := claimSearchSQL(tc.f)
		rows, err := conn.Query(ctx, "EXPLAIN "+q, args...)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		plan := strings.Join(lines, "\n")
		for _, w := range tc.want {
			require.Contains(t, plan, w, "%+v\n%s", tc.f, plan)
		}
		require.Contains(t, plan, "claims_archive_y2031m01", "%+v\n%s", tc.f, plan)
		require.NotContains(t, plan, "Seq Scan", "%+v\n%s", tc.f, plan)
	}
}

// requirePlan requires the plan of query to use every index of want and to
// scan neither codes nor claims whole.
func requirePlan(t *testing.T, q querier, query string, args []any, want ...string) {
	t.Helper()
	rows, err := q.Query(t.Context(), "EXPLAIN "+query, args...)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	plan := strings.Join(lines, "\n")
	for _, index := range want {
		require.Contains(t, plan, index, plan)
	}
	require.NotContains(t, plan, "Seq Scan on codes", plan)
	require.NotContains(t, plan, "Seq Scan on claims", plan)
}

// TestReplicaRouting opens a store whose replica is another schema holding
// other data, and checks which side each query reads.
func TestReplicaRouting(t *testing.T) {
	ctx := t.Context()
	u := testURL(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

	// The same batch, code and claim IDs on both sides, with different
	// contents, and a claim that only one side holds.
	batchID := coupon.NewID(now)
	fill := func(s *Store, name string, extraUser string) (claimID string) {
		b := testBatch(now)
		b.ID, b.Name, b.PerUserLimit = batchID, name, 5
		require.NoError(t, s.CreateBatch(ctx, b))
		cs, err := s.AddCodes(ctx, b.ID, []coupon.Code{{Code: "SHARED", Amount: 1}, {Code: name, Amount: 2}})
		require.NoError(t, err)
		w := claimWrite(b, cs[1].Code, cs[1].Amount, extraUser, now)
		w.Claim.IdempotencyKey = "key"
		for _, err := range s.InsertClaims(ctx, []store.ClaimWrite{w}) {
			require.NoError(t, err)
		}
		return w.Claim.ID
	}
	primarySchema, replicaSchema := newSchema(t), newSchema(t)
	primaryClaim := fill(open(t, Config{Schema: primarySchema}), "PRIMARY", "alice")
	replicaClaim := fill(open(t, Config{Schema: replicaSchema}), "REPLICA", "alice")

	replicaURL := withParam(t, u, "search_path", replicaSchema)
	s := open(t, Config{Schema: primarySchema, ReplicaURL: replicaURL})

	// Reads that tolerate lag: the replica.
	batches, err := s.ListBatches(ctx, store.BatchFilter{})
	require.NoError(t, err)
	require.Len(t, batches, 1)
	require.Equal(t, "REPLICA", batches[0].Name, "ListBatches reads the replica")
	claims, err := s.ListUserClaims(ctx, store.UserClaimFilter{UserID: "alice", Now: now})
	require.NoError(t, err)
	require.Len(t, claims, 1)
	require.Equal(t, replicaClaim, claims[0].ID, "ListUserClaims reads the replica")

	// Reads that must see the latest write: the primary.
	b, err := s.GetBatch(ctx, batchID)
	require.NoError(t, err)
	require.Equal(t, "PRIMARY", b.Name, "GetBatch reads the primary")
	_, err = s.GetClaim(ctx, primaryClaim)
	require.NoError(t, err, "GetClaim reads the primary")
	_, err = s.GetClaim(ctx, replicaClaim)
	require.ErrorIs(t, err, store.ErrNotFound, "GetClaim reads the primary")
	c, err := s.GetClaimByKey(ctx, batchID, "alice", "key")
	require.NoError(t, err)
	require.Equal(t, primaryClaim, c.ID, "GetClaimByKey reads the primary")
	code, err := s.GetCode(ctx, "PRIMARY")
	require.NoError(t, err, "GetCode reads the primary")
	require.Equal(t, coupon.CodeClaimed, code.Status)
	_, err = s.GetCode(ctx, "REPLICA")
	require.ErrorIs(t, err, store.ErrNotFound, "GetCode reads the primary")
	claimed, err := s.ClaimedCodes(ctx, []string{"PRIMARY", "REPLICA", "SHARED"})
	require.NoError(t, err)
	require.Equal(t, []string{"PRIMARY"}, claimed, "ClaimedCodes reads the primary")
	snap, err := s.Snapshot(ctx, batchID)
	require.NoError(t, err)
	require.Equal(t, "PRIMARY", snap.Batch.Name, "Snapshot reads the primary")
	require.Equal(t, []store.PoolCode{{Code: "SHARED", Amount: 1}}, snap.Pool)
	events, err := s.PendingEvents(ctx, 0)
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, primaryClaim, events[0].AggregateID, "PendingEvents reads the primary")

	// Writes: the primary, seen by ClaimedCount there only.
	w := claimWrite(b, "SHARED", 1, "bob", now)
	for _, err := range s.InsertClaims(ctx, []store.ClaimWrite{w}) {
		require.NoError(t, err)
	}
	n, err := s.ClaimedCount(ctx, batchID)
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "ClaimedCount reads the primary")
	replicaOnly := open(t, Config{Schema: replicaSchema})
	n, err = replicaOnly.ClaimedCount(ctx, batchID)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the write went to the primary")

	// The replica's connections are read-only.
	_, err = s.replica.Exec(ctx, `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES ('x', 'y', '{}', now())`)
	require.Error(t, err)
	require.Contains(t, err.Error(), "read-only")
}

// TestInsertClaimsBadData: a row whose data PostgreSQL refuses (a payload
// that is not JSON, a NUL byte) fails the group statement; the rows are then
// written one by one, so that the bad rows alone are refused, with no
// sentinel, and the others written with their events.
func TestInsertClaimsBadData(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, b))
	cs := addCodes(t, s, b, 5)

	writes := []store.ClaimWrite{
		claimWrite(b, cs[0].Code, cs[0].Amount, "u0", now),
		claimWrite(b, cs[1].Code, cs[1].Amount, "u1", now),
		claimWrite(b, cs[2].Code, cs[2].Amount, "u2\x00", now),
		claimWrite(b, cs[3].Code, cs[3].Amount, "u3", now),
		claimWrite(b, cs[0].Code, cs[0].Amount, "u4", now),
	}
	writes[1].Event.Payload = json.RawMessage(`{not json`)
	errs := s.InsertClaims(ctx, writes)
	require.NoError(t, errs[0])
	require.Error(t, errs[1])
	require.Error(t, errs[2])
	require.NoError(t, errs[3])
	require.ErrorIs(t, errs[4], store.ErrCodeClaimed)
	for _, i := range []int{1, 2} {
		for _, sentinel := range []error{store.ErrCodeClaimed, store.ErrSeqTaken, store.ErrKeyUsed, store.ErrUnknownCode, store.ErrOverLimit} {
			require.NotErrorIs(t, errs[i], sentinel)
		}
		_, err := s.GetClaim(ctx, writes[i].Claim.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	events, err := s.PendingEvents(ctx, 0)
	require.NoError(t, err)
	require.Len(t, events, 2)
	require.Equal(t, writes[0].Claim.ID, events[0].AggregateID)
	require.Equal(t, writes[3].Claim.ID, events[1].AggregateID)
}

// TestInsertClaimsDiagnosis: for rows that break several constraints at
// once, the group statement names the same constraint as PostgreSQL does
// when the row is inserted alone.
func TestInsertClaimsDiagnosis(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	b.PerUserLimit = 2
	other := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, b))
	require.NoError(t, s.CreateBatch(ctx, other))
	cs := addCodes(t, s, b, 6)
	oc := addCodes(t, s, other, 2)

	first := claimWrite(b, cs[0].Code, cs[0].Amount, "u0", now)
	first.Claim.IdempotencyKey = "k0"
	otherFirst := claimWrite(other, oc[0].Code, oc[0].Amount, "u0", now)
	for _, err := range s.InsertClaims(ctx, []store.ClaimWrite{first, otherFirst}) {
		require.NoError(t, err)
	}
	mk := func(code coupon.Code, user string, seq int, key string) store.ClaimWrite {
		w := claimWrite(b, code.Code, code.Amount, user, now)
		w.Claim.UserSeq, w.Claim.IdempotencyKey = seq, key
		return w
	}
	existingID := mk(cs[1], "u9", 1, "")
	existingID.Claim.ID = first.Claim.ID
	rows := []store.ClaimWrite{
		mk(cs[0], "u0", 1, "k0"),                              // code, seq and key
		mk(cs[1], "u0", 1, "k0"),                              // seq and key
		mk(cs[2], "u0", 3, "k0"),                              // over the limit and key
		mk(oc[0], "u0", 1, ""),                                // code of another batch, claimed there, and seq
		mk(oc[1], "u0", 1, ""),                                // code of another batch and seq
		mk(coupon.Code{Code: "NOPE", Amount: 1}, "u5", 0, ""), // unknown and seq zero
		existingID,               // id, and nothing else
		mk(cs[3], "u6", 1, "k6"), // good
		mk(cs[3], "u6", 2, "k6"), // code and key taken in this call
		mk(cs[4], "u6", 1, "k7"), // seq taken in this call
	}
	grouped := s.InsertClaims(ctx, rows)

	// The same rows, one by one, on a copy of the state before.
	s2 := open(t, Config{})
	require.NoError(t, s2.CreateBatch(ctx, b))
	require.NoError(t, s2.CreateBatch(ctx, other))
	_, err := s2.AddCodes(ctx, b.ID, cs)
	require.NoError(t, err)
	_, err = s2.AddCodes(ctx, other.ID, oc)
	require.NoError(t, err)
	for _, err := range s2.InsertClaims(ctx, []store.ClaimWrite{first, otherFirst}) {
		require.NoError(t, err)
	}
	alone := make([]error, len(rows))
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	s2.insertOneByOne(ctx, rows, idx, alone)

	for i := range rows {
		require.Equal(t, outcomeName(alone[i]), outcomeName(grouped[i]), "row %d: %v / %v", i, grouped[i], alone[i])
	}
	require.Equal(t, "ok", outcomeName(grouped[7]))
}

// TestInsertClaimsConflictWhileRunning: a claim committed by another
// transaction while the group statement waits for it is invisible to the
// statement's snapshot; the row is then tried alone and gets its reason.
func TestInsertClaimsConflictWhileRunning(t *testing.T) {
	ctx := t.Context()
	u := testURL(t)
	schema := newSchema(t)
	app := "waiter_" + schema
	s := open(t, Config{Schema: schema, URL: withParam(t, u, "application_name", app)})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	require.NoError(t, s.CreateBatch(ctx, b))
	cs := addCodes(t, s, b, 3)

	// Another transaction holds an uncommitted claim of cs[0].
	tx, err := s.primary.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	holder := claimWrite(b, cs[0].Code, cs[0].Amount, "holder", now)
	_, err = tx.Exec(ctx, insertClaimSQL, claimArgs(holder)...)
	require.NoError(t, err)

	writes := []store.ClaimWrite{
		claimWrite(b, cs[1].Code, cs[1].Amount, "u1", now),
		claimWrite(b, cs[0].Code, cs[0].Amount, "u2", now),
		claimWrite(b, cs[2].Code, cs[2].Amount, "u3", now),
	}
	done := make(chan []error)
	go func() { done <- s.InsertClaims(ctx, writes) }()

	// Wait until the statement waits for the holder's row lock.
	waitFor(t, func() bool {
		var waiting int
		err := s.primary.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting)
		require.NoError(t, err)
		return waiting > 0
	})
	require.NoError(t, tx.Commit(ctx))

	errs := <-done
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], store.ErrCodeClaimed)
	require.NoError(t, errs[2])
	events, err := s.PendingEvents(ctx, 0)
	require.NoError(t, err)
	require.Len(t, events, 3, "the holder's and the two written claims'")
}

// TestOpenUnreachable: a server that does not answer is ErrUnavailable.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{URL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"})
	require.ErrorIs(t, err, coupon.ErrUnavailable)

	_, err = Open(ctx, Config{})
	require.Error(t, err)
	_, err = Open(ctx, Config{URL: "::not a url::"})
	require.Error(t, err)
}

// TestStoreClosed: a store's methods fail cleanly after Close.
func TestStoreClosed(t *testing.T) {
	ctx := t.Context()
	u := testURL(t)
	s, err := Open(ctx, Config{URL: u, Schema: newSchema(t)})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.GetBatch(ctx, "x")
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
}

func TestArrayLiteral(t *testing.T) {
	ctx := t.Context()
	s := open(t, Config{})
	for _, xs := range [][]string{nil, {}, {"ios"}, {"a,b", `"q"`, `back\slash`, "NULL", "{}", " sp ", "é", ""}} {
		var got []string
		require.NoError(t, s.primary.QueryRow(ctx, `SELECT $1::text::text[]`, arrayLiteral(xs)).Scan(&got))
		require.Equal(t, fromList(xs), fromList(got))
	}
}

// BenchmarkInsertClaims measures the group commit of claims with their
// events, at three group sizes.
func BenchmarkInsertClaims(b *testing.B) {
	for _, group := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			ctx := context.Background()
			s := open(b, Config{})
			now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
			batch := testBatch(now)
			batch.TotalQuantity, batch.PerUserLimit = coupon.MaxTotalQuantity, 1
			batch.UsagePlatforms = []string{"ios", "android"}
			require.NoError(b, s.CreateBatch(ctx, batch))
			pool := addCodes(b, s, batch, b.N*group)

			writes := make([]store.ClaimWrite, group)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range writes {
					p := pool[i*group+j]
					writes[j] = claimWrite(batch, p.Code, p.Amount, "", now)
				}
				for _, err := range s.InsertClaims(ctx, writes) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*group)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// BenchmarkSingleRowInsert measures one claim INSERT per transaction, with
// no event and no group: the rate at which this machine commits single
// rows, which group commit exists to beat.
func BenchmarkSingleRowInsert(b *testing.B) {
	ctx := context.Background()
	s := open(b, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := testBatch(now)
	batch.TotalQuantity, batch.PerUserLimit = coupon.MaxTotalQuantity, 1
	require.NoError(b, s.CreateBatch(ctx, batch))
	pool := addCodes(b, s, batch, b.N)
	const insert = `INSERT INTO claims (` + claimColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := claimWrite(batch, pool[i].Code, pool[i].Amount, "", now)
		if _, err := s.primary.Exec(ctx, insert, claimArgs(w)[:23]...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
}

// BenchmarkAddCodes measures adding one chunk of 10,000 codes.
func BenchmarkAddCodes(b *testing.B) {
	ctx := context.Background()
	s := open(b, Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := testBatch(now)
	batch.TotalQuantity = coupon.MaxTotalQuantity
	require.NoError(b, s.CreateBatch(ctx, batch))
	chunk := make([]coupon.Code, 10_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range chunk {
			chunk[j] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 500}
		}
		b.StartTimer()
		out, err := s.AddCodes(ctx, batch.ID, chunk)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) != len(chunk) {
			b.Fatalf("%d of %d codes added", len(out), len(chunk))
		}
	}
	b.ReportMetric(float64(b.N*len(chunk))/b.Elapsed().Seconds(), "codes/s")
}

// testURL returns the URL of the test server, skipping the test if it does
// not answer (failing it on CI, where it must).
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("COUPOND_TEST_POSTGRES_URL")
	if u == "" {
		u = defaultTestURL
	}
	reach.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		reachErr = err
	})
	if reachErr != nil {
		shown := u
		if p, err := url.Parse(u); err == nil {
			shown = p.Redacted()
		}
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s (set COUPOND_TEST_POSTGRES_URL): %v", shown, reachErr)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return u
}

var (
	reach    sync.Once
	reachErr error
)

// newSchema returns the name of a fresh schema, dropped when t ends.
func newSchema(t testing.TB) string {
	t.Helper()
	u := testURL(t)
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := "t_" + hex.EncodeToString(r[:])
	t.Cleanup(func() { dropSchema(t, u, name) })
	return name
}

func dropSchema(t testing.TB, u, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// open opens a store on cfg, by default on the test server and a fresh
// schema, and closes it when t ends (before its schema is dropped).
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL(t)
	}
	if cfg.Schema == "" {
		cfg.Schema = newSchema(t)
	}
	s, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func connect(t testing.TB, u string) *pgx.Conn {
	conn, err := pgx.Connect(t.Context(), u)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// tables lists the tables of a schema.
func tables(t *testing.T, u, schema string) []string {
	rows, err := connect(t, u).Query(t.Context(), `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = $1 ORDER BY table_name`, schema)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func withParam(t testing.TB, raw, key, value string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// waitFor polls cond until it holds, failing t after ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testBatch(now time.Time) *coupon.Batch {
	return &coupon.Batch{
		ID: coupon.NewID(now),
		BatchSpec: coupon.BatchSpec{
			Name: "bench", Type: coupon.TypeCash, TotalQuantity: 1000, PerUserLimit: 1,
			Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
		},
		Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now,
	}
}

// addCodes adds n fresh codes to b, in chunks of 10,000.
func addCodes(t testing.TB, s *Store, b *coupon.Batch, n int) []coupon.Code {
	t.Helper()
	out := make([]coupon.Code, 0, n)
	for len(out) < n {
		chunk := make([]coupon.Code, min(10_000, n-len(out)))
		for i := range chunk {
			chunk[i] = coupon.Code{Code: coupon.NewCode(coupon.CodeFormat{Length: 16}), Amount: 100 + int64(i)}
		}
		added, err := s.AddCodes(context.Background(), b.ID, chunk)
		require.NoError(t, err)
		out = append(out, added...)
	}
	return out
}

// claimWrite returns the first claim of code by user (a fresh user if
// empty) and its event.
func claimWrite(b *coupon.Batch, code string, amount int64, user string, now time.Time) store.ClaimWrite {
	id := coupon.NewID(now)
	if user == "" {
		user = "user-" + id
	}
	c := coupon.NewClaim(b, id, coupon.Claimant{UserID: user, Platform: "ios"}, code, amount, 1, "", now)
	payload, _ := json.Marshal(struct {
		ClaimID string `json:"claim_id"`
		Code    string `json:"code"`
	}{id, code})
	return store.ClaimWrite{Claim: c, Event: store.Event{Type: "claim.created", AggregateID: id, Payload: payload, CreatedAt: now}}
}

// claimArgs are the arguments of insertClaimSQL for w.
func claimArgs(w store.ClaimWrite) []any {
	c := w.Claim
	var key any
	if c.IdempotencyKey != "" {
		key = c.IdempotencyKey
	}
	return []any{c.ID, c.BatchID, c.Code, c.UserID, c.UserSeq, c.UserLimit, c.Phone, c.OpenID,
		string(c.Status), c.Amount, c.ValidFrom, c.ValidTo, c.ClaimedAt, c.UpdatedAt, c.Platform, c.Channel, key,
		c.BatchName, c.MerchantID, string(c.Type), c.MinSpend, c.PercentOff, list(c.UsagePlatforms),
		w.Event.Type, w.Event.AggregateID, payloadArg(w.Event.Payload), eventTime(&w)}
}

// outcomeName names an outcome of InsertClaims by its sentinel.
func outcomeName(err error) string {
	for name, sentinel := range map[string]error{
		"code": store.ErrCodeClaimed, "seq": store.ErrSeqTaken, "key": store.ErrKeyUsed,
		"unknown": store.ErrUnknownCode, "limit": store.ErrOverLimit, "conflict": coupon.ErrConflict,
	} {
		if errors.Is(err, sentinel) {
			return name
		}
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

// TestUnavailable: a connection the server ends in the middle of a call
// makes the call's error wrap coupon.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	ctx := t.Context()
	u := testURL(t)
	s := open(t, Config{MaxConns: 1})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b := testBatch(now)
	b.Status = coupon.StatusDraft
	require.NoError(t, s.CreateBatch(ctx, b))

	var pid int32
	require.NoError(t, s.primary.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	// Another session holds the batch's row, so that SetBatchStatus waits.
	holder := connect(t, withParam(t, u, "search_path", s.primary.Config().ConnConfig.RuntimeParams["search_path"]))
	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM batches WHERE id = $1 FOR UPDATE`, b.ID)
	require.NoError(t, err)

	done := make(chan error)
	go func() {
		_, err := s.SetBatchStatus(ctx, store.SetBatchStatus{
			ID: b.ID, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: now,
		})
		done <- err
	}()
	waitFor(t, func() bool {
		var waiting bool
		require.NoError(t, holder.QueryRow(ctx, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting))
		return waiting
	})
	var killed bool
	require.NoError(t, holder.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed))
	require.True(t, killed)
	err = <-done
	require.ErrorIs(t, err, coupon.ErrUnavailable)
	require.NotErrorIs(t, err, store.ErrStatus)
	require.NoError(t, tx.Rollback(ctx))

	// The pool replaces the connection.
	got, err := s.SetBatchStatus(ctx, store.SetBatchStatus{
		ID: b.ID, From: []coupon.Status{coupon.StatusDraft}, To: coupon.StatusActive, At: now,
	})
	require.NoError(t, err)
	require.Equal(t, coupon.StatusActive, got.Status)
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "25006"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "42P01"}, false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{io.ErrUnexpectedEOF, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{errors.New("something else"), false},
	} {
		err := wrap("op", tc.err)
		require.ErrorIs(t, err, tc.err)
		require.Equal(t, tc.unavailable, errors.Is(err, coupon.ErrUnavailable), "%v", tc.err)
	}
}

// datedPartition matches the day in the name of a daily partition.
var datedPartition = regexp.MustCompile(`_y\d{4}m\d{2}d\d{2}$`)
