package app

import (
	"context"
	"fmt"
	"time"

	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/worker"
)

// DistributionOptions tune the workers of passive distribution; the zero
// value is the production default.
type DistributionOptions struct {
	// JobLease is the time to live of a bulk grant job's lease: after a
	// crash another instance resumes the job within it. Default 30s.
	JobLease time.Duration
	// JobInterval between looks for queued jobs; default 1s.
	JobInterval time.Duration
	// OnJob, if set, is called after each run of a job (a test hook).
	OnJob func(id string, v *service.JobView, err error)
	// TriggerRefresh is how often the trigger subjects of the active
	// batches are read again; default 5s.
	TriggerRefresh time.Duration
	// OnTriggerEvent, if set, is called after each trigger event (a test hook).
	OnTriggerEvent func(subject, id string, out []service.TriggerOutcome, err error)
}

// distributionWorkers run bulk grant jobs and event-triggered grants.
type distributionWorkers struct {
	jobs     *worker.JobRunner
	triggers *worker.TriggerConsumer
}

// startDistribution starts the job runner and the trigger consumer; both
// run on every instance (a job's lease, and the durable consumers that the
// instances share, keep each job step and each event to one of them).
func (a *App) startDistribution(ctx context.Context) error {
	o, w := a.Distribution, &a.distribution
	w.jobs = worker.NewJobRunner(worker.JobRunnerConfig{
		Service: a.Service, Locker: a.Engine, Logger: a.log,
		Interval: o.JobInterval, Lease: o.JobLease, OnJob: o.OnJob,
	})
	w.triggers = worker.NewTriggerConsumer(worker.TriggerConsumerConfig{
		JetStream: a.Bus.JetStream(), Service: a.Service, Logger: a.log,
		Refresh: o.TriggerRefresh, OnEvent: o.OnTriggerEvent,
	})
	for _, s := range []worker.Worker{w.jobs, w.triggers} {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("start distribution workers: %w", err)
		}
	}
	return nil
}

// stopDistribution stops them; safe twice and before start. A job stopped
// mid-step is resumed (by this instance's next start, or another) after
// its last recorded step.
func (a *App) stopDistribution() {
	w := &a.distribution
	if w.jobs != nil {
		w.jobs.Stop()
	}
	if w.triggers != nil {
		w.triggers.Stop()
	}
}
