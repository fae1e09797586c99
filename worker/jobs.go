package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/service"
)

// Jobs is what the job runner asks of the service.
type Jobs interface {
	PendingJobs(ctx context.Context) ([]string, error)
	RunJob(ctx context.Context, id string, lease service.JobLease) (*service.JobView, error)
}

var (
	_ Jobs   = (*service.Service)(nil)
	_ Worker = (*JobRunner)(nil)
)

// Defaults of JobRunnerConfig.
const (
	DefaultJobInterval = time.Second
	DefaultJobLease    = 30 * time.Second
)

// JobRunnerConfig configures a JobRunner. Service and Locker are required.
type JobRunnerConfig struct {
	Service Jobs
	Locker  engine.Locker
	Logger  *slog.Logger
	// Interval between looks for pending jobs; default 1s. Wake cuts it short.
	Interval time.Duration
	// Lease is the time to live of the lease job:<id> a runner holds while
	// it runs a job, renewed after every step; when the runner dies, another
	// instance takes the job over within it. Default 30s.
	Lease time.Duration
	// Wake, if set, starts a pass at once (a job was just queued).
	Wake <-chan struct{}
	// OnJob, if set, is called after each run of a job with how it left
	// it (a test hook; it runs on the runner's goroutine).
	OnJob func(id string, v *service.JobView, err error)
}

// JobRunner runs the pending bulk grant jobs. It runs on every instance; a
// job is run by the instance that holds its lease job:<id>, so a job whose
// runner died (its lease expired) is resumed by another, after the last
// step the dead one recorded.
type JobRunner struct {
	cfg JobRunnerConfig
	log *slog.Logger
	ss  startstop
}

// NewJobRunner returns a JobRunner; Start runs it.
func NewJobRunner(cfg JobRunnerConfig) *JobRunner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultJobInterval
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultJobLease
	}
	return &JobRunner{cfg: cfg, log: cfg.Logger.With("worker", "jobs")}
}

// Start runs the loop until Stop or the end of ctx.
func (r *JobRunner) Start(ctx context.Context) error {
	if r.cfg.Service == nil || r.cfg.Locker == nil {
		return errors.New("worker: the job runner needs a service and a locker")
	}
	return r.ss.start(ctx, r.run)
}

// Stop cancels the step under way (its grants stand, its record does not:
// the next runner grants the step again, and the idempotency keys return
// the same claims) and returns when the loop has; safe twice.
func (r *JobRunner) Stop() { r.ss.stopAndWait() }

func (r *JobRunner) run(ctx context.Context, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("job pass failed; will retry", "err", err)
		}
		if !sleep(ctx, stop, r.cfg.Wake, r.cfg.Interval) {
			return
		}
	}
}

// Pass runs each pending job whose lease it can take, one after the other.
func (r *JobRunner) Pass(ctx context.Context) error {
	ids, err := r.cfg.Service.PendingJobs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		l := NewLease(r.cfg.Locker, "job:"+id, r.cfg.Lease, r.log)
		if !l.Hold(ctx) {
			continue // another instance runs it
		}
		v, err := r.cfg.Service.RunJob(ctx, id, jobLease{l})
		// Stopped mid-job or done, it gives the lease up so another
		// instance may take the job at once; one that crashed cannot, and
		// its lease expires.
		l.Release(context.WithoutCancel(ctx))
		if err != nil && ctx.Err() == nil {
			r.log.Warn("job run failed; will retry", "job", id, "err", err)
			errs = append(errs, err)
		}
		if r.cfg.OnJob != nil {
			r.cfg.OnJob(id, v, err)
		}
	}
	return errors.Join(errs...)
}

// jobLease renews a worker Lease for the service.
type jobLease struct{ l *Lease }

func (j jobLease) Extend(ctx context.Context) (bool, error) { return j.l.Hold(ctx), nil }
