package service_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/service"
)

// downEngine refuses SetBatch while down, as an engine that is unreachable.
type downEngine struct {
	engine.Engine
	down atomic.Bool
}

func (d *downEngine) SetBatch(ctx context.Context, s engine.BatchState) error {
	if d.down.Load() {
		return errors.New("engine unreachable")
	}
	return d.Engine.SetBatch(ctx, s)
}

// A pause made while the engine could not hear it reaches the engine on the
// next sync: the engine stops handing out codes for the batch.
func TestPauseMadeWhileTheEngineWasDownReachesItOnSync(t *testing.T) {
	t.Parallel()
	var de *downEngine
	e := setupTuned(t, func(c *service.Config) {
		de = &downEngine{Engine: c.Engine}
		c.Engine = de
	})
	ctx := context.Background()
	b := e.publish(t, spec(10, 5))
	de.down.Store(true)
	if _, err := e.svc.Transition(ctx, b.ID, coupon.Pause); err != nil {
		t.Fatalf("pause: %v", err) // the store holds the pause; the engine update is logged
	}
	// Another instance whose cache still says active would reach the engine:
	if _, err := e.engine.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "x", ClaimID: coupon.NewID(e.clock.Now()), At: e.clock.Now()}); err != nil {
		t.Fatalf("before the sync the engine still hands out codes: %v (the test's premise)", err)
	}
	de.down.Store(false)
	if err := e.svc.SyncEngine(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.engine.Claim(ctx, engine.ClaimParams{BatchID: b.ID, UserID: "y", ClaimID: coupon.NewID(e.clock.Now()), At: e.clock.Now()})
	if !errors.Is(err, engine.ErrNotClaimable) {
		t.Fatalf("after the sync: %v, want not claimable", err)
	}
}
