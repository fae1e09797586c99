package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/store/sqlite"
)

// TestArchiveQueryPlans checks that archival and the reads over both tables
// use the indexes meant for them: a chunk of archival reads old settled
// claims through claims_status_id, never the whole table.
func TestArchiveQueryPlans(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "coupond.db")
	require.NoError(t, sqlite.Migrate(ctx, sqlite.Config{Path: path}))
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	plan := func(query string) string {
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query)
		require.NoError(t, err)
		defer rows.Close()
		var out string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out += detail + "\n"
		}
		require.NoError(t, rows.Err())
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{`SELECT id, user_id FROM claims c WHERE status = 'used' AND id < 'X' AND claimed_at < 1 AND updated_at < 1
			AND NOT EXISTS (SELECT 1 FROM redemption_claims rc WHERE rc.claim_id = c.id
				AND rc.status IN ('reserved', 'confirmed') AND rc.status = 'reserved')
			ORDER BY id LIMIT 10`,
			[]string{"INDEX claims_status_id (status=? AND id<?)", "INDEX redemption_claims_held (claim_id=?)"}},
		{`SELECT id FROM claims_all WHERE id = 'x'`, []string{"claims_1 (id=?)", "claims_archive_1 (id=?)"}},
		{`SELECT user_id, user_seq FROM claims_all WHERE batch_id = 'b'`, []string{"claims_3 (batch_id=?)", "claims_archive_3 (batch_id=?)"}},
		{`SELECT id FROM claims_all WHERE batch_id = 'b' AND user_id = 'u' AND idempotency_key = 'k'`,
			[]string{"claims_idempotency", "claims_archive_idempotency"}},
		{`SELECT c.code FROM codes c WHERE c.batch_id = 'b' AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.code = c.code)
			AND NOT EXISTS (SELECT 1 FROM claims_archive cl WHERE cl.code = c.code) ORDER BY c.seq`,
			[]string{"claims_2 (code=?)", "claims_archive_2 (code=?)"}},
		{`SELECT * FROM (SELECT * FROM (SELECT id, valid_to FROM claims WHERE user_id = 'u' AND (valid_to, id) > (1, 'a') ORDER BY valid_to, id LIMIT 20)
			UNION ALL SELECT * FROM (SELECT id, valid_to FROM claims_archive WHERE user_id = 'u' AND (valid_to, id) > (1, 'a') ORDER BY valid_to, id LIMIT 20))
			ORDER BY valid_to, id LIMIT 20`,
			[]string{"claims_user (user_id=? AND (valid_to,id)>(?,?))", "claims_archive_user (user_id=? AND (valid_to,id)>(?,?))"}},
		{`SELECT id FROM claims_archive WHERE claimed_at < 1 ORDER BY claimed_at LIMIT 10`, []string{"INDEX claims_archive_claimed (claimed_at<?)"}},
		// Search: each side's first page from its own (column, id) index;
		// merchant, phone and channel repeat the hot table's partial index's
		// predicate, as SearchClaims does (where.sparse).
		{searchBoth(`batch_id = 'b' AND id < 'x'`), []string{"claims_batch_id (batch_id=? AND id<?)", "claims_archive_batch_id (batch_id=? AND id<?)"}},
		{searchBoth(`merchant_id = 'm' AND merchant_id <> ''`), []string{"claims_merchant_id (merchant_id=?)", "claims_archive_merchant_id (merchant_id=?)"}},
		{searchBoth(`phone = 'p' AND phone <> ''`), []string{"claims_phone_id (phone=?)", "claims_archive_phone_id (phone=?)"}},
		{searchBoth(`channel = 'c' AND channel <> ''`), []string{"claims_channel_id (channel=?)", "claims_archive_channel_id (channel=?)"}},
		{searchBoth(`status = 'refunded'`), []string{"claims_status_id (status=?)", "claims_archive_status_id (status=?)"}},
		{searchBoth(`code = 'c'`), []string{"claims_2 (code=?)", "claims_archive_2 (code=?)"}},
		{searchBoth(`id < 'x'`), []string{"claims_1 (id<?)", "claims_archive_1 (id<?)"}},
		{`SELECT c.code, coalesce(cl.id, ca.id) FROM codes c LEFT JOIN claims cl ON cl.code = c.code
			LEFT JOIN claims_archive ca ON ca.code = c.code WHERE c.batch_id = 'b' AND cl.id IS NULL AND ca.id IS NULL ORDER BY c.code LIMIT 20`,
			[]string{"claims_2 (code=?)", "claims_archive_2 (code=?)"}},
		// The outbox's retention walks its rowids past the pending events.
		{`DELETE FROM outbox WHERE id IN (SELECT id FROM (SELECT id, created_at FROM outbox WHERE published_at IS NOT NULL ORDER BY id LIMIT 10)
			WHERE created_at < 1)`, []string{"SCAN outbox", "SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)"}},
	} {
		p := plan(tc.query)
		for _, w := range tc.want {
			require.Contains(t, p, w, "%s\n%s", tc.query, p)
		}
		require.NotContains(t, p, "SCAN claims\n", "%s\n%s", tc.query, p)
		require.NotContains(t, p, "SCAN claims_archive\n", "%s\n%s", tc.query, p)
	}
}

// searchBoth is the shape of SearchClaims: each table's first page, their
// union cut to the page.
func searchBoth(cond string) string {
	return `SELECT id FROM (SELECT * FROM (SELECT id FROM claims WHERE ` + cond + ` ORDER BY id DESC LIMIT 20)
		UNION ALL SELECT * FROM (SELECT id FROM claims_archive WHERE ` + cond + ` ORDER BY id DESC LIMIT 20)) ORDER BY id DESC LIMIT 20`
}
