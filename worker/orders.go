package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/ordersys"
	"github.com/coupond/coupond/service"
)

// OrderMessages is what the order consumer asks of the service.
type OrderMessages interface {
	ApplyOrderMessage(ctx context.Context, kind string, m ordersys.Message) error
}

var (
	_ OrderMessages = (*service.Service)(nil)
	_ Worker        = (*OrderConsumer)(nil)
)

// Defaults of OrderConsumerConfig.
const (
	DefaultOrdersStream     = "ORDERS"
	DefaultOrdersDurable    = "coupond-redemptions"
	DefaultPaidSubject      = "orders.paid"
	DefaultCancelledSubject = "orders.cancelled"
	DefaultRefundedSubject  = "orders.refunded"
)

// OrderConsumerConfig configures an OrderConsumer. JetStream and Service
// are required.
type OrderConsumerConfig struct {
	JetStream jetstream.JetStream
	Service   OrderMessages
	Logger    *slog.Logger
	// The subjects the order system publishes on; defaults orders.paid,
	// orders.cancelled, orders.refunded.
	PaidSubject      string
	CancelledSubject string
	RefundedSubject  string
	// Stream is created on the subjects when no stream captures them
	// (default ORDERS); a stream that does, such as the order system's own,
	// is used as it is.
	Stream string
	// Durable starts the names of the consumers that every instance shares,
	// one per subject: <Durable>-paid, -cancelled, -refunded. Default
	// coupond-redemptions.
	Durable string
	// AckWait is how long a delivered message may go unacknowledged before
	// it is delivered again; default 30s.
	AckWait time.Duration
	// Retry is the first wait before a message whose effect failed is
	// delivered again, and before the consumer is set up again after an
	// error; doubled up to a minute. Default 1s.
	Retry time.Duration
	// OnMessage, if set, is called after each message with its kind, order
	// and outcome (a test hook; it runs on the consumer's goroutine).
	OnMessage func(kind, orderID string, err error)
}

// OrderConsumer applies the order system's messages — an order paid,
// cancelled or refunded — through a durable JetStream consumer that all
// instances share, so each message is handled by one of them. A message is
// acknowledged only after its effect is committed (or when it can have none:
// an order without coupons, a contradiction put on the review list, a body
// that is not a message); when the store is unavailable it is delivered
// again later. The effects are idempotent, so a message delivered twice
// changes nothing the second time.
type OrderConsumer struct {
	cfg   OrderConsumerConfig
	log   *slog.Logger
	kinds map[string]string // subject → kind
	ss    startstop
}

// NewOrderConsumer returns an OrderConsumer; Start runs it.
func NewOrderConsumer(cfg OrderConsumerConfig) *OrderConsumer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.PaidSubject, DefaultPaidSubject)
	def(&cfg.CancelledSubject, DefaultCancelledSubject)
	def(&cfg.RefundedSubject, DefaultRefundedSubject)
	def(&cfg.Stream, DefaultOrdersStream)
	def(&cfg.Durable, DefaultOrdersDurable)
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	return &OrderConsumer{cfg: cfg, log: cfg.Logger.With("worker", "order-consumer"), kinds: map[string]string{
		cfg.PaidSubject: service.OrderPaid, cfg.CancelledSubject: service.OrderCancelled, cfg.RefundedSubject: service.OrderRefunded,
	}}
}

// Start runs the consumer until Stop or the end of ctx. NATS need not be
// reachable: the consumer sets itself up when it is.
func (c *OrderConsumer) Start(ctx context.Context) error {
	if c.cfg.JetStream == nil || c.cfg.Service == nil {
		return errors.New("worker: the order consumer needs JetStream and a service")
	}
	if len(c.kinds) != 3 {
		return errors.New("worker: the order consumer's subjects must differ")
	}
	return c.ss.start(ctx, c.run)
}

// Stop finishes the message in hand and returns; safe twice. Messages
// fetched and not yet handled are delivered again.
func (c *OrderConsumer) Stop() { c.ss.stopAndWait() }

func (c *OrderConsumer) subjects() []string {
	return []string{c.cfg.PaidSubject, c.cfg.CancelledSubject, c.cfg.RefundedSubject}
}

func (c *OrderConsumer) run(ctx context.Context, stop <-chan struct{}) {
	for attempt := 1; ; attempt++ {
		err := c.consume(ctx, stop)
		if err == nil {
			return // stopped
		}
		c.log.Warn("order consumer interrupted; will set up again", "err", err, "attempt", attempt)
		if !sleep(ctx, stop, nil, backoff(attempt, c.cfg.Retry, time.Minute)) {
			return
		}
	}
}

