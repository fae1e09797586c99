// Package worker holds coupond's background loops: the outbox relay, and
// later the replenisher, reconciler, expiry sweeper and others. Each is a
// start/stop service: Start(ctx) runs its loop in a goroutine, Stop asks it
// to finish what it is doing and waits. A loop logs an error and goes on; a
// worker's config takes a test hook so that tests wait on events, not time.
package worker

import (
	"context"
	"sync"
	"time"
)

// Worker is a background loop the application starts and stops.
type Worker interface {
	// Start runs the loop until Stop is called or ctx ends. It returns an
	// error only for a worker that cannot run (bad configuration, ctx
	// already done); starting a running worker does nothing.
	Start(ctx context.Context) error
	// Stop lets the loop finish its current unit of work and waits for it
	// to return. It is safe to call more than once, and before Start.
	Stop()
}

// startstop runs one loop at a time in a goroutine and stops it. The zero
// value is ready to use; a stopped worker can be started again.
type startstop struct {
	mu   sync.Mutex
	stop chan struct{} // closed to ask the loop to return; nil once asked
	done chan struct{} // closed when the loop has returned; nil before the first start
}

// start runs loop in a goroutine unless one is running. The loop must
// return soon after stop is closed or ctx ends.
func (s *startstop) start(ctx context.Context, loop func(ctx context.Context, stop <-chan struct{})) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		s.mu.Lock()
		if s.done == nil || isClosed(s.done) {
			break
		}
		if s.stop != nil {
			s.mu.Unlock()
			return nil // running
		}
		// Stopping: let that finish, then start afresh.
		done := s.done
		s.mu.Unlock()
		<-done
	}
	defer s.mu.Unlock()
	stop, done := make(chan struct{}), make(chan struct{})
	s.stop, s.done = stop, done
	go func() {
		defer close(done)
		loop(ctx, stop)
	}()
	return nil
}

// stopAndWait asks the loop to return and waits until it has.
func (s *startstop) stopAndWait() {
	s.mu.Lock()
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	done := s.done
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// sleep waits for d, or until wake fires (a nil wake never does). It
// reports false if stop or ctx cut the wait short: the loop should return.
func sleep(ctx context.Context, stop, wake <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// backoff returns the wait before retry number attempt (1, 2, …): first,
// doubling each time, at most limit.
func backoff(attempt int, first, limit time.Duration) time.Duration {
	d := first
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
