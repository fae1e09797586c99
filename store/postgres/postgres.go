// Package postgres is the PostgreSQL implementation of store.Store, the
// source of truth of coupond in production: a pgx pool on the primary and,
// optionally, one on a read replica for the queries that tolerate lag.
//
// Which pool each method uses:
//
//	method                        pool      why
//	CreateBatch, SetBatchStatus   primary   writes
//	AddCodes, ContinueCodes       primary   writes
//	InsertClaims                  primary   writes
//	MarkPublished                 primary   writes
//	GetBatch                      primary   the service re-reads a batch after changing it
//	GetClaim, GetClaimByKey       primary   a claim just made must be found (idempotent replay)
//	ClaimedCount                  primary   the service and reconciler decide on it
//	GetCode, ClaimedCodes         primary   the reconciler decides on them
//	Snapshot                      primary   an engine rebuilt from a stale copy would oversell
//	UnclaimedCodes                primary   a range loaded from a lagging copy would strand its codes
//	PendingEvents                 primary   the relay marks on the primary; a lagging read republishes
//	ListBatches                   replica   the admin console's listing
//	ListUserClaims                replica   "my coupons": a claim made a moment ago may show a moment later
//	Search*, statistics reads     replica   the back office (query.go)
//	Archive*, Prune*, partitions  primary   the archiver's writes and DDL (archive.go, partition.go)
//
// Without a replica every method uses the primary. Replica connections are
// opened with default_transaction_read_only, so that a write sent there by
// mistake fails at once instead of succeeding on a writable copy.
//
// The hot path, InsertClaims, writes a whole group of claims and their outbox
// rows with one statement and one round trip; see claim.go.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/coupond/coupond/store"
)

