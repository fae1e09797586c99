package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/engine"
)

// A delay queue is one sorted set under the queue's hash tag:
//
//	cp:dq:{<queue>}   sorted set: job id → due time in milliseconds
//
// Take moves the due jobs to the end of their lease in one script, so of
// several instances polling one queue exactly one gets each job.
var (
	takeScript = script("delay_take.lua")
	doneScript = script("delay_done.lua")
)

func (e *Engine) queueKey(queue string) string { return e.prefix + ":dq:{" + queue + "}" }

// Schedule adds the job or moves it (ZADD).
func (e *Engine) Schedule(ctx context.Context, queue, id string, at time.Time) error {
	if err := e.client.ZAdd(ctx, e.queueKey(queue), goredis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
		return fail("schedule", err)
	}
	return nil
}

// Unschedule removes the job (ZREM).
func (e *Engine) Unschedule(ctx context.Context, queue, id string) error {
	if err := e.client.ZRem(ctx, e.queueKey(queue), id).Err(); err != nil {
		return fail("unschedule", err)
	}
	return nil
}

// Take leases the due jobs in one script, lua/delay_take.lua.
func (e *Engine) Take(ctx context.Context, queue string, now time.Time, limit int, lease time.Duration) ([]engine.DelayedJob, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("redis engine: take from %s: lease %v is not positive", queue, lease)
	}
	if limit <= 0 {
		return nil, nil
	}
	nowMs, leaseMs := now.UnixMilli(), max(lease.Milliseconds(), 1)
	res, err := takeScript.Run(ctx, e.client, []string{e.queueKey(queue)}, nowMs, limit, leaseMs).StringSlice()
	if err != nil {
		return nil, fail("take", err)
	}
	out := make([]engine.DelayedJob, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		due, err := strconv.ParseFloat(res[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("redis engine: take: score %q: %w", res[i+1], err)
		}
		out = append(out, engine.DelayedJob{ID: res[i], At: time.UnixMilli(int64(due)).UTC(), Lease: time.UnixMilli(nowMs + leaseMs).UTC()})
	}
	return out, nil
}

// Done removes the job if it still has the lease Take gave it.
func (e *Engine) Done(ctx context.Context, queue string, job engine.DelayedJob) error {
	if err := doneScript.Run(ctx, e.client, []string{e.queueKey(queue)}, job.ID, job.Lease.UnixMilli()).Err(); err != nil {
		return fail("done", err)
	}
	return nil
}
