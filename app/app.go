// Package app assembles a whole coupond process from its configuration: the
// store, the engine, the bus, the service, the workers and the HTTP server.
// cmd/coupond is a thin shell around it, and tests boot the whole service on
// 127.0.0.1:0 with a temporary data directory.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/groupcommit"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/sms"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/postgres"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/telemetry"
	"github.com/coupond/coupond/worker"
)

// Version is set at build time with -ldflags "-X github.com/coupond/coupond/app.Version=…".
var Version = "dev"

// App is one coupond process.
type App struct {
	cfg    config.Config
	log    *slog.Logger
	stderr io.Writer

	Store      store.Store
	Engine     engine.Engine
	Bus        *bus.Bus
	Service    *service.Service
	relay      *worker.OutboxRelay
	reconciler *worker.Reconciler
	replenish  *worker.Replenisher

	ln    net.Listener
	srv   *http.Server
	debug *http.Server

	// Operations: telemetry, guards and switches (see ops.go).
	Tracing  *telemetry.Tracing // set before Run to record spans in a test; nil: from the environment
	Metrics  *telemetry.Metrics
	Switches *guard.Switches
	origins  *telemetry.Origins
	draining atomic.Bool
	// WrapStore and WrapEngine, if set before Run, wrap the opened backends
	// inside their guards: tests inject failures with them.
	WrapStore  func(store.Store) store.Store
	WrapEngine func(engine.Engine) engine.Engine

	// Redemption tunes the redemption workers (see redemption.go).
	Redemption RedemptionOptions
	redemption redemptionWorkers

	// Query tunes the stats consumer and the tagger (see query.go).
	Query QueryOptions
	query queryWorkers

	// Distribution tunes the bulk grant jobs and the trigger consumer
	// (see distribution.go).
	Distribution DistributionOptions
	distribution distributionWorkers

	// Archive tunes the archiver (see archive.go).
	Archive  ArchiveOptions
	archiver *worker.Archiver

	// SMSSender, if set before Run, sends the SMS challenges' codes instead
	// of the configured sender (tests read the codes with it).
	SMSSender sms.Sender
	access    accessParts // access.go
}

// New returns an App that Run will start. stderr receives the one line that
// shows a generated admin token.
func New(cfg config.Config, log *slog.Logger, stderr io.Writer) *App {
	return &App{cfg: cfg, log: log, stderr: stderr}
}

