package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEachCallerGetsItsOwnOutcome(t *testing.T) {
	t.Parallel()
	var groups, maxGroup atomic.Int64
	c := New(Config{MaxBatch: 64}, func(_ context.Context, items []int) []error {
		groups.Add(1)
		if n := int64(len(items)); n > maxGroup.Load() {
			maxGroup.Store(n)
		}
		time.Sleep(time.Millisecond) // a write takes time, so a crowd forms
		errs := make([]error, len(items))
		for i, v := range items {
			if v%3 == 0 {
				errs[i] = fmt.Errorf("item %d refused", v)
			}
		}
		return errs
	})
	defer c.Close()

	const n = 2000
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Do(context.Background(), i)
			want := i%3 == 0
			if (err != nil) != want {
				t.Errorf("item %d: err = %v, want failure %v", i, err, want)
			}
			if err != nil {
				if err.Error() != fmt.Sprintf("item %d refused", i) {
					t.Errorf("item %d got another item's outcome: %v", i, err)
				}
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got, want := failed.Load(), int64((n+2)/3); got != want {
		t.Fatalf("failed = %d, want %d", got, want)
	}
	if groups.Load() >= n/2 {
		t.Fatalf("%d flushes for %d items: no grouping happened", groups.Load(), n)
	}
	if maxGroup.Load() > 64 {
		t.Fatalf("a group of %d passed MaxBatch 64", maxGroup.Load())
	}
}

func TestMaxBatchOneWritesAlone(t *testing.T) {
	t.Parallel()
	c := New(Config{MaxBatch: 1, Writers: 2}, func(_ context.Context, items []int) []error {
		if len(items) != 1 {
			t.Errorf("group of %d with MaxBatch 1", len(items))
		}
		return make([]error, len(items))
	})
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Do(context.Background(), i) }()
	}
	wg.Wait()
}

func TestCloseWritesQueuedItemsAndRefusesNewOnes(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	release := make(chan struct{})
	c := New(Config{MaxBatch: 8}, func(_ context.Context, items []int) []error {
		<-release
		written.Add(int64(len(items)))
		return make([]error, len(items))
	})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Do(context.Background(), i) == nil {
				ok.Add(1)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the callers queue up
	close(release)
	c.Close()
	c.Close()
	wg.Wait()
	if written.Load() != ok.Load() {
		t.Fatalf("written %d, acknowledged %d", written.Load(), ok.Load())
	}
	if err := c.Do(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v, want ErrClosed", err)
	}
}

func TestCancelledContextBeforeQueueingWritesNothing(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	var written atomic.Int64
	c := New(Config{MaxBatch: 1}, func(_ context.Context, items []int) []error {
		<-block
		written.Add(int64(len(items)))
		return make([]error, len(items))
	})
	// Fill the writer and the queue so the next Do must wait to queue.
	go func() { _ = c.Do(context.Background(), 0) }()
	for i := 1; i <= cap(c.queue); i++ {
		go func() { _ = c.Do(context.Background(), i) }()
	}
	for len(c.queue) < cap(c.queue) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Do(ctx, 99); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want context.Canceled", err)
	}
	close(block)
	c.Close()
	if w := written.Load(); w != int64(cap(c.queue))+1 {
		t.Fatalf("written %d, want %d (the cancelled item must not be written)", w, cap(c.queue)+1)
	}
}
