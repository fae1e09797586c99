package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReaderIsReadOnly: the read pool refuses writes, so a write sent to it
// by mistake fails loudly instead of contending with the writer.
func TestReaderIsReadOnly(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "coupond.db")})
	require.NoError(t, err)
	defer s.Close()

	_, err = s.reader.ExecContext(t.Context(), `INSERT INTO outbox (type, aggregate_id, payload, created_at) VALUES ('x', 'y', '{}', 0)`)
	require.Error(t, err)
	var n int
	require.NoError(t, s.writer.QueryRowContext(t.Context(), `SELECT count(*) FROM outbox`).Scan(&n))
	require.Zero(t, n)
}

// TestMigrationsDown takes every migration down and up again, so that the
// down halves stay runnable.
func TestMigrationsDown(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "coupond.db")})
	require.NoError(t, err)
	defer s.Close()

	_, err = s.goose.DownTo(ctx, 0)
	require.NoError(t, err)
	ok, err := s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	var tables int
	require.NoError(t, s.writer.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('batches', 'rules', 'codes', 'claims', 'outbox')`).Scan(&tables))
	require.Zero(t, tables)

	_, err = s.goose.Up(ctx)
	require.NoError(t, err)
	ok, err = s.MigrationsApplied(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestDSN(t *testing.T) {
	require.Equal(t, "file:/data/coupond.db?a&b", dsn("/data/coupond.db", "a", "b"))
	require.Equal(t, "file:/tmp/a%3Fb%23c%25d%20e.db?x", dsn("/tmp/a?b#c%d e.db", "x"))
	require.Equal(t, "file:data/coupond.db?x", dsn("data/coupond.db", "x"))
}

func TestEncodeList(t *testing.T) {
	require.Nil(t, encodeList(nil))
	require.Nil(t, encodeList([]string{}))
	require.Equal(t, `["ios","mini-program"]`, encodeList([]string{"ios", "mini-program"}))
	require.Equal(t, `["a\"b","\\","é"]`, encodeList([]string{`a"b`, `\`, "é"}))
	for _, xs := range [][]string{{"ios"}, {`a"b`, "\n", "é", "<&>"}} {
		got, err := decodeList("x", nullStr(encodeList(xs).(string)))
		require.NoError(t, err)
		require.Equal(t, xs, got)
	}
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