var (
	_ store.Store            = (*Store)(nil)
	_ store.MigrationChecker = (*Store)(nil)
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures a Store. Only URL is required.
type Config struct {
	// URL of the primary, e.g. postgres://user@host:5432/coupond?sslmode=require.
	URL string
	// ReplicaURL of a read replica for the queries that tolerate lag
	// (see the package comment); empty: every query reads the primary.
	ReplicaURL string
	// Schema, when set, is the search_path of every connection; Open and
	// Migrate create it if it is missing. It applies to the replica too
	// unless ReplicaURL sets search_path itself. Empty: the URL's own
	// search_path (by default "$user", public).
	Schema string
	// MaxConns bounds each pool; default: pgxpool's, the greater of 4 and
	// the number of CPUs.
	MaxConns int32
	// Logger receives migration messages; default: discard.
	Logger *slog.Logger
	// Now is the clock for times the store sets itself (a code's creation
	// time when the caller leaves it zero, a batch's update time in
	// AddCodes, ListUserClaims's default Now); default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("postgres: Config.URL is required")
	}
	if strings.ContainsRune(c.Schema, 0) {
		return errors.New("postgres: Config.Schema must not contain NUL")
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("postgres: Config.MaxConns must not be negative, not %d", c.MaxConns)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	primary    *pgxpool.Pool
	replica    *pgxpool.Pool // the primary when there is no replica
	migrations *goose.Provider
	sqlDB      *sql.DB // goose's handle
	log        *slog.Logger
	now        func() time.Time
}

// Open connects to the primary (and the replica, if configured), creates
// cfg.Schema if it is missing and applies the pending migrations, several
// instances starting at once taking turns on an advisory lock.
func Open(ctx context.Context, cfg Config) (_ *Store, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{log: cfg.Logger, now: cfg.Now}
	defer func() {
		if err != nil {
			_ = s.closeAll()
		}
	}()

	primaryCfg, err := poolConfig(cfg.URL, cfg.Schema, false, cfg.MaxConns)
	if err != nil {
		return nil, err
	}
	if err := createSchema(ctx, primaryCfg.ConnConfig, cfg.Schema); err != nil {
		return nil, err
	}
	if _, set := primaryCfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		// Every statement of the store is prepared once per connection
		// (pgx's statement cache) and finds its rows by key, so one generic
		// plan serves every call. Left to choose, PostgreSQL keeps
		// re-planning InsertClaims's statement for small groups, whose
		// planning then costs as much as running it.
		primaryCfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	if s.primary, err = openPool(ctx, "primary", primaryCfg); err != nil {
		return nil, err
	}
	if err := s.openMigrations(primaryCfg.ConnConfig, cfg); err != nil {
		return nil, err
	}
	if err := migrate(ctx, s.migrations, s.log); err != nil {
		return nil, err
	}

	s.replica = s.primary
	if cfg.ReplicaURL != "" {
		replicaCfg, err := poolConfig(cfg.ReplicaURL, cfg.Schema, true, cfg.MaxConns)
		if err != nil {
			return nil, fmt.Errorf("postgres: replica: %w", err)
		}
		replicaCfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		if s.replica, err = openPool(ctx, "replica", replicaCfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Migrate creates cfg.Schema if it is missing and applies the pending
// migrations to the primary, for a migrate command that does not serve.
// Open applies them too.
func Migrate(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	pc, err := poolConfig(cfg.URL, cfg.Schema, false, 0)
	if err != nil {
		return err
	}
	if err := createSchema(ctx, pc.ConnConfig, cfg.Schema); err != nil {
		return err
	}
	s := &Store{log: cfg.Logger}
	if err := s.openMigrations(pc.ConnConfig, cfg); err != nil {
		return err
	}
	err = migrate(ctx, s.migrations, s.log)
	return errors.Join(err, s.closeAll())
}

// MigrationsApplied reports whether every migration this build knows of has
// been applied: a readiness check.
func (s *Store) MigrationsApplied(ctx context.Context) (bool, error) {
	pending, err := s.migrations.HasPending(ctx)
	if err != nil {
		return false, wrap("check migrations", err)
	}
	return !pending, nil
}

// Close closes both pools and the migration connection.
func (s *Store) Close() error {
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var err error
	if s.sqlDB != nil {
		if cerr := s.sqlDB.Close(); cerr != nil {
			err = fmt.Errorf("postgres: close: %w", cerr)
		}
	}
	if s.replica != nil && s.replica != s.primary {
		s.replica.Close()
	}
	if s.primary != nil {
		s.primary.Close()
	}
	return err
}

// poolConfig parses url and sets the search_path and pool size. A
// search_path in url wins over schema if keepURLPath is set.
func poolConfig(url, schema string, keepURLPath bool, maxConns int32) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error of ParseConfig masks passwords in the URL.
		return nil, fmt.Errorf("postgres: parse URL: %w", err)
	}
	if _, set := pc.ConnConfig.RuntimeParams["search_path"]; schema != "" && (!set || !keepURLPath) {
		pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	if maxConns > 0 {
		pc.MaxConns = maxConns
	}
	return pc, nil
}

func openPool(ctx context.Context, name string, pc *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, wrap("open "+name, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrap("connect to "+name, err)
	}
	return pool, nil
}

// createSchema creates the schema on a connection of its own, before the
// pool's connections, whose search_path names it, are opened.
func createSchema(ctx context.Context, cc *pgx.ConnConfig, schema string) error {
	if schema == "" {
		return nil
	}
	cc = cc.Copy()
	delete(cc.RuntimeParams, "search_path")
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return wrap("connect to primary", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists)
	if err != nil {
		return wrap("look up schema", err)
	}
	if exists {
		// Creating it would need the CREATE privilege, which a user
		// of an existing schema may well not have.
		return nil
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
		// IF NOT EXISTS does not cover another session creating it at the
		// same moment.
		if pe := pgError(err); pe != nil && (pe.Code == uniqueViolation || pe.Code == "42P06") {
			return nil
		}
		return wrap("create schema "+schema, err)
	}
	return nil
}

// openMigrations opens the goose provider on a database/sql handle of its
// own, with the same URL and search_path as the primary pool. A session
// advisory lock, one per schema, keeps instances that start together from
// applying a migration twice.
func (s *Store) openMigrations(cc *pgx.ConnConfig, cfg Config) error {
	db := stdlib.OpenDB(*cc.Copy())
	// One connection, idle for a while between readiness checks.
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	s.sqlDB = db

	h := fnv.New64a()
	h.Write([]byte("coupond migrations\x00" + cfg.Schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 600), // probe every second, for ten minutes
	)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	s.migrations, err = goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker),
		goose.WithSlog(cfg.Logger),
	)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	return nil
}

func migrate(ctx context.Context, p *goose.Provider, log *slog.Logger) error {
	results, err := p.Up(ctx)
	if err != nil {
		return wrap("apply migrations", err)
	}
	for _, r := range results {
		log.Info("postgres: migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
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

// inTx runs fn in one transaction of pool, committing if fn returns nil.
func inTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, op string, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return wrap(op+": begin", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(op+": commit", err)
	}
	return nil
}
