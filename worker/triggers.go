package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// Triggers is what the trigger consumer asks of the service.
type Triggers interface {
	TriggerSubjects(ctx context.Context) ([]string, error)
	GrantOnEvent(ctx context.Context, ev service.TriggerEvent) ([]service.TriggerOutcome, error)
}

var (
	_ Triggers = (*service.Service)(nil)
	_ Worker   = (*TriggerConsumer)(nil)
)

// Defaults of TriggerConsumerConfig.
const (
	DefaultTriggerStream  = "COUPOND_TRIGGERS"
	DefaultTriggerDurable = "coupond-trigger"
)

// TriggerConsumerConfig configures a TriggerConsumer. JetStream and Service
// are required.
type TriggerConsumerConfig struct {
	JetStream jetstream.JetStream
	Service   Triggers
	Logger    *slog.Logger
	// Stream captures the trigger subjects that no stream captures yet
	// (default COUPOND_TRIGGERS); a subject another stream captures, such
	// as the user system's own, is read from that stream.
	Stream string
	// Durable starts the names of the durable consumers, one per subject,
	// that every instance shares; default coupond-trigger.
	Durable string
	// Refresh is how often the active batches' trigger subjects are read
	// again; default 5s.
	Refresh time.Duration
	// AckWait before an unacknowledged event is delivered again; default 30s.
	AckWait time.Duration
	// Retry is the first wait before an event whose grant failed comes
	// again; doubled up to a minute. Default 1s.
	Retry time.Duration
	// OnEvent, if set, is called after each event with its outcomes (a test
	// hook; it runs on the consumer's goroutines).
	OnEvent func(subject, id string, out []service.TriggerOutcome, err error)
}

// TriggerConsumer grants batches on events: a batch whose trigger_subject is
// user.registered is granted to the user of every user.registered event,
// once per event. Each subject has a durable JetStream consumer that the
// instances share. An event is acknowledged once every batch has answered
// (granted, replayed, or refused for good: limit reached, sold out, …); if
// a grant failed for a reason that may pass, the event comes again, and the
// event's id as idempotency key returns the grants made the first time.
type TriggerConsumer struct {
	cfg TriggerConsumerConfig
	log *slog.Logger
	ss  startstop
}

// NewTriggerConsumer returns a TriggerConsumer; Start runs it.
func NewTriggerConsumer(cfg TriggerConsumerConfig) *TriggerConsumer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultTriggerStream
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultTriggerDurable
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	return &TriggerConsumer{cfg: cfg, log: cfg.Logger.With("worker", "trigger-consumer")}
}

// Start runs the consumer until Stop or the end of ctx.
func (c *TriggerConsumer) Start(ctx context.Context) error {
	if c.cfg.JetStream == nil || c.cfg.Service == nil {
		return errors.New("worker: the trigger consumer needs JetStream and a service")
	}
	return c.ss.start(ctx, c.run)
}

// Stop finishes the events in hand and returns; safe twice.
func (c *TriggerConsumer) Stop() { c.ss.stopAndWait() }

func (c *TriggerConsumer) run(ctx context.Context, stop <-chan struct{}) {
	attempt := 0
	for {
		subjects, err := c.cfg.Service.TriggerSubjects(ctx)
		if err == nil {
			slices.Sort(subjects)
			err = c.consume(ctx, stop, subjects)
		}
		switch {
		case err == nil && (isClosed(stop) || ctx.Err() != nil):
			return
		case err == nil:
			attempt = 0 // the subjects changed: set up again
			continue
		}
		attempt++
		c.log.Warn("trigger consumer interrupted; will set up again", "err", err, "attempt", attempt)
		if !sleep(ctx, stop, nil, backoff(attempt, c.cfg.Retry, time.Minute)) {
			return
		}
	}
}

// consume reads the events of subjects until stopped or until the active
// batches' subjects differ from them (nil), or an error of NATS.
func (c *TriggerConsumer) consume(ctx context.Context, stop <-chan struct{}, subjects []string) error {
	var its []jetstream.MessagesContext
	defer func() {
		for _, it := range its {
			it.Stop()
		}
	}()
	if len(subjects) > 0 {
		setup, cancel := context.WithTimeout(ctx, 10*time.Second)
		consumers, err := c.setup(setup, subjects)
		cancel()
		if err != nil {
			return err
		}
		for _, cons := range consumers {
			it, err := cons.Messages(jetstream.PullMaxMessages(64))
			if err != nil {
				return fmt.Errorf("worker: trigger events: %w", err)
			}
			its = append(its, it)
		}
	}
	errs := make(chan error, len(its))
	for _, it := range its {
		go func() {
			for {
				msg, err := it.Next()
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						err = nil
					}
					errs <- err
					return
				}
				c.handle(ctx, msg)
			}
		}()
	}
	stopAll := func() {
		for _, it := range its {
			it.Stop()
		}
		for range its {
			<-errs
		}
		its = nil
	}
	t := time.NewTicker(c.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			stopAll()
			return nil
		case <-ctx.Done():
			stopAll()
			return nil
		case err := <-errs:
			// One iterator ended on its own: set everything up again.
			errs <- err
			stopAll()
			if err == nil {
				err = errors.New("message iterator closed")
			}
			return fmt.Errorf("worker: trigger events: %w", err)
		case <-t.C:
			now, err := c.cfg.Service.TriggerSubjects(ctx)
			if err != nil {
				c.log.Warn("cannot read trigger subjects; keeping the current ones", "err", err)
				continue
			}
			slices.Sort(now)
			if !slices.Equal(now, subjects) {
				stopAll()
				return nil
			}
		}
	}
}

