// Package sqlite is the SQLite implementation of store.Store, the default
// source of truth of coupond: one database file in WAL mode, written through a
// single connection and read through a small pool of read-only connections.
//
// All writes share one connection, so SQLite's single writer never waits on a
// lock held by another connection of this process; concurrent writers queue
// in database/sql instead, and InsertClaims amortises a commit over many
// claims. Readers never block the writer and see the last committed state.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/coupond/coupond/store"
)

var _ store.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures a Store. Only Path is required.
type Config struct {
	// Path is the database file; it is created if missing.
	Path string
	// Synchronous is "full" (the default: a commit survives a power cut) or
	// "normal" (a commit survives a crash of the process but perhaps not of
	// the machine; faster).
	Synchronous string
	// ReadConns is the size of the read pool; default 4.
	ReadConns int
	// Logger receives migration and maintenance messages; default: discard.
	Logger *slog.Logger
	// Now is the clock for times the store sets itself (a code's creation
	// time when the caller leaves it zero, a batch's update time in
	// AddCodes); default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	switch {
	case c.Path == "":
		return errors.New("sqlite: Config.Path is required")
	case c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:"):
		// Two pools on ":memory:" would be two databases; a URI would be
		// escaped a second time.
		return fmt.Errorf("sqlite: Config.Path must be a file path, not %q", c.Path)
	}
	switch strings.ToLower(c.Synchronous) {
	case "", "full":
		c.Synchronous = "FULL"
	case "normal":
		c.Synchronous = "NORMAL"
	default:
		return fmt.Errorf("sqlite: Config.Synchronous must be full or normal, not %q", c.Synchronous)
	}
	if c.ReadConns <= 0 {
		c.ReadConns = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	writer *sql.DB // one connection: every write goes through it
	reader *sql.DB // query_only connections
	goose  *goose.Provider
	log    *slog.Logger
	now    func() time.Time

	// Statements of the hot paths, prepared once on the writer and bound to
	// each transaction with Tx.StmtContext.
	insertClaim *sql.Stmt
	insertEvent *sql.Stmt
	insertCode  *sql.Stmt
}

// Open opens (creating if need be) the database at cfg.Path, applies the
// pending migrations and prepares the statements of the hot paths.
func Open(ctx context.Context, cfg Config) (_ *Store, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{log: cfg.Logger, now: cfg.Now}
	defer func() {
		if err != nil {
			_ = s.closeDBs()
		}
	}()

	if s.writer, s.goose, err = openWriter(cfg); err != nil {
		return nil, err
	}
	if err := migrate(ctx, s.goose, s.log); err != nil {
		return nil, err
	}
	var mode string
	if err := s.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, wrap("read journal mode", err)
	}
	if !strings.EqualFold(mode, "wal") {
		// Readers then block the writer and the other way round; still correct.
		s.log.Warn("sqlite: the database is not in WAL mode", "path", cfg.Path, "journal_mode", mode)
	}

	// Page caches in KiB (negative): 64 MiB for the writer, whose random
	// inserts into the code and claim indexes otherwise re-read pages from
	// the WAL; 16 MiB per reader.
	s.reader, err = sql.Open("sqlite", dsn(cfg.Path,
		"_pragma=busy_timeout(10000)",
		"_pragma=cache_size(-16384)",
		"_pragma=foreign_keys(1)",
		"_pragma=query_only(1)",
	))
	if err != nil {
		return nil, wrap("open reader", err)
	}
	s.reader.SetMaxOpenConns(cfg.ReadConns)
	s.reader.SetMaxIdleConns(cfg.ReadConns)
	if err := s.reader.PingContext(ctx); err != nil {
		return nil, wrap("open reader", err)
	}

	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.insertClaim, insertClaimSQL},
		{&s.insertEvent, insertEventSQL},
		{&s.insertCode, insertCodeSQL},
	} {
		if *p.stmt, err = s.writer.PrepareContext(ctx, p.query); err != nil {
			return nil, wrap("prepare", err)
		}
	}
	return s, nil
}

// Migrate applies the pending migrations to the database at cfg.Path
// (creating it if need be) and closes it, for a migrate command that does not
// serve. Open applies them too.
func Migrate(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	db, provider, err := openWriter(cfg)
	if err != nil {
		return err
	}
	err = migrate(ctx, provider, cfg.Logger)
	return errors.Join(err, db.Close())
}

// MigrationsApplied reports whether every migration this build knows of has
// been applied: a readiness check.
func (s *Store) MigrationsApplied(ctx context.Context) (bool, error) {
	pending, err := s.goose.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("sqlite: check migrations: %w", err)
	}
	return !pending, nil
}

// Close closes the statements and both pools.
func (s *Store) Close() error {
	if _, err := s.writer.Exec("PRAGMA optimize"); err != nil {
		s.log.Warn("sqlite: optimize on close failed", "err", err)
	}
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insertClaim, s.insertEvent, s.insertCode} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, db := range []*sql.DB{s.reader, s.writer} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// openWriter opens the single write connection and the migration provider
// on it.
func openWriter(cfg Config) (*sql.DB, *goose.Provider, error) {
	db, err := sql.Open("sqlite", dsn(cfg.Path,
		"_pragma=busy_timeout(10000)",
		"_pragma=foreign_keys(1)",
		"_pragma=cache_size(-65536)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous("+cfg.Synchronous+")",
		"_txlock=immediate",
	))
	if err != nil {
		return nil, nil, wrap("open writer", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, db, sub,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(cfg.Logger),
	)
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	return db, provider, nil
}

func migrate(ctx context.Context, p *goose.Provider, log *slog.Logger) error {
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: apply migrations: %w", err)
	}
	for _, r := range results {
		log.Info("sqlite: migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// dsn builds a file: URI for modernc.org/sqlite; the path is escaped so that
// '?', '#' and '%' in it stay part of the name.
func dsn(path string, params ...string) string {
	u := url.URL{Path: path}
	return "file:" + u.EscapedPath() + "?" + strings.Join(params, "&")
}

// Limits of list methods.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// readTx runs fn in one read transaction of the reader pool: a consistent
// snapshot of the database.
func (s *Store) readTx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	return inTx(ctx, s.reader, &sql.TxOptions{ReadOnly: true}, op, fn)
}

// writeTx runs fn in one write transaction (BEGIN IMMEDIATE) of the writer.
func (s *Store) writeTx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	return inTx(ctx, s.writer, nil, op, fn)
}

func inTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, op string, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return wrap(op+": begin", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return wrap(op+": commit", err)
	}
	return nil
}

// placeholders returns "?, ?, …" for n arguments.
func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// jsonInts encodes ids as a JSON array, for json_each.
func jsonInts(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}
