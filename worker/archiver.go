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
	// ArchiveRedemptions answers store.ErrNoArchive when the store keeps
	// every redemption in its tables (SQLite).
	ArchiveRedemptions(ctx context.Context, before time.Time, limit int) (int, error)
	PruneArchive(ctx context.Context, before time.Time, limit int) (int, error)
	PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error)
	// MaintainPartitions answers store.ErrNoArchive when the store
	// partitions nothing (SQLite).
	MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error)
}

// Defaults of ArchiverConfig.
const (
	DefaultArchiveInterval = time.Minute
	DefaultArchiveBatch    = 500
	DefaultArchivePause    = 50 * time.Millisecond
	DefaultArchiveChunks   = 200
	DefaultPartitionsAhead = 3
	DefaultDaysAhead       = 7
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
	Ahead int
	// OutboxRetention is how long published events stay in the outbox; 0
	// keeps them forever. An event not yet published is never deleted
	// (PostgreSQL: its day's partition is kept until it is published).
	OutboxRetention time.Duration
	// EventsRetention is the statistics' dedupe window: how long the
	// record of a counted event is kept after it was counted (PostgreSQL:
	// the daily partitions of the record; SQLite's record is pruned by the
	// stats consumer). 0 keeps the partitions forever.
	EventsRetention time.Duration
	// DaysAhead is how many days of outbox and counted-events partitions
	// exist ahead of the current one (default 7): a week without a
	// maintenance pass still finds its partitions made.
	DaysAhead int
	Interval  time.Duration // between passes; default 1m
	Lease     *Lease        // one instance archives at a time
	Now       func() time.Time
	Logger    *slog.Logger
	// OnPass, if set, is called after every pass (a test hook).
	OnPass func(ArchivePass, error)
}

// ArchivePass is what one pass did.
type ArchivePass struct {
	Moved            int
	CaughtUp         bool // the last chunk of claims came back short: nothing was left to move
	RedemptionsMoved int
	Pruned           int // archived claims (and redemptions) deleted by the retention
	OutboxPruned     int // published events deleted by the outbox's retention
	Partitions       store.PartitionReport
}

// Archiver moves settled claims (and, on PostgreSQL, settled redemptions)
// from the hot tables to the archive, keeps the partitions of the archives
// (monthly), of the outbox and of the record of counted events (daily)
// ahead of time on PostgreSQL, and applies the retentions: archived data,
// published events, the statistics' dedupe record. Archival is resumable by
// construction: each chunk is its own transaction and the next picks up
// whatever is still hot.
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
	if cfg.DaysAhead <= 0 {
		cfg.DaysAhead = DefaultDaysAhead
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
			if res.Moved > 0 || res.RedemptionsMoved > 0 || res.Pruned > 0 || res.OutboxPruned > 0 ||
				len(res.Partitions.Created)+len(res.Partitions.Dropped) > 0 {
				a.log.Info("archive pass", "moved", res.Moved, "caught_up", res.CaughtUp,
					"redemptions_moved", res.RedemptionsMoved, "pruned", res.Pruned, "outbox_pruned", res.OutboxPruned,
					"partitions_created", res.Partitions.Created, "partitions_dropped", res.Partitions.Dropped,
					"partitions_kept", res.Partitions.Kept)
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
	mp := store.MaintainPartitions{Now: now, Ahead: a.cfg.Ahead, DaysAhead: a.cfg.DaysAhead}
	if a.cfg.After > 0 {
		// Months whose claims are about to be archived get partitions too.
		mp.From = now.Add(-a.cfg.After).AddDate(0, -1, 0)
	}
	if a.cfg.Retention > 0 {
		mp.DropBefore = now.Add(-a.cfg.Retention)
	}
	if a.cfg.OutboxRetention > 0 {
		mp.OutboxDropBefore = now.Add(-a.cfg.OutboxRetention)
	}
	if a.cfg.EventsRetention > 0 {
		mp.EventsDropBefore = now.Add(-a.cfg.EventsRetention)
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
	if a.cfg.After > 0 {
		n, err := a.chunks(ctx, stop, func() (int, error) {
			return a.cfg.Service.ArchiveRedemptions(ctx, now.Add(-a.cfg.After), a.cfg.Batch)
		})
		res.RedemptionsMoved = n
		if err != nil && !errors.Is(err, store.ErrNoArchive) { // SQLite: redemptions stay
			errs = append(errs, err)
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
		n, err := a.chunks(ctx, stop, func() (int, error) {
			return a.cfg.Service.PruneArchive(ctx, now.Add(-a.cfg.Retention), a.cfg.Batch)
		})
		res.Pruned = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if a.cfg.OutboxRetention > 0 {
		n, err := a.chunks(ctx, stop, func() (int, error) {
			return a.cfg.Service.PruneOutbox(ctx, now.Add(-a.cfg.OutboxRetention), a.cfg.Batch)
		})
		res.OutboxPruned = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// chunks calls chunk until it returns fewer than a batch, fails, or the
// pass's bound of chunks is reached, pausing between chunks when stop is
// set (the loop's passes, so that the claim path's writes — SQLite's one
// writer above all — never queue behind a run of them; a direct Pass runs
// them back to back), and returns the sum.
func (a *Archiver) chunks(ctx context.Context, stop <-chan struct{}, chunk func() (int, error)) (int, error) {
	total := 0
	for i := 0; i < a.cfg.Chunks; i++ {
		n, err := chunk()
		total += n
		if err != nil || n < a.cfg.Batch {
			return total, err
		}
		if stop != nil && (isClosed(stop) || !sleep(ctx, stop, nil, a.cfg.Pause)) {
			break
		}
	}
	return total, nil
}