// setup makes sure a stream captures each subject — the first stream that
// does, else this consumer's own, which it extends — and creates or updates
// a durable consumer on each.
func (c *TriggerConsumer) setup(ctx context.Context, subjects []string) ([]jetstream.Consumer, error) {
	js := c.cfg.JetStream
	streams := map[string]string{} // subject → stream
	var missing []string
	for _, subj := range subjects {
		name, err := js.StreamNameBySubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, subj)
		case err != nil:
			return nil, fmt.Errorf("worker: find the stream of %s: %w", subj, err)
		default:
			streams[subj] = name
		}
	}
	if len(missing) > 0 {
		own := missing
		if s, err := js.Stream(ctx, c.cfg.Stream); err == nil {
			own = append(slices.Clone(s.CachedInfo().Config.Subjects), missing...)
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("worker: read stream %s: %w", c.cfg.Stream, err)
		}
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: c.cfg.Stream, Description: "events that grant coupond batches (their trigger_subject)",
			Subjects: own, Storage: jetstream.FileStorage, MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute,
		})
		if err != nil {
			return nil, fmt.Errorf("worker: create stream %s: %w", c.cfg.Stream, err)
		}
		for _, subj := range missing {
			streams[subj] = c.cfg.Stream
		}
		c.log.Info("trigger stream updated", "stream", c.cfg.Stream, "subjects", own)
	}
	var out []jetstream.Consumer
	for _, subj := range subjects {
		name := c.cfg.Durable + "-" + strings.NewReplacer(".", "_", "*", "_", ">", "_").Replace(subj)
		cons, err := js.CreateOrUpdateConsumer(ctx, streams[subj], jetstream.ConsumerConfig{
			Durable: name, Description: "coupond grants the batches triggered by " + subj,
			FilterSubject: subj, AckPolicy: jetstream.AckExplicitPolicy,
			// A stream of someone else's may hold years of events: only
			// those from now on grant.
			DeliverPolicy: deliverPolicy(streams[subj] == c.cfg.Stream),
			AckWait:       c.cfg.AckWait, MaxDeliver: -1, MaxAckPending: 1000,
		})
		if err != nil {
			return nil, fmt.Errorf("worker: create consumer %s on %s: %w", name, streams[subj], err)
		}
		out = append(out, cons)
	}
	return out, nil
}

func deliverPolicy(own bool) jetstream.DeliverPolicy {
	if own {
		return jetstream.DeliverAllPolicy
	}
	return jetstream.DeliverNewPolicy
}

// triggerBody is what a trigger event must carry: the user, at the top or
// in data (the envelope of coupond's own events), and optionally an id.
type triggerBody struct {
	ID       json.RawMessage `json:"id"`
	UserID   string          `json:"user_id"`
	Phone    string          `json:"phone"`
	OpenID   string          `json:"open_id"`
	Platform string          `json:"platform"`
	Data     *triggerBody    `json:"data"`
}

// decodeTrigger reads an event: its user, and its id — the Nats-Msg-Id
// header, else the body's id, else the stream and sequence of the message,
// which stay the same when it is delivered again.
func decodeTrigger(msg jetstream.Msg) (service.TriggerEvent, error) {
	var b triggerBody
	if err := json.Unmarshal(msg.Data(), &b); err != nil {
		return service.TriggerEvent{}, fmt.Errorf("event is not a JSON object: %w", err)
	}
	ev := service.TriggerEvent{Subject: msg.Subject(),
		Claimant: coupon.Claimant{UserID: b.UserID, Phone: b.Phone, OpenID: b.OpenID, Platform: b.Platform}}
	if ev.UserID == "" && b.Data != nil {
		ev.Claimant = coupon.Claimant{UserID: b.Data.UserID, Phone: b.Data.Phone, OpenID: b.Data.OpenID, Platform: b.Data.Platform}
	}
	if ev.UserID == "" {
		return ev, errors.New("event names no user_id")
	}
	switch {
	case msg.Headers().Get(nats.MsgIdHdr) != "":
		ev.ID = msg.Headers().Get(nats.MsgIdHdr)
	case len(b.ID) > 0 && string(b.ID) != "null":
		var s string
		if json.Unmarshal(b.ID, &s) != nil {
			s = string(b.ID) // a number
		}
		ev.ID = s
	default:
		md, err := msg.Metadata()
		if err != nil {
			return ev, fmt.Errorf("event has no id and no metadata: %w", err)
		}
		ev.ID = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return ev, nil
}

func (c *TriggerConsumer) handle(ctx context.Context, msg jetstream.Msg) {
	ev, err := decodeTrigger(msg)
	if err != nil {
		c.log.Error("trigger event dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		c.done(msg.Subject(), "", nil, err)
		return
	}
	out, err := c.cfg.Service.GrantOnEvent(ctx, ev)
	retry := err != nil
	for _, o := range out {
		switch {
		case o.Err == nil:
		case service.Retryable(o.Err):
			retry = true
		default:
			c.log.Info("trigger event grants nothing", "subject", ev.Subject, "event", ev.ID, "batch", o.BatchID, "err", o.Err)
		}
	}
	if retry {
		delivered := uint64(1)
		if md, merr := msg.Metadata(); merr == nil {
			delivered = md.NumDelivered
		}
		delay := backoff(int(min(delivered, 10)), c.cfg.Retry, time.Minute)
		c.log.Warn("trigger event failed; it will come again", "subject", ev.Subject, "event", ev.ID, "retry_in", delay, "err", err)
		_ = msg.NakWithDelay(delay)
	} else if aerr := msg.Ack(); aerr != nil {
		c.log.Warn("ack failed; the event will come again and grant nothing more", "event", ev.ID, "err", aerr)
	}
	c.done(ev.Subject, ev.ID, out, err)
}

func (c *TriggerConsumer) done(subject, id string, out []service.TriggerOutcome, err error) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(subject, id, out, err)
	}
}
