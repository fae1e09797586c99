// Package groupcommit gathers concurrent writes into groups so that many
// callers share one transaction. Each caller waits for its own item's
// outcome; a group starts as soon as a writer is free, so a lone caller
// waits for nobody and a crowd fills large groups on its own.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("groupcommit: closed")

// FlushFunc writes a group and returns one outcome per item, in order.
type FlushFunc[T any] func(ctx context.Context, items []T) []error

// Config tunes a Committer.
type Config struct {
	// MaxBatch is the most items in one group; 1 turns grouping off.
	// Default 256.
	MaxBatch int
	// Writers is the number of groups written at once. Default 1, which is
	// what SQLite's single writer wants.
	Writers int
	// Timeout bounds one flush. Default 10s.
	Timeout time.Duration
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.Writers <= 0 {
		c.Writers = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// Committer groups items for a FlushFunc.
type Committer[T any] struct {
	cfg   Config
	flush FlushFunc[T]
	queue chan *request[T]
	pool  sync.Pool

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	wg     sync.WaitGroup
}

type request[T any] struct {
	item T
	done chan error
}

// New starts a Committer with cfg.Writers writers.
func New[T any](cfg Config, flush FlushFunc[T]) *Committer[T] {
	cfg.defaults()
	c := &Committer[T]{
		cfg:   cfg,
		flush: flush,
		queue: make(chan *request[T], cfg.MaxBatch*cfg.Writers*4),
	}
	c.pool.New = func() any { return &request[T]{done: make(chan error, 1)} }
	for range cfg.Writers {
		c.wg.Add(1)
		go c.write()
	}
	return c
}

// Do queues item and waits until its group is written. Once queued the item
// is written whatever ctx does, and Do returns its real outcome: a caller
// must know whether its write happened. ctx only bounds the wait to queue.
func (c *Committer[T]) Do(ctx context.Context, item T) error {
	r := c.pool.Get().(*request[T])
	r.item = item
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		c.pool.Put(r)
		return ErrClosed
	}
	select {
	case c.queue <- r:
	case <-ctx.Done():
		c.mu.RUnlock()
		c.pool.Put(r)
		return ctx.Err()
	}
	c.mu.RUnlock()
	err := <-r.done
	var zero T
	r.item = zero
	c.pool.Put(r)
	return err
}

// Close stops accepting items, writes every queued one and waits for the
// writers. It is safe to call twice.
func (c *Committer[T]) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *Committer[T]) write() {
	defer c.wg.Done()
	group := make([]*request[T], 0, c.cfg.MaxBatch)
	items := make([]T, 0, c.cfg.MaxBatch)
	for {
		r, ok := <-c.queue
		if !ok {
			return
		}
		group = append(group[:0], r)
	fill:
		for len(group) < c.cfg.MaxBatch {
			select {
			case r, ok := <-c.queue:
				if !ok {
					break fill
				}
				group = append(group, r)
			default:
				break fill
			}
		}
		items = items[:0]
		for _, r := range group {
			items = append(items, r.item)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		errs := c.flush(ctx, items)
		cancel()
		for i, r := range group {
			var err error
			if i < len(errs) {
				err = errs[i]
			} else {
				err = errors.New("groupcommit: flush returned too few outcomes")
			}
			r.done <- err
		}
		clear(items)
	}
}
