package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/service"
)

// TaggingService is what the tagger asks of the service.
type TaggingService interface {
	RetagBatch(ctx context.Context, batchID, reason string) error
	TagJobs(ctx context.Context, now time.Time, limit int) (int, error)
	SyncTags(ctx context.Context) error
}

var (
	_ TaggingService = (*service.Service)(nil)
	_ Worker         = (*Tagger)(nil)
)

// TaggerConfig configures a Tagger. JetStream, Stream, SubjectPrefix and
// Service are required.
type TaggerConfig struct {
	JetStream     jetstream.JetStream
	Stream        string // the events' stream
	SubjectPrefix string // of the events' subjects, e.g. "coupond."
	Service       TaggingService
	Logger        *slog.Logger
	// Durable starts the names of the consumers every instance shares:
	// <Durable>-batches and <Durable>-webhook. Default coupond-tagger.
	Durable string
	// Enabled, if set, is asked before each unit of work: false pauses the
	// tagger (the tagging switch); events and due jobs wait meanwhile.
	Enabled func() bool
	// Now is the clock the delay queue's jobs fall due by; default time.Now.
	Now func() time.Time
	// Poll is the time between looks at the delay queue; default 500ms.
	Poll time.Duration
	// Sync is the time between retags of every tagged and active batch
	// (what restores the engine's tags after it lost them); default 1m.
	Sync time.Duration
	// Retry is the first wait after a failure; default 1s.
	Retry time.Duration
	// Webhook, if set, receives every product.tags_changed event as a POST
	// of its JSON envelope, through Call; delivery is retried until a 2xx.
	Webhook string
	// Call guards the webhook's requests (timeout, breaker); default a 5s
	// timeout.
	Call   func(ctx context.Context, name string, fn func(ctx context.Context) error) error
	Client *http.Client
	// OnPass, if set, is called after each look at the delay queue with the
	// jobs done (a test hook).
	OnPass func(done int, err error)
}

// Tagger keeps product tags in step with their batches: it retags a batch on
// each of its events (published, paused, resumed, ended, stock-out), when a
// job of the delay queue falls due at an edge of its claim window, and
// every Sync; and it pushes product.tags_changed to an optional webhook.
// Every instance runs one; the consumers are shared (each event reaches one
// instance) and the delay queue hands each job to one of them.
type Tagger struct {
	cfg  TaggerConfig
	log  *slog.Logger
	ss   startstop
	made time.Time // where a new webhook consumer starts
}