// Run opens the backends, loads the engine from the store, starts the
// workers and begins serving HTTP. It returns once the service accepts
// requests; Close stops it. On error everything opened is closed again.
func (a *App) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(a.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := a.setupKeyring(); err != nil { // access.go: before a missing admin token is made up
		return err
	}
	if a.cfg.AdminToken == "" {
		a.cfg.AdminToken = newToken()
		if err := a.showToken(); err != nil {
			return err
		}
	}
	if err := a.setupTelemetry(ctx); err != nil {
		return err
	}

	if a.Store, err = openStore(ctx, a.cfg, a.log); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.Store = a.guardStore(a.Store)
	if a.Engine, err = openEngine(ctx, a.cfg); err != nil {
		return fmt.Errorf("open engine: %w", err)
	}
	a.Engine = a.guardEngine(a.Engine)
	if a.cfg.Postgres.URL != "" && a.cfg.Redis.URL == "" {
		a.log.Warn("PostgreSQL without Redis: the in-memory engine serves one instance only; set COUPOND_REDIS_URL to run several")
	}
	a.Bus, err = bus.Open(ctx, bus.Config{
		URL:      a.cfg.NATS.URL,
		StoreDir: filepath.Join(a.cfg.DataDir, "nats"),
		Listen:   a.cfg.NATS.Listen,

		Stream:        a.cfg.NATS.Stream,
		SubjectPrefix: a.cfg.NATS.SubjectPrefix,
	}, a.log)
	if err != nil {
		return fmt.Errorf("open bus: %w", err)
	}
	a.relay = worker.NewOutboxRelay(worker.OutboxRelayConfig{
		Store: a.Store, Publisher: a.publisher(), Logger: a.log,
		Lease: worker.NewLease(a.Engine, "outbox-relay", 15*time.Second, a.log),
	})
	writers := a.cfg.GroupCommit.Writers
	if writers == 0 {
		writers = 1 // SQLite has one writer
		if a.cfg.Postgres.URL != "" {
			writers = 4
		}
	}
	a.Service = service.New(service.Config{
		Store:       a.Store,
		Engine:      a.Engine,
		Logger:      a.log,
		GroupCommit: groupcommit.Config{MaxBatch: a.cfg.GroupCommit.MaxBatch, Writers: writers},
		OnCommit:    a.relay.Notify,
		Redemption:  a.redemptionConfig(),
		Query:       a.queryConfig(),
		Access:      a.accessConfig(),
	})
	if err := a.Service.LoadEngine(ctx); err != nil {
		return fmt.Errorf("load engine: %w", err)
	}
	a.reconciler = worker.NewReconciler(worker.ReconcilerConfig{
		Engine: a.Engine, Store: a.Store, Batches: a.Service.EngineBatches, Sync: a.Service.SyncEngine, Logger: a.log,
		Lease:  worker.NewLease(a.Engine, "reconciler", time.Minute, a.log),
		OnPass: func(r worker.ReconcileResult, err error) { a.Metrics.ObserveReconcile(r.Settled, r.Reclaimed, err) },
	})
	a.registerStateMetrics()
	bg := context.WithoutCancel(ctx)
	if err := a.relay.Start(bg); err != nil {
		return fmt.Errorf("start outbox relay: %w", err)
	}
	if err := a.reconciler.Start(bg); err != nil {
		return fmt.Errorf("start reconciler: %w", err)
	}
	a.replenish = worker.NewReplenisher(worker.ReplenisherConfig{Service: a.Service, Logger: a.log, OnPass: a.observeReplenish})
	if err := a.replenish.Start(bg); err != nil {
		return fmt.Errorf("start replenisher: %w", err)
	}
	if err := a.startRedemption(bg); err != nil {
		return err
	}
	if err := a.startQuery(bg); err != nil {
		return err
	}
	if err := a.startDistribution(bg); err != nil {
		return err
	}
	if err := a.startAccess(ctx); err != nil {
		return err
	}
	if err := a.startArchive(bg); err != nil {
		return err
	}

	a.ln, err = net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a.srv = &http.Server{
		Handler: httpapi.New(a.apiOps(httpapi.Config{
			Service: a.Service, AdminToken: a.cfg.AdminToken, Logger: a.log, Version: Version,
			Authenticate: httpapi.Authenticator(a.Service, nil),
		})),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	// The goroutine gets its own copies: Close clears the fields, and the
	// goroutine may start only after Close when the machine is busy.
	srv, ln, log := a.srv, a.ln, a.log
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	if a.cfg.DebugAddr != "" {
		if err := a.serveDebug(); err != nil {
			return err
		}
	}
	a.log.Info("coupond serving", "addr", a.ln.Addr().String(), "data_dir", a.cfg.DataDir, "version", Version)
	return nil
}

// URL is the base URL the service listens on.
func (a *App) URL() string { return "http://" + a.ln.Addr().String() }

// AdminToken is the bearer token of /v1.
func (a *App) AdminToken() string { return a.cfg.AdminToken }

// Close shuts down in order: stop accepting and finish in-flight requests,
// write the claims still queued, relay the outbox, then close the backends.
// It is safe to call twice.
func (a *App) Close() {
	a.drain()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if a.debug != nil {
		_ = a.debug.Close()
		a.debug = nil
	}
	if a.srv != nil {
		if err := a.srv.Shutdown(ctx); err != nil {
			a.log.Warn("http shutdown", "err", err)
		}
	}
	a.stopRedemption()
	a.stopQuery()
	a.stopAccess()
	a.stopDistribution()
	a.stopArchive()
	if a.Service != nil {
		a.Service.Close()
	}
	if a.replenish != nil {
		a.replenish.Stop()
	}
	if a.reconciler != nil {
		a.reconciler.Stop()
	}
	if a.relay != nil {
		if err := a.relay.Flush(ctx); err != nil {
			a.log.Warn("outbox flush on shutdown", "err", err)
		}
		a.relay.Stop()
	}
	if a.Bus != nil {
		if err := a.Bus.Close(); err != nil {
			a.log.Warn("bus close", "err", err)
		}
	}
	if a.Engine != nil {
		_ = a.Engine.Close()
	}
	if a.Store != nil {
		if err := a.Store.Close(); err != nil {
			a.log.Warn("store close", "err", err)
		}
	}
	if err := a.Tracing.Shutdown(ctx); err != nil {
		a.log.Warn("telemetry: flushing spans on shutdown", "err", err)
	}
	a.srv, a.Service, a.relay, a.reconciler, a.replenish, a.Bus, a.Engine, a.Store = nil, nil, nil, nil, nil, nil, nil, nil
}

// serveDebug serves the profiler on its own address, never on the API's.
func (a *App) serveDebug() error {
	ln, err := net.Listen("tcp", a.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	debug := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.debug = debug
	go func() { _ = debug.Serve(ln) }()
	a.log.Info("profiler serving", "addr", ln.Addr().String())
	return nil
}

// openStore opens PostgreSQL when a URL is configured, else SQLite in the data dir.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Postgres.URL != "" {
		return postgres.Open(ctx, postgres.Config{URL: cfg.Postgres.URL, ReplicaURL: cfg.Postgres.ReplicaURL, Logger: log})
	}
	return sqlite.Open(ctx, sqlite.Config{
		Path:        filepath.Join(cfg.DataDir, "coupond.db"),
		Synchronous: cfg.SQLite.Synchronous,
		Logger:      log,
	})
}

// openEngine opens Redis when a URL is configured, else the in-memory engine.
func openEngine(ctx context.Context, cfg config.Config) (engine.Engine, error) {
	if cfg.Redis.URL != "" {
		return redis.Open(ctx, redis.Config{URL: cfg.Redis.URL, Cluster: cfg.Redis.Cluster, Prefix: cfg.Redis.Prefix})
	}
	return memory.New(), nil
}

// Migrate applies the migrations of the configured store and returns.
func Migrate(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Postgres.URL != "" {
		return postgres.Migrate(ctx, postgres.Config{URL: cfg.Postgres.URL, Logger: log})
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return sqlite.Migrate(ctx, sqlite.Config{Path: filepath.Join(cfg.DataDir, "coupond.db"), Logger: log})
}

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
