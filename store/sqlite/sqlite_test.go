package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, sqlite.Config{})
	})
}

// TestStoreSynchronousNormal runs the suite again with the faster durability
// setting and a single reader.
func TestStoreSynchronousNormal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, sqlite.Config{Synchronous: "normal", ReadConns: 1})
	})
}

// open opens a store on a fresh file in t's temporary directory.
func open(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "coupond.db")
	}
	s, err := sqlite.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestMigrations: Migrate creates and migrates a database whose name needs
// escaping in a URI, a second run is a no-op, and a store opened on it finds
// every migration applied.
func TestMigrations(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dir with ?#% in its name", "coupond.db")
	require.Error(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}), "the directory does not exist")

	path = filepath.Join(t.TempDir(), "name with ?#% in it.db")
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}))
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}), "migrating twice is a no-op")
	require.FileExists(t, path)

	s := open(t, sqlite.Config{Path: path})
	ok, err := s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

// TestSchema applies every migration to an empty database and checks the
// tables, indexes and journal mode they leave behind.
func TestSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "coupond.db")
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}))

	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()

	objects := map[string]string{}
	rows, err := db.QueryContext(ctx, `SELECT name, type FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'`)
	require.NoError(t, err)
	for rows.Next() {
		var name, typ string
		require.NoError(t, rows.Scan(&name, &typ))
		objects[name] = typ
	}
	require.NoError(t, rows.Err())
	for _, table := range []string{"batches", "rules", "codes", "claims", "outbox", "goose_db_version"} {
		require.Equal(t, "table", objects[table], "table %s", table)
	}
	for _, index := range []string{"batches_status_id", "batches_merchant_id", "rules_batch", "rules_ref",
		"claims_idempotency", "claims_user", "outbox_pending"} {
		require.Equal(t, "index", objects[index], "index %s", index)
	}

	var mode string
	require.NoError(t, db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)

	// The foreign keys hold.
	var violations int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&violations))
	require.Zero(t, violations)
}

func TestOpenConfig(t *testing.T) {
	ctx := t.Context()
	for _, cfg := range []sqlite.Config{
		{},
		{Path: ":memory:"},
		{Path: filepath.Join(t.TempDir(), "x.db"), Synchronous: "off"},
	} {
		_, err := sqlite.Open(ctx, cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

// TestQueryPlans checks that the frequent queries use the indexes meant for
// them and sort nothing.
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "coupond.db")
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}))
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()

	plan := func(query string, args ...any) string {
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		defer rows.Close()
		var out string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out += detail + "\n"
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  string // a fragment of the plan
	}{
		{`SELECT id FROM claims WHERE user_id = ? AND (valid_to, id) > (?, ?) ORDER BY valid_to, id LIMIT 10`, "COVERING INDEX claims_user (user_id=? AND (valid_to,id)>(?,?))"},
		{`SELECT count(*) FROM claims WHERE batch_id = ?`, "COVERING INDEX claims_batch_id (batch_id=?)"},
		{`SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 10`, "SCAN outbox USING INDEX outbox_pending"},
		{`SELECT id FROM batches WHERE status = ? AND id < ? ORDER BY id DESC LIMIT 10`, "INDEX batches_status_id (status=? AND id<?)"},
		{`SELECT c.code FROM codes c WHERE c.batch_id = ? AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code) ORDER BY c.seq`, "(code=?)"},
	} {
		p := plan(tc.query, "a", 1, "b")
		require.Contains(t, p, tc.want, "%s\n%s", tc.query, p)
		require.NotContains(t, p, "TEMP B-TREE", "%s\n%s", tc.query, p)
	}
}

// BenchmarkAddCodes measures adding one chunk of 10,000 codes.
func BenchmarkAddCodes(b *testing.B) {
	ctx := context.Background()
	s := open(b, sqlite.Config{})
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := &coupon.Batch{
		ID: coupon.NewID(now),
		BatchSpec: coupon.BatchSpec{
			Name: "bench", Type: coupon.TypeCash, TotalQuantity: coupon.MaxTotalQuantity, PerUserLimit: 1,
			Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
		},
		Status: coupon.StatusActive, CreatedAt: now, UpdatedAt: now,
	}
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
