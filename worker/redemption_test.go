package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/worker"
)

type passCounter struct {
	checks, sweeps atomic.Int64
}

func (p *passCounter) CheckRedemptions(context.Context) (service.CheckResult, error) {
	p.checks.Add(1)
	return service.CheckResult{Checked: 1}, nil
}

func (p *passCounter) SweepExpiry(context.Context) (service.ExpiryResult, error) {
	p.sweeps.Add(1)
	return service.ExpiryResult{Batches: 1}, nil
}

// Of two instances sharing a lease, one reconciles and one sweeps at a
// time; when the holder stops, the other takes over.
func TestRedemptionWorkersUnderLease(t *testing.T) {
	t.Parallel()
	eng := memory.New()
	a, b := &passCounter{}, &passCounter{}
	passes := make(chan string, 1000)
	start := func(svc *passCounter, name string) (*worker.RedemptionReconciler, *worker.ExpirySweeper) {
		r := worker.NewRedemptionReconciler(worker.RedemptionReconcilerConfig{Service: svc, Interval: 5 * time.Millisecond,
			Lease:  worker.NewLease(eng, "redemption-reconciler", time.Minute, nil),
			OnPass: func(service.CheckResult, error) { passes <- name }})
		x := worker.NewExpirySweeper(worker.ExpirySweeperConfig{Service: svc, Interval: 5 * time.Millisecond,
			Lease:  worker.NewLease(eng, "expiry-sweeper", time.Minute, nil),
			OnPass: func(service.ExpiryResult, error) { passes <- name }})
		require.NoError(t, r.Start(context.Background()))
		require.NoError(t, x.Start(context.Background()))
		t.Cleanup(r.Stop)
		t.Cleanup(x.Stop)
		return r, x
	}
	ra, xa := start(a, "a")
	// a holds both leases before b starts.
	require.Eventually(t, func() bool { return a.checks.Load() > 0 && a.sweeps.Load() > 0 }, 5*time.Second, time.Millisecond)
	start(b, "b")
	for range 20 {
		require.Equal(t, "a", <-passes)
	}
	require.Zero(t, b.checks.Load())
	require.Zero(t, b.sweeps.Load())
	require.Positive(t, a.sweeps.Load())

	ra.Stop()
	xa.Stop()
	ra.Stop() // safe twice
	for len(passes) > 0 {
		<-passes
	}
	require.Equal(t, "b", <-passes, "the other instance takes over once the leases are released")
	require.Eventually(t, func() bool { return b.checks.Load() > 0 && b.sweeps.Load() > 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestRedemptionWorkersNeedAService(t *testing.T) {
	t.Parallel()
	require.Error(t, worker.NewRedemptionReconciler(worker.RedemptionReconcilerConfig{}).Start(context.Background()))
	require.Error(t, worker.NewExpirySweeper(worker.ExpirySweeperConfig{}).Start(context.Background()))
	require.Error(t, worker.NewOrderConsumer(worker.OrderConsumerConfig{}).Start(context.Background()))
}
