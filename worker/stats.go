package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/service"
)

// StatsService is what the stats consumer asks of the service.
type StatsService interface {
	ApplyStatsEvents(ctx context.Context, envs []bus.Envelope) error
	PruneStats(ctx context.Context, before time.Time) (int, error)
}

var (
	_ StatsService = (*service.Service)(nil)
	_ Worker       = (*StatsConsumer)(nil)
)

// StatsConsumerConfig configures a StatsConsumer. JetStream, Stream,
// Subjects and Service are required.
type StatsConsumerConfig struct {
	JetStream jetstream.JetStream
	Stream    string // the events' stream
	Subjects  string // the events' subjects, e.g. coupond.>
	Service   StatsService
	Logger    *slog.Logger
	// Durable names the consumer that every instance shares; default
	// coupond-stats.
	Durable string
	// Enabled, if set, is asked before each fetch: false pauses the
	// consumer (the stats switch); the events wait in the stream.
	Enabled func() bool
	// Batch is the most events one store transaction counts; default 500.
	Batch int
	// Retry is the first wait after a failure; doubled up to a minute.
	// Default 1s.
	Retry time.Duration
	// Keep is how long counted events' ids are remembered; default 24h
	// (redeliveries come within minutes).
	Keep time.Duration
	Now  func() time.Time
	// OnApply, if set, is called after each fetched batch with the number
	// of events and the outcome (a test hook).
	OnApply func(n int, err error)
}

// StatsConsumer maintains the statistics from the event stream: a durable
// JetStream consumer shared by the instances, whose every fetched batch of
// events is counted in one store transaction that records the events' ids,
// then acknowledged. An event delivered again (a crash between the commit
// and the ack, a redelivery after AckWait) counts once.
type StatsConsumer struct {
	cfg StatsConsumerConfig
	log *slog.Logger
	ss  startstop
}

// NewStatsConsumer returns a StatsConsumer; Start runs it.
func NewStatsConsumer(cfg StatsConsumerConfig) *StatsConsumer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Durable == "" {
		cfg.Durable = "coupond-stats"
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &StatsConsumer{cfg: cfg, log: cfg.Logger.With("worker", "stats")}
}

// Start runs the consumer until Stop or the end of ctx.
func (c *StatsConsumer) Start(ctx context.Context) error {
	if c.cfg.JetStream == nil || c.cfg.Service == nil || c.cfg.Stream == "" || c.cfg.Subjects == "" {
		return errors.New("worker: the stats consumer needs JetStream, a stream, subjects and a service")
	}
	return c.ss.start(ctx, c.run)
}

// Stop finishes the batch in hand and returns; safe twice.
func (c *StatsConsumer) Stop() { c.ss.stopAndWait() }

func (c *StatsConsumer) run(ctx context.Context, stop <-chan struct{}) {
	pull := pullLoop{
		js: c.cfg.JetStream, stream: c.cfg.Stream, log: c.log, retry: c.cfg.Retry, batch: c.cfg.Batch, enabled: c.cfg.Enabled,
		consumer: jetstream.ConsumerConfig{
			Durable: c.cfg.Durable, Description: "coupond statistics", FilterSubject: c.cfg.Subjects,
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait: time.Minute, MaxDeliver: -1, MaxAckPending: 20_000,
		},
	}
	lastPrune := time.Time{}
	pull.run(ctx, stop, func(ctx context.Context, msgs []jetstream.Msg) {
		envs := make([]bus.Envelope, 0, len(msgs))
		keep := msgs[:0:0]
		for _, m := range msgs {
			var env bus.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil || env.ID == 0 {
				c.log.Error("stats: message is not an event; dropped", "subject", m.Subject(), "err", err)
				_ = m.Term()
				continue
			}
			envs = append(envs, env)
			keep = append(keep, m)
		}
		err := c.cfg.Service.ApplyStatsEvents(ctx, envs)
		settle(keep, err, c.cfg.Retry, c.log)
		if c.cfg.OnApply != nil {
			c.cfg.OnApply(len(envs), err)
		}
		if now := c.cfg.Now(); now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			if _, err := c.cfg.Service.PruneStats(ctx, now.Add(-c.cfg.Keep)); err != nil {
				c.log.Warn("stats: pruning counted event ids failed", "err", err)
			}
		}
	})
}

// settle acknowledges messages whose effect is committed, or asks for them
// again later.
func settle(msgs []jetstream.Msg, err error, retry time.Duration, log *slog.Logger) {
	if err == nil {
		for _, m := range msgs {
			if aerr := m.Ack(); aerr != nil {
				log.Warn("ack failed; the event comes again and counts once", "err", aerr)
			}
		}
		return
	}
	for _, m := range msgs {
		delivered := uint64(1)
		if md, merr := m.Metadata(); merr == nil {
			delivered = md.NumDelivered
		}
		_ = m.NakWithDelay(backoff(int(min(delivered, 10)), retry, time.Minute))
	}
	log.Warn("events not applied; they come again", "events", len(msgs), "err", err)
}

// pullLoop fetches batches of messages from a durable consumer it creates
// or updates, and hands each batch to a handler, until stopped; it sets
// itself up again, with backoff, after any error of NATS.
type pullLoop struct {
	js       jetstream.JetStream
	stream   string
	consumer jetstream.ConsumerConfig
	batch    int
	enabled  func() bool
	retry    time.Duration
	log      *slog.Logger
}

func (p *pullLoop) run(ctx context.Context, stop <-chan struct{}, handle func(context.Context, []jetstream.Msg)) {
	for attempt := 1; ; attempt++ {
		err := p.consume(ctx, stop, handle)
		if err == nil {
			return
		}
		p.log.Warn("consumer interrupted; will set up again", "consumer", p.consumer.Durable, "err", err, "attempt", attempt)
		if !sleep(ctx, stop, nil, backoff(attempt, p.retry, time.Minute)) {
			return
		}
	}
}

func (p *pullLoop) consume(ctx context.Context, stop <-chan struct{}, handle func(context.Context, []jetstream.Msg)) error {
	setup, cancel := context.WithTimeout(ctx, 10*time.Second)
	var cons jetstream.Consumer
	var err error
	if p.consumer.DeliverPolicy == jetstream.DeliverByStartTimePolicy {
		// Its start time is fixed when it is made: an existing consumer
		// is used as it is (an update naming another start is refused).
		if cons, err = p.js.Consumer(setup, p.stream, p.consumer.Durable); errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons, err = p.js.CreateConsumer(setup, p.stream, p.consumer)
		}
	} else {
		cons, err = p.js.CreateOrUpdateConsumer(setup, p.stream, p.consumer)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("worker: create consumer %s on %s: %w", p.consumer.Durable, p.stream, err)
	}
	for {
		if isClosed(stop) || ctx.Err() != nil {
			return nil
		}
		if p.enabled != nil && !p.enabled() {
			if !sleep(ctx, stop, nil, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		batch, err := cons.Fetch(p.batch, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			return fmt.Errorf("worker: fetch from %s: %w", p.consumer.Durable, err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			if len(msgs) == 0 {
				return fmt.Errorf("worker: fetch from %s: %w", p.consumer.Durable, err)
			}
		}
		if len(msgs) > 0 {
			handle(context.WithoutCancel(ctx), msgs)
		}
	}
}
