package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/store"
)

// ArchiveService is what the archiver asks of the service.
type ArchiveService interface {
	ArchiveClaims(ctx context.Context, before time.Time, limit int) (store.ArchiveResult, error)
	PruneArchive(ctx context.Context, before time.Time, limit int) (int, error)
	MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error)
}

// Defaults of ArchiverConfig.
const (
	DefaultArchiveInterval = time.Minute
	DefaultArchiveBatch    = 500
	DefaultArchivePause    = 50 * time.Millisecond
	DefaultArchiveChunks   = 200
	DefaultPartitionsAhead = 3
)

// ArchiverConfig configures an Archiver. Service is required.
type ArchiverConfig struct {
	Service ArchiveService
	// After is the age at which settled claims leave the hot table; 0
	// archives nothing (partitions and retention are still kept).
	After time.Duration
	// Retention is the age at which archived claims are deleted; 0 keeps
	// them forever.
	Retention time.Duration
	// Batch is the claims moved per transaction (default 500): small, so
	// that each transaction is as short as a few group commits.
	Batch int
	// Pause between two chunks of a pass (default 50ms), so that the claim
	// path's writes are never queued behind a run of archive transactions.
	Pause time.Duration
	// Chunks bounds one pass (default 200 chunks), so a large backlog is
	// worked off across passes and the lease is renewed in between.
	Chunks int
	// Ahead is how many months of partitions exist ahead of the current
	// one (default 3); only stores with a partitioned archive use it.
	Ahead    int
	Interval time.Duration // between passes; default 1m
	Lease    *Lease        // one instance archives at a time
	Now      func() time.Time
	Logger   *slog.Logger
	// OnPass, if set, is called after every pass (a test hook).
	OnPass func(ArchivePass, error)
}

// ArchivePass is what one pass did.
type ArchivePass struct {
	Moved      int
	CaughtUp   bool // the last chunk came back short: nothing was left to move
	Pruned     int
	Partitions store.PartitionReport
}

// Archiver moves settled claims from the hot table to the archive, keeps
// the archive's monthly partitions ahead of time (PostgreSQL) and applies
// the retention. Archival is resumable by construction: each chunk is its
// own transaction and the next picks up whatever is still hot.
type Archiver struct {
	cfg ArchiverConfig
	log *slog.Logger
	ss  startstop

	moved    atomic.Int64
	mu       sync.Mutex
	caughtUp time.Time // when a pass last found nothing more to move
	behind   bool
}

// NewArchiver returns an Archiver; Start runs it.
func NewArchiver(cfg ArchiverConfig) *Archiver {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultArchiveBatch
	}
	if cfg.Pause <= 0 {
		cfg.Pause = DefaultArchivePause
	}
	if cfg.Chunks <= 0 {
		cfg.Chunks = DefaultArchiveChunks
	}
	if cfg.Ahead <= 0 {
		cfg.Ahead = DefaultPartitionsAhead
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultArchiveInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Archiver{cfg: cfg, log: cfg.Logger.With("worker", "archiver"), caughtUp: cfg.Now()}
}

// Start runs the archiver's loop until Stop or the end of ctx.
func (a *Archiver) Start(ctx context.Context) error {
	if a.cfg.Service == nil {
		return errors.New("worker: the archiver needs a service")
	}
	return a.ss.start(ctx, a.run)
}

// Stop finishes the current chunk and returns; safe twice.
func (a *Archiver) Stop() { a.ss.stopAndWait() }

// Moved is how many claims this archiver has moved (the metric
// coupond_archive_claims_moved_total).
func (a *Archiver) Moved() int64 { return a.moved.Load() }

// Lag is how long archival has been behind: 0 after a pass that moved all
// that was due, else the time since the last such pass (the metric
// coupond_archive_lag_seconds). An instance that does not hold the lease
// reports 0.
func (a *Archiver) Lag() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.behind {
		return 0
	}
	return a.cfg.Now().Sub(a.caughtUp)
}

func (a *Archiver) run(ctx context.Context, stop <-chan struct{}) {
	defer a.cfg.Lease.Release(context.WithoutCancel(ctx))
	for {
		if a.cfg.Lease.Hold(ctx) {
			res, err := a.pass(ctx, stop)
			if err != nil && ctx.Err() == nil {
				a.log.Error("archive pass failed; will retry", "err", err)
			}
			if res.Moved > 0 || res.Pruned > 0 || len(res.Partitions.Created)+len(res.Partitions.Dropped) > 0 {
				a.log.Info("archive pass", "moved", res.Moved, "caught_up", res.CaughtUp, "pruned", res.Pruned,
					"partitions_created", res.Partitions.Created, "partitions_dropped", res.Partitions.Dropped)
			}
			if a.cfg.OnPass != nil {
				a.cfg.OnPass(res, err)
			}
		} else {
			a.mu.Lock()
			a.behind = false
			a.mu.Unlock()
		}
		if !sleep(ctx, stop, nil, a.cfg.Interval) {
			return
		}
	}
}

// Pass runs one pass: partitions, then archival, then retention.
func (a *Archiver) Pass(ctx context.Context) (ArchivePass, error) { return a.pass(ctx, nil) }

func (a *Archiver) pass(ctx context.Context, stop <-chan struct{}) (ArchivePass, error) {
	var res ArchivePass
	var errs []error
	now := a.cfg.Now().UTC()
	mp := store.MaintainPartitions{Now: now, Ahead: a.cfg.Ahead}
	if a.cfg.After > 0 {
		// Months whose claims are about to be archived get partitions too.
		mp.From = now.Add(-a.cfg.After).AddDate(0, -1, 0)
	}
	if a.cfg.Retention > 0 {
		mp.DropBefore = now.Add(-a.cfg.Retention)
	}
	var err error
	res.Partitions, err = a.cfg.Service.MaintainPartitions(ctx, mp)
	if err != nil && !errors.Is(err, store.ErrNoArchive) { // SQLite: no partitions
		errs = append(errs, err)
	}

	if a.cfg.After > 0 {
		before := now.Add(-a.cfg.After)
		for i := 0; i < a.cfg.Chunks; i++ {
			r, err := a.cfg.Service.ArchiveClaims(ctx, before, a.cfg.Batch)
			if err != nil {
				errs = append(errs, err)
				break
			}
			res.Moved += r.Moved
			a.moved.Add(int64(r.Moved))
			if r.Moved < a.cfg.Batch {
				res.CaughtUp = true
				break
			}
			if stop != nil && isClosed(stop) || !sleep(ctx, stop, nil, a.cfg.Pause) {
				break
			}
		}
	}
	a.mu.Lock()
	switch {
	case a.cfg.After == 0 || res.CaughtUp:
		a.caughtUp, a.behind = a.cfg.Now(), false
	default:
		a.behind = true
	}
	a.mu.Unlock()

	if a.cfg.Retention > 0 {
		before := now.Add(-a.cfg.Retention)
		for i := 0; i < a.cfg.Chunks; i++ {
			n, err := a.cfg.Service.PruneArchive(ctx, before, a.cfg.Batch)
			if err != nil {
				errs = append(errs, err)
				break
			}
			res.Pruned += n
			if n < a.cfg.Batch {
				break
			}
		}
	}
	return res, errors.Join(errs...)
}