// consume sets the stream and the consumers up and handles messages until
// stopped (nil) or an error of NATS. Each subject has a durable consumer of
// its own, filtering one subject: servers before 2.10 know no other filter.
func (c *OrderConsumer) consume(ctx context.Context, stop <-chan struct{}) error {
	setup, cancel := context.WithTimeout(ctx, 10*time.Second)
	consumers, err := c.setup(setup)
	cancel()
	if err != nil {
		return err
	}
	its := make([]jetstream.MessagesContext, 0, len(consumers))
	defer func() {
		for _, it := range its {
			it.Stop()
		}
	}()
	for _, cons := range consumers {
		it, err := cons.Messages(jetstream.PullMaxMessages(64))
		if err != nil {
			return fmt.Errorf("worker: order messages: %w", err)
		}
		its = append(its, it)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		case <-done:
		}
		for _, it := range its {
			it.Stop()
		}
	}()
	errs := make(chan error, len(its))
	for _, it := range its {
		go func() {
			for {
				msg, err := it.Next()
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) && (isClosed(stop) || ctx.Err() != nil) {
						err = nil
					}
					errs <- err
					return
				}
				c.handle(ctx, msg)
			}
		}()
	}
	// The first to end ends the others; all are waited for.
	first := <-errs
	close(done)
	for range len(its) - 1 {
		if err := <-errs; first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("worker: order messages: %w", first)
	}
	return nil
}

// setup finds or creates the stream of the order subjects and creates or
// updates a durable consumer on each subject.
func (c *OrderConsumer) setup(ctx context.Context) ([]jetstream.Consumer, error) {
	js := c.cfg.JetStream
	stream := ""
	for _, subj := range c.subjects() {
		name, err := js.StreamNameBySubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
		case err != nil:
			return nil, fmt.Errorf("worker: find the stream of %s: %w", subj, err)
		case stream != "" && name != stream:
			return nil, fmt.Errorf("worker: order subjects are in two streams, %s and %s", stream, name)
		default:
			stream = name
		}
	}
	if stream == "" {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: c.cfg.Stream, Description: "the order system's messages for coupond",
			Subjects: c.subjects(), Storage: jetstream.FileStorage, MaxAge: 7 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
		})
		if err != nil {
			return nil, fmt.Errorf("worker: create stream %s: %w", c.cfg.Stream, err)
		}
		stream = c.cfg.Stream
		c.log.Info("order stream created", "stream", stream, "subjects", c.subjects())
	}
	var out []jetstream.Consumer
	for _, subj := range c.subjects() {
		name := c.cfg.Durable + "-" + c.kinds[subj]
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable: name, Description: "coupond applies the order system's " + subj,
			FilterSubject: subj, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait: c.cfg.AckWait, MaxDeliver: -1, MaxAckPending: 1000,
		})
		if err != nil {
			return nil, fmt.Errorf("worker: create consumer %s on %s: %w", name, stream, err)
		}
		out = append(out, cons)
	}
	return out, nil
}

// handle applies one message and acknowledges it once its effect is
// committed or it can have none.
func (c *OrderConsumer) handle(ctx context.Context, msg jetstream.Msg) {
	kind := c.kinds[msg.Subject()]
	m, err := ordersys.DecodeMessage(msg.Data())
	if err == nil && kind == "" {
		err = fmt.Errorf("worker: message on unexpected subject %s", msg.Subject())
	}
	if err != nil {
		c.log.Error("order message dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		c.done(kind, "", err)
		return
	}
	err = c.cfg.Service.ApplyOrderMessage(ctx, kind, m)
	switch code := coupon.ErrorCode(err); code {
	case "", coupon.CodeNotFound, coupon.CodeConflict, coupon.CodeInvalid, coupon.CodeNotUsable:
		if err != nil {
			level := slog.LevelWarn
			if code == coupon.CodeNotFound {
				level = slog.LevelDebug // an order that used no coupon
			}
			c.log.Log(ctx, level, "order message has no effect", "kind", kind, "order", m.OrderID, "err", err)
		}
		if aerr := msg.Ack(); aerr != nil {
			c.log.Warn("ack failed; the message will come again and change nothing", "order", m.OrderID, "err", aerr)
		}
	default:
		delivered := uint64(1)
		if md, merr := msg.Metadata(); merr == nil {
			delivered = md.NumDelivered
		}
		delay := backoff(int(min(delivered, 10)), c.cfg.Retry, time.Minute)
		c.log.Warn("order message failed; it will come again", "kind", kind, "order", m.OrderID, "delivered", delivered, "retry_in", delay, "err", err)
		_ = msg.NakWithDelay(delay)
	}
	c.done(kind, m.OrderID, err)
}

func (c *OrderConsumer) done(kind, orderID string, err error) {
	if c.cfg.OnMessage != nil {
		c.cfg.OnMessage(kind, orderID, err)
	}
}

// Subjects returns the subjects the consumer reads, in the order paid,
// cancelled, refunded.
func (c *OrderConsumer) Subjects() []string { return slices.Clone(c.subjects()) }
