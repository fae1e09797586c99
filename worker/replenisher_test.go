package worker_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store/sqlite"
	"github.com/coupond/coupond/worker"
)

// fakeReplenishable answers from its fields and records the calls.
type fakeReplenishable struct {
	mu      sync.Mutex
	ids     []string
	listErr error
	results map[string]service.ReplenishResult
	errs    map[string]error
	calls   []string
	block   bool // Replenish waits for its context to end
}

func (f *fakeReplenishable) BatchesToReplenish(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ids, f.listErr
}

func (f *fakeReplenishable) Replenish(ctx context.Context, id string) (service.ReplenishResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, id)
	block := f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return service.ReplenishResult{}, ctx.Err()
	}
	return f.results[id], f.errs[id]
}

func TestReplenisherPassSumsAndGoesOnAfterAFailure(t *testing.T) {
	t.Parallel()
	broken := errors.New("store away")
	f := &fakeReplenishable{
		ids: []string{"a", "b", "c"},
		results: map[string]service.ReplenishResult{
			"a": {Generated: 100, Loaded: 100},
			"b": {Loaded: 7},
			"c": {Busy: true},
		},
		errs:    map[string]error{"b": broken},
		listErr: errors.New("one batch's stats failed"),
	}
	r := worker.NewReplenisher(worker.ReplenisherConfig{Service: f})
	pass, err := r.Pass(context.Background())
	require.ErrorIs(t, err, broken)
	require.ErrorIs(t, err, f.listErr, "a listing error is reported, the batches it did list replenished")
	require.Equal(t, worker.ReplenishPass{Batches: 3, Busy: 1, Generated: 100, Loaded: 107}, pass)
	require.Equal(t, []string{"a", "b", "c"}, f.calls)
}

func TestReplenisherStartStop(t *testing.T) {
	t.Parallel()
	require.Error(t, worker.NewReplenisher(worker.ReplenisherConfig{}).Start(context.Background()), "no service")

	// Stop interrupts a pass under way.
	f := &fakeReplenishable{ids: []string{"slow"}, block: true}
	entered := make(chan struct{}, 1)
	r := worker.NewReplenisher(worker.ReplenisherConfig{Service: f, OnPass: func(worker.ReplenishPass, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
	}})
	r.Stop() // before Start
	require.NoError(t, r.Start(context.Background()))
	poll(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.calls) > 0
	})
	stopped := make(chan struct{})
	go func() {
		r.Stop()
		close(stopped)
	}()
	receive(t, stopped)
	receive(t, entered)
	r.Stop()
}

// The replenisher tops up an incremental batch's pool that claims took
// below its low-water mark, without any claim asking for it.
func TestReplenisherKeepsAPoolAboveLowWater(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "c.db"), Synchronous: "normal"})
	require.NoError(t, err)
	svc := service.New(service.Config{Store: st, Engine: memory.New()})
	t.Cleanup(func() {
		svc.Close()
		_ = st.Close()
	})
	b, err := svc.CreateBatch(ctx, coupon.BatchSpec{
		Name: "r", TotalQuantity: 2000, Validity: coupon.Validity{Days: 1},
		Amount:       coupon.AmountSpec{Type: coupon.AmountFixed, Value: 10},
		BatchOptions: coupon.BatchOptions{Generation: coupon.Generation{Mode: coupon.GenerationIncremental, Chunk: 100, LowWater: 50}},
	})
	require.NoError(t, err)
	_, err = svc.Transition(ctx, b.ID, coupon.Publish)
	require.NoError(t, err)
	for i := range 60 {
		_, _, err := svc.Claim(ctx, service.ClaimRequest{BatchID: b.ID, Claimant: coupon.Claimant{UserID: fmt.Sprintf("u%d", i)}})
		require.NoError(t, err)
	}

	passes := make(chan worker.ReplenishPass, 100)
	r := worker.NewReplenisher(worker.ReplenisherConfig{Service: svc, Interval: 5 * time.Millisecond,
		OnPass: func(p worker.ReplenishPass, err error) {
			if err != nil {
				t.Errorf("pass: %v", err)
			}
			select {
			case passes <- p:
			default:
			}
		}})
	require.NoError(t, r.Start(ctx))
	t.Cleanup(r.Stop)
	var done worker.ReplenishPass
	deadline := time.After(waitTimeout)
	for done.Generated < 100 {
		select {
		case p := <-passes:
			done.Generated += p.Generated
			done.Loaded += p.Loaded
		case <-deadline:
			t.Fatal("the replenisher did not top the pool up")
		}
	}
	require.Equal(t, worker.ReplenishPass{Generated: 100, Loaded: 100}, done)
	v, err := svc.GetBatch(ctx, b.ID)
	require.NoError(t, err)
	require.EqualValues(t, 200, v.GeneratedCount)
	require.EqualValues(t, 140, v.PoolDepth)
	require.EqualValues(t, 200, v.LoadedSeq)
	// Above the mark, later passes find nothing to do.
	for range 3 {
		p := <-passes
		require.Equal(t, worker.ReplenishPass{}, p)
	}
}
