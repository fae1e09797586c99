package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// StateConfig says where the state collector reads at scrape time.
type StateConfig struct {
	Engine engine.Engine
	// Store lists the active and paused batches (those the engine holds)
	// and reads the unpublished events.
	Store interface {
		ListBatches(ctx context.Context, f store.BatchFilter) ([]*coupon.Batch, error)
		PendingEvents(ctx context.Context, limit int) ([]store.Event, error)
	}
	// Grace is the reconciler's: a pending claim older than this is backlog.
	Grace time.Duration
	// Enabled, if set, is asked at each scrape; false skips the reads (the
	// batch_metrics switch).
	Enabled func() bool
	Logger  *slog.Logger
	Now     func() time.Time
	// MaxAge reuses the last reading for scrapes closer together than this
	// (several Prometheus servers scraping); default 5s.
	MaxAge time.Duration
	// Timeout bounds one reading; default 5s.
	Timeout time.Duration
	// MaxBatches bounds how many batches get a pool-depth series; default 1000.
	MaxBatches int
}

// Outbox and backlog figures saturate at this many rows: the collector
// reads at most this many pending events or pending claims per batch.
const stateReadLimit = 1000

var (
	poolDepthDesc = prometheus.NewDesc("coupond_engine_pool_depth",
		"Codes ready to be claimed in the engine's pool, per active or paused batch.", []string{"batch_id"}, nil)
	claimedDesc = prometheus.NewDesc("coupond_engine_claimed",
		"Claims the engine has handed out for a batch (not undone), per active or paused batch.", []string{"batch_id"}, nil)
	batchesDesc = prometheus.NewDesc("coupond_engine_batches",
		"Batches the engine holds (active and paused).", nil, nil)
	totalDesc = prometheus.NewDesc("coupond_batch_total_quantity",
		"Codes a batch holds in all, per active or paused batch: with coupond_engine_claimed, what is left to claim.", []string{"batch_id"}, nil)
	generatedDesc = prometheus.NewDesc("coupond_batch_generated",
		"Codes generated so far, per active or paused batch.", []string{"batch_id"}, nil)
	backlogDesc = prometheus.NewDesc("coupond_reconciler_backlog_claims",
		"Engine claims still pending (neither committed nor undone) past the reconciler's grace period, summed over batches; at most 1000 per batch are counted.", nil, nil)
	outboxPendingDesc = prometheus.NewDesc("coupond_outbox_pending_events",
		"Outbox events not yet published to the bus (counted up to 1000).", nil, nil)
	outboxAgeDesc = prometheus.NewDesc("coupond_outbox_oldest_pending_age_seconds",
		"Age of the oldest outbox event not yet published; 0 when none is pending.", nil, nil)
)

// StateCollector reads backend state at scrape time: pool depth and claims
// per batch from the engine, the reconciler's backlog, the outbox's lag.
type StateCollector struct {
	cfg     StateConfig
	metrics *Metrics

	mu   sync.Mutex
	at   time.Time
	last []prometheus.Metric
}

// NewStateCollector returns the collector; register it in m's registry.
func NewStateCollector(m *Metrics, cfg StateConfig) *StateCollector {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = 1000
	}
	return &StateCollector{cfg: cfg, metrics: m}
}

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolDepthDesc, claimedDesc, batchesDesc, totalDesc, generatedDesc, backlogDesc, outboxPendingDesc, outboxAgeDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.Enabled != nil && !c.cfg.Enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if c.last == nil || now.Sub(c.at) >= c.cfg.MaxAge {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		c.last = c.read(ctx, now)
		cancel()
		c.at = now
	}
	for _, m := range c.last {
		ch <- m
	}
}

func (c *StateCollector) read(ctx context.Context, now time.Time) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	if c.cfg.Store == nil {
		return out
	}
	{
		events, err := c.cfg.Store.PendingEvents(ctx, stateReadLimit)
		if err != nil {
			c.fail(ctx, "outbox", err)
		} else {
			age := 0.0
			if len(events) > 0 {
				age = max(0, now.Sub(events[0].CreatedAt).Seconds())
			}
			gauge(outboxPendingDesc, float64(len(events)))
			gauge(outboxAgeDesc, age)
		}
	}
	if c.cfg.Engine == nil {
		return out
	}
	batches, err := c.batches(ctx)
	if err != nil {
		c.fail(ctx, "batches", err)
		return out
	}
	gauge(batchesDesc, float64(len(batches)))
	backlog, backlogOK := 0, true
	before := now.Add(-c.cfg.Grace)
	for i, b := range batches {
		id := b.ID
		if i < c.cfg.MaxBatches {
			gauge(totalDesc, float64(b.TotalQuantity), id)
			gauge(generatedDesc, float64(b.GeneratedCount), id)
			st, err := c.cfg.Engine.Stats(ctx, id)
			switch {
			case err == nil:
				gauge(poolDepthDesc, float64(st.PoolDepth), id)
				gauge(claimedDesc, float64(st.Claimed), id)
			case !errors.Is(err, engine.ErrUnknownBatch):
				c.fail(ctx, "pool_depth", err)
			}
		}
		pending, err := c.cfg.Engine.Pending(ctx, id, before, stateReadLimit)
		switch {
		case err == nil:
			backlog += len(pending)
		case !errors.Is(err, engine.ErrUnknownBatch):
			backlogOK = false
			c.fail(ctx, "reconciler_backlog", err)
		}
	}
	if backlogOK {
		gauge(backlogDesc, float64(backlog))
	}
	return out
}

// batches lists the active and paused batches, those the engine holds.
func (c *StateCollector) batches(ctx context.Context) ([]*coupon.Batch, error) {
	var out []*coupon.Batch
	for _, st := range []coupon.Status{coupon.StatusActive, coupon.StatusPaused} {
		cursor := ""
		for {
			bs, err := c.cfg.Store.ListBatches(ctx, store.BatchFilter{Status: st, Cursor: cursor, Limit: 1000})
			if err != nil {
				return nil, err
			}
			out = append(out, bs...)
			if len(bs) < 1000 {
				break
			}
			cursor = bs[len(bs)-1].ID
		}
	}
	return out, nil
}

func (c *StateCollector) fail(ctx context.Context, source string, err error) {
	c.metrics.ScrapeError(source)
	c.cfg.Logger.WarnContext(ctx, "metrics: reading backend state failed", "source", source, "err", err)
}