// NewTagger returns a Tagger; Start runs it.
func NewTagger(cfg TaggerConfig) *Tagger {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Durable == "" {
		cfg.Durable = "coupond-tagger"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Sync <= 0 {
		cfg.Sync = time.Minute
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.Call == nil {
		cfg.Call = func(ctx context.Context, _ string, fn func(context.Context) error) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return fn(ctx)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	return &Tagger{cfg: cfg, log: cfg.Logger.With("worker", "tagger"), made: time.Now().Add(-time.Second)}
}

// Start runs the tagger until Stop or the end of ctx.
func (t *Tagger) Start(ctx context.Context) error {
	if t.cfg.JetStream == nil || t.cfg.Service == nil || t.cfg.Stream == "" || t.cfg.SubjectPrefix == "" {
		return errors.New("worker: the tagger needs JetStream, the events' stream and subject prefix, and a service")
	}
	return t.ss.start(ctx, t.run)
}

// Stop finishes the work in hand and returns; safe twice.
func (t *Tagger) Stop() { t.ss.stopAndWait() }

func (t *Tagger) enabled() bool { return t.cfg.Enabled == nil || t.cfg.Enabled() }

func (t *Tagger) run(ctx context.Context, stop <-chan struct{}) {
	done := make(chan struct{})
	loops := []func(context.Context, <-chan struct{}){t.events, t.queue}
	if t.cfg.Webhook != "" {
		loops = append(loops, t.webhook)
	}
	for _, loop := range loops {
		go func() {
			defer func() { done <- struct{}{} }()
			loop(ctx, stop)
		}()
	}
	for range loops {
		<-done
	}
}

// batchReasons maps the batch events to the reason of a retag.
var batchReasons = map[string]string{
	bus.TypeBatchPublished: service.TagReasonPublished,
	bus.TypeBatchPaused:    service.TagReasonPaused,
	bus.TypeBatchResumed:   service.TagReasonResumed,
	bus.TypeBatchEnded:     service.TagReasonEnded,
	bus.TypeBatchStockOut:  service.TagReasonStockOut,
}

// events retags a batch on each of its events.
func (t *Tagger) events(ctx context.Context, stop <-chan struct{}) {
	pull := pullLoop{
		js: t.cfg.JetStream, stream: t.cfg.Stream, log: t.log, retry: t.cfg.Retry, batch: 64, enabled: t.cfg.Enabled,
		consumer: jetstream.ConsumerConfig{
			Durable: t.cfg.Durable + "-batches", Description: "coupond product tagging", FilterSubject: t.cfg.SubjectPrefix + "batch.>",
			// All, not New: the consumer is made while the instance starts,
			// perhaps after the first batch events; a retag is idempotent,
			// so the history a new consumer replays costs time, not tags.
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 1000,
		},
	}
	pull.run(ctx, stop, func(ctx context.Context, msgs []jetstream.Msg) {
		for _, m := range msgs {
			var env bus.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				_ = m.Term()
				continue
			}
			reason, ok := batchReasons[env.Type]
			if !ok {
				_ = m.Ack()
				continue
			}
			err := t.cfg.Service.RetagBatch(ctx, env.AggregateID, reason)
			settle([]jetstream.Msg{m}, err, t.cfg.Retry, t.log)
		}
	})
}

// queue looks at the delay queue every Poll and retags every Sync.
func (t *Tagger) queue(ctx context.Context, stop <-chan struct{}) {
	var lastSync time.Time
	for {
		if t.enabled() {
			done, err := t.cfg.Service.TagJobs(ctx, t.cfg.Now(), 100)
			if err != nil {
				t.log.Warn("tagging jobs failed; they are due again shortly", "err", err)
			}
			if t.cfg.OnPass != nil {
				t.cfg.OnPass(done, err)
			}
			if time.Since(lastSync) >= t.cfg.Sync {
				lastSync = time.Now()
				if err := t.cfg.Service.SyncTags(ctx); err != nil {
					t.log.Warn("tag sync failed", "err", err)
				}
			}
		}
		if !sleep(ctx, stop, nil, t.cfg.Poll) {
			return
		}
	}
}

// webhook pushes product.tags_changed events to the webhook.
func (t *Tagger) webhook(ctx context.Context, stop <-chan struct{}) {
	pull := pullLoop{
		js: t.cfg.JetStream, stream: t.cfg.Stream, log: t.log, retry: t.cfg.Retry, batch: 16, enabled: t.cfg.Enabled,
		consumer: jetstream.ConsumerConfig{
			Durable: t.cfg.Durable + "-webhook", Description: "coupond product tags webhook",
			FilterSubject: t.cfg.SubjectPrefix + bus.TypeProductTagsChanged,
			// From when this tagger was made, not New: the consumer is
			// made a moment later and must not miss the changes between.
			// A webhook configured later does not get the past pushed.
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t.made,
			AckWait: time.Minute, MaxDeliver: -1, MaxAckPending: 100,
		},
	}
	pull.run(ctx, stop, func(ctx context.Context, msgs []jetstream.Msg) {
		for _, m := range msgs {
			err := t.cfg.Call(ctx, "push", func(ctx context.Context) error { return t.post(ctx, m.Data()) })
			settle([]jetstream.Msg{m}, err, t.cfg.Retry, t.log)
		}
	})
}

func (t *Tagger) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.cfg.Webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tags webhook answered %s", resp.Status)
	}
	return nil
}
