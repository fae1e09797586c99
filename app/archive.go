package app

import (
	"context"
	"fmt"
	"time"

	"github.com/coupond/coupond/worker"
)

// ArchiveOptions tunes the archiver (tests set them before Run).
type ArchiveOptions struct {
	Now      func() time.Time // the archiver's clock; default time.Now
	Interval time.Duration    // between passes; default 1m
	OnPass   func(worker.ArchivePass, error)
}

// startArchive starts the archiver — archival, partitions and retentions —
// under the engine lease "archiver" and registers its metrics: claims
// moved, and how long archival has been behind.
func (a *App) startArchive(ctx context.Context) error {
	a.archiver = worker.NewArchiver(worker.ArchiverConfig{
		Service: a.Service, After: a.cfg.Archive.After, Retention: a.cfg.Archive.Retention, Batch: a.cfg.Archive.Batch,
		OutboxRetention: a.cfg.Archive.OutboxRetention, EventsRetention: a.cfg.Archive.StatsDedupeWindow,
		Lease:  worker.NewLease(a.Engine, "archiver", 5*time.Minute, a.log),
		Logger: a.log, Now: a.Archive.Now, Interval: a.Archive.Interval, OnPass: a.Archive.OnPass,
	})
	if err := a.archiver.Start(ctx); err != nil {
		return fmt.Errorf("start archiver: %w", err)
	}
	w := a.archiver
	a.Metrics.CounterFunc("coupond_archive_claims_moved_total", "Settled claims this instance moved from the hot table to the archive.",
		func() float64 { return float64(w.Moved()) })
	a.Metrics.GaugeFunc("coupond_archive_lag_seconds", "How long archival has been behind (0: the last pass moved every claim due).",
		func() float64 { return w.Lag().Seconds() })
	return nil
}

func (a *App) stopArchive() {
	if a.archiver != nil {
		a.archiver.Stop()
	}
}
