package redis

import (
	"context"
	"errors"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// userReads sends the "my coupons" reads of concurrent callers together:
// each of a few senders takes the reads waiting, up to userReadBatch, and
// sends their MGETs as one pipeline, so that under load many reads share
// one write and one read system call on each side, as the group commit
// shares a transaction among claims. A read alone is sent at once. The
// senders start with the first read and stop with the engine.
type userReads struct {
	once  sync.Once
	queue chan *userRead
	stop  chan struct{}
	wg    sync.WaitGroup
}

type userRead struct {
	user string
	res  []any
	err  error
	done chan struct{}
}

const (
	userReadSenders = 4
	userReadBatch   = 64
	// userReadTimeout is a pipeline's context (the client's read and
	// write timeouts bound it too); a caller stops waiting at its own
	// context's end, whatever the pipeline does.
	userReadTimeout = 5 * time.Second
)

var errEngineClosed = errors.New("redis engine: closed")

// getUser returns the MGET of a user's value and version, sent with the
// reads of other callers waiting at the same time.
func (e *Engine) getUser(ctx context.Context, user string) ([]any, error) {
	u := &e.reads
	u.once.Do(func() {
		u.queue, u.stop = make(chan *userRead, 4*userReadBatch), make(chan struct{})
		for range userReadSenders {
			u.wg.Add(1)
			go e.sendUserReads()
		}
	})
	r := &userRead{user: user, done: make(chan struct{})}
	select {
	case u.queue <- r:
	case <-u.stop:
		return nil, errEngineClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done(): // the sender drops the answer
		return nil, ctx.Err()
	case <-u.stop: // perhaps queued after the senders left
		return nil, errEngineClosed
	}
}

func (e *Engine) sendUserReads() {
	u := &e.reads
	defer u.wg.Done()
	batch := make([]*userRead, 0, userReadBatch)
	cmds := make([]*goredis.SliceCmd, 0, userReadBatch)
	for {
		select {
		case <-u.stop:
			for { // fail what is left, so that no caller waits for it
				select {
				case r := <-u.queue:
					r.err = errEngineClosed
					close(r.done)
				default:
					return
				}
			}
		case r := <-u.queue:
			batch = append(batch[:0], r)
		fill:
			for len(batch) < userReadBatch {
				select {
				case r := <-u.queue:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), userReadTimeout)
			pipe := e.client.Pipeline()
			cmds = cmds[:0]
			for _, r := range batch {
				k := e.userKeys(r.user)
				cmds = append(cmds, pipe.MGet(ctx, k[1], k[0]))
			}
			_, _ = pipe.Exec(ctx) // each command's error is read below
			cancel()
			for i, r := range batch {
				r.res, r.err = cmds[i].Result()
				close(r.done)
			}
			clear(batch)
			clear(cmds)
		}
	}
}

// closeUserReads stops the senders, failing the reads still queued.
func (e *Engine) closeUserReads() {
	u := &e.reads
	u.once.Do(func() { u.stop = make(chan struct{}) }) // never started: nothing to stop
	select {
	case <-u.stop:
		return // closed before
	default:
	}
	close(u.stop)
	u.wg.Wait()
}
