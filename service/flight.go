package service

import (
	"context"
	"sync"
)

// flight runs one call per key at a time in this process: a caller that
// comes while a call for its key runs waits for that call and shares its
// outcome. It keeps loads, generations and replenishments of one batch from
// being done twice at once by one instance; across instances the engine's
// leases and the store's conditions do that.
type flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*flightCall[T]
}

type flightCall[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do runs fn for key, or waits for the call for key already running and
// returns its outcome with shared set. A waiter whose ctx ends stops
// waiting; the call goes on.
func (f *flight[T]) do(ctx context.Context, key string, fn func() (T, error)) (val T, shared bool, err error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.val, true, c.err
		case <-ctx.Done():
			return val, true, ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = make(map[string]*flightCall[T])
	}
	c := &flightCall[T]{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, false, c.err
}
