package memory

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coupond/coupond/engine"
)

// delayQueues holds the delay queues: per queue, a min-heap of jobs by due
// time and an index of the jobs by id, under one mutex.
type delayQueues struct {
	mu sync.Mutex
	m  map[string]*delayQueue
}

type delayQueue struct {
	jobs  jobHeap
	index map[string]*delayJob
}

type delayJob struct {
	id  string
	due int64 // milliseconds, the Redis engine's precision
	pos int   // in the heap
}

func (q *delayQueues) queue(name string) *delayQueue {
	if q.m == nil {
		q.m = make(map[string]*delayQueue)
	}
	dq := q.m[name]
	if dq == nil {
		dq = &delayQueue{index: make(map[string]*delayJob)}
		q.m[name] = dq
	}
	return dq
}

// Schedule adds the job, or moves it to at.
func (e *Engine) Schedule(_ context.Context, queue, id string, at time.Time) error {
	q := &e.delay
	q.mu.Lock()
	defer q.mu.Unlock()
	dq := q.queue(queue)
	if j := dq.index[id]; j != nil {
		j.due = at.UnixMilli()
		heap.Fix(&dq.jobs, j.pos)
		return nil
	}
	j := &delayJob{id: id, due: at.UnixMilli()}
	dq.index[id] = j
	heap.Push(&dq.jobs, j)
	return nil
}

// Unschedule removes the job.
func (e *Engine) Unschedule(_ context.Context, queue, id string) error {
	q := &e.delay
	q.mu.Lock()
	defer q.mu.Unlock()
	dq := q.queue(queue)
	if j := dq.index[id]; j != nil {
		heap.Remove(&dq.jobs, j.pos)
		delete(dq.index, id)
	}
	return nil
}

// Take hands out the due jobs, soonest first, leasing each.
func (e *Engine) Take(_ context.Context, queue string, now time.Time, limit int, lease time.Duration) ([]engine.DelayedJob, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("memory engine: take from %s: lease %v is not positive", queue, lease)
	}
	q := &e.delay
	q.mu.Lock()
	defer q.mu.Unlock()
	dq := q.queue(queue)
	nowMs, leaseMs := now.UnixMilli(), max(lease.Milliseconds(), 1)
	var taken []*delayJob
	var out []engine.DelayedJob
	for len(out) < limit && len(dq.jobs) > 0 && dq.jobs[0].due <= nowMs {
		j := heap.Pop(&dq.jobs).(*delayJob)
		out = append(out, engine.DelayedJob{ID: j.id, At: time.UnixMilli(j.due).UTC(), Lease: time.UnixMilli(nowMs + leaseMs).UTC()})
		j.due = nowMs + leaseMs
		taken = append(taken, j)
	}
	for _, j := range taken {
		heap.Push(&dq.jobs, j)
	}
	return out, nil
}

// Done removes a taken job that was not moved since.
func (e *Engine) Done(_ context.Context, queue string, job engine.DelayedJob) error {
	q := &e.delay
	q.mu.Lock()
	defer q.mu.Unlock()
	dq := q.queue(queue)
	if j := dq.index[job.ID]; j != nil && j.due == job.Lease.UnixMilli() {
		heap.Remove(&dq.jobs, j.pos)
		delete(dq.index, job.ID)
	}
	return nil
}

// jobHeap orders jobs by due time, then id, as the Redis sorted set does.
type jobHeap []*delayJob

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].id < h[j].id
}
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *jobHeap) Push(x any) {
	j := x.(*delayJob)
	j.pos = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}
