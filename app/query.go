package app

import (
	"context"
	"fmt"
	"time"

	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/worker"
)

// QueryOptions tune the query side's workers; set them before Run (tests
// do). Zero values take the defaults.
type QueryOptions struct {
	Now       func() time.Time // the clock of the tagging delay queue; default time.Now
	TagPoll   time.Duration    // between looks at the delay queue; default 500ms
	TagSync   time.Duration    // between retags of every tagged batch; default 1m
	OnTagPass func(done int, err error)
	OnStats   func(n int, err error)
}

// queryWorkers are the background loops of the query side.
type queryWorkers struct {
	stats  *worker.StatsConsumer
	tagger *worker.Tagger
}

// queryConfig is the service's query configuration: the "my coupons" cache
// behind a guard of its own (timeout, breaker, metrics) when the engine does
// I/O, so that a failing Redis costs a query a quarter second at most, and
// nothing while the breaker is open.
func (a *App) queryConfig() service.QueryConfig {
	cfg := service.QueryConfig{CacheTTL: a.cfg.Query.UserCacheTTL}
	if a.cfg.Redis.URL != "" || a.WrapEngine != nil {
		g := guard.NewExternal(guard.ExternalConfig{
			Name: "user_cache", Timeout: min(a.cfg.Ops.EngineTimeout, 250*time.Millisecond),
			Failures: a.cfg.Ops.BreakerFailures, Cooldown: a.cfg.Ops.BreakerCooldown,
			Tracer: a.Tracing.Tracer("user_cache"), Metrics: a.Metrics,
		}, "get", "fill", "touch")
		cfg.CacheCall = g.Do
	} else {
		// The in-memory engine does no I/O: no timeout to arm per call.
		cfg.CacheCall = func(ctx context.Context, _ string, fn func(context.Context) error) error { return fn(ctx) }
	}
	return cfg
}

// startQuery starts the stats consumer and the tagger, each turned off at
// run time by its switch, and registers the cache's metrics.
func (a *App) startQuery(ctx context.Context) error {
	stats, tagging := a.Switches.Get(guard.SwitchStats), a.Switches.Get(guard.SwitchTagging)
	w := &a.query
	w.stats = worker.NewStatsConsumer(worker.StatsConsumerConfig{
		JetStream: a.Bus.JetStream(), Stream: a.Bus.StreamName(), Subjects: a.Bus.Subject(">"),
		Service: a.Service, Logger: a.log, Enabled: stats.On, OnApply: a.Query.OnStats,
		Keep: a.cfg.Archive.StatsDedupeWindow,
	})
	webhook := guard.NewExternal(guard.ExternalConfig{Name: "tags_webhook", Metrics: a.Metrics,
		Tracer: a.Tracing.Tracer("tags_webhook")}, "push")
	w.tagger = worker.NewTagger(worker.TaggerConfig{
		JetStream: a.Bus.JetStream(), Stream: a.Bus.StreamName(), SubjectPrefix: a.Bus.Subject(""),
		Service: a.Service, Logger: a.log, Enabled: tagging.On, Now: a.Query.Now,
		Poll: a.Query.TagPoll, Sync: a.Query.TagSync, OnPass: a.Query.OnTagPass,
		Webhook: a.cfg.Query.TagsWebhookURL, Call: webhook.Do,
	})
	for _, s := range []worker.Worker{w.stats, w.tagger} {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("start query workers: %w", err)
		}
	}
	m, svc := a.Metrics, a.Service
	m.CounterFunc("coupond_user_cache_hits_total", "\"My coupons\" reads answered by the engine's cache.",
		func() float64 { return float64(svc.UserCacheStats().Hits) })
	m.CounterFunc("coupond_user_cache_misses_total", "\"My coupons\" reads that read the store and filled the cache.",
		func() float64 { return float64(svc.UserCacheStats().Misses) })
	m.CounterFunc("coupond_user_cache_fallbacks_total", "\"My coupons\" reads served by the store because the cache failed.",
		func() float64 { return float64(svc.UserCacheStats().Fallbacks) })
	m.CounterFunc("coupond_user_cache_fills_refused_total", "Cache fills refused because the user's claims changed since the miss.",
		func() float64 { return float64(svc.UserCacheStats().Refused) })
	m.GaugeFunc("coupond_delay_queue_lag_seconds", "How late after their due times this instance's tagger took the delay queue's jobs of its last look (0: none due).",
		func() float64 { return svc.TagQueueLag().Seconds() })
	m.GaugeFunc("coupond_user_cache_hit_ratio", "Hits over all \"my coupons\" reads of this instance since it started.",
		func() float64 {
			st := svc.UserCacheStats()
			if all := st.Hits + st.Misses + st.Fallbacks; all > 0 {
				return float64(st.Hits) / float64(all)
			}
			return 0
		})
	return nil
}

// stopQuery stops the query workers; safe twice and before start.
func (a *App) stopQuery() {
	if a.query.stats != nil {
		a.query.stats.Stop()
	}
	if a.query.tagger != nil {
		a.query.tagger.Stop()
	}
}
