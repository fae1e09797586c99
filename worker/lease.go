package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/coupond/coupond/engine"
)

// Lease keeps one named lease of an engine.Locker for a worker, so that of
// several instances one does the work at a time and another takes over
// within TTL when it dies. It is used from the worker's goroutine only.
type Lease struct {
	locker engine.Locker
	name   string
	ttl    time.Duration
	token  string
	log    *slog.Logger
}

// NewLease returns a Lease on name; nil locker makes a Lease that is always
// held (a single process needs no coordination).
func NewLease(locker engine.Locker, name string, ttl time.Duration, log *slog.Logger) *Lease {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lease{locker: locker, name: name, ttl: ttl, log: log}
}

// Hold takes the lease or renews it, and reports whether this worker holds
// it for the next TTL. An error of the locker counts as not holding it.
func (l *Lease) Hold(ctx context.Context) bool {
	if l == nil || l.locker == nil {
		return true
	}
	if l.token != "" {
		ok, err := l.locker.Extend(ctx, l.name, l.token, l.ttl)
		if err == nil && ok {
			return true
		}
		l.log.Info("lease lost", "lease", l.name, "err", err)
		l.token = ""
	}
	token, ok, err := l.locker.Lock(ctx, l.name, l.ttl)
	if err != nil || !ok {
		return false
	}
	l.token = token
	l.log.Info("lease taken", "lease", l.name)
	return true
}

// Release gives the lease up, so another instance can take it at once.
func (l *Lease) Release(ctx context.Context) {
	if l == nil || l.locker == nil || l.token == "" {
		return
	}
	_ = l.locker.Unlock(ctx, l.name, l.token)
	l.token = ""
}
