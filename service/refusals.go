package service

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/telemetry"
)

// batchWriter writes records to the store from a goroutine of its own, a
// few hundred per transaction: refusals, the devices of claims. The caller
// never waits for the store, and a flood fills a bounded buffer, past which
// records are counted and dropped rather than queued.
type batchWriter[T any] struct {
	what      string
	write     func(ctx context.Context, batch []T) error
	log       *slog.Logger
	ch        chan T
	onDropped func(int)
	flush     chan chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
}

const writerBatch = 256

func newBatchWriter[T any](what string, size int, write func(context.Context, []T) error, log *slog.Logger, onDropped func(int)) *batchWriter[T] {
	w := &batchWriter[T]{what: what, write: write, log: log, ch: make(chan T, size), onDropped: onDropped,
		flush: make(chan chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *batchWriter[T]) add(r T) {
	select {
	case w.ch <- r:
	default:
		if w.onDropped != nil {
			w.onDropped(1)
		}
	}
}

func (w *batchWriter[T]) run() {
	defer close(w.done)
	batch := make([]T, 0, writerBatch)
	write := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.write(ctx, batch); err != nil {
			w.log.Warn("recording "+w.what+" failed; they are lost", "records", len(batch), "err", err)
		}
		cancel()
		clear(batch)
		batch = batch[:0]
	}
	// drain takes what is waiting without blocking; false once closed.
	drain := func() bool {
		for {
			select {
			case r, ok := <-w.ch:
				if !ok {
					return false
				}
				batch = append(batch, r)
				if len(batch) == writerBatch {
					write()
				}
			default:
				return true
			}
		}
	}
	for {
		select {
		case r, ok := <-w.ch:
			if !ok {
				write()
				return
			}
			batch = append(batch, r)
			open := drain()
			write()
			if !open {
				return
			}
		case ack := <-w.flush:
			open := drain()
			write()
			close(ack)
			if !open {
				return
			}
		}
	}
}

// wait returns once every record added before it is written.
func (w *batchWriter[T]) wait(ctx context.Context) {
	ack := make(chan struct{})
	select {
	case w.flush <- ack:
	case <-w.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
	}
}

// stop writes what is waiting and stops; safe twice.
func (w *batchWriter[T]) stop() {
	w.stopOnce.Do(func() {
		close(w.ch)
		<-w.done
	})
}

// FlushRefusals returns once the refusals (and claim devices) recorded so
// far are in the store.
func (s *Service) FlushRefusals(ctx context.Context) {
	s.acc.refusals.wait(ctx)
	s.acc.devices.wait(ctx)
}

// RecordRefusal records a refused request for operators (asynchronously).
// The phone is masked but for its last 4 digits; the API key is the
// caller's.
func (s *Service) RecordRefusal(ctx context.Context, r access.Refusal) {
	if r.At.IsZero() {
		r.At = s.clock()
	}
	if r.KeyID == "" {
		if p, ok := auth.From(ctx); ok {
			r.KeyID = p.KeyID
		}
	}
	r.Phone = telemetry.MaskPhone(r.Phone)
	if len(r.Reason) > 500 {
		r.Reason = r.Reason[:500]
	}
	s.acc.refusals.add(r)
}

// RefusalQuery selects refusals.
type RefusalQuery struct {
	BatchID string
	UserID  string
	Code    string
	Cursor  string
	Limit   int
}

// Refusals lists recorded refusals, newest first. A merchant sees those of
// its own batches only.
func (s *Service) Refusals(ctx context.Context, q RefusalQuery) ([]access.Refusal, string, error) {
	var v coupon.Validation
	limit := clampLimit(&v, q.Limit)
	var cursor int64
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || n <= 0 {
			v.Add("cursor", "is not a cursor this API returned")
		}
		cursor = n
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	f := store.RefusalFilter{BatchID: q.BatchID, UserID: q.UserID, Code: q.Code, Cursor: cursor, Limit: limit + 1}
	if m, scoped := auth.MerchantScope(ctx); scoped {
		f.MerchantID = m
	}
	rs, err := s.store.ListRefusals(ctx, f)
	if err != nil {
		return nil, "", unavailable("list refusals", err)
	}
	next := ""
	if len(rs) > limit {
		rs = rs[:limit]
		next = strconv.FormatInt(rs[limit-1].ID, 10)
	}
	return rs, next, nil
}
