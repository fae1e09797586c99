package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultStream          = "COUPOND"
	DefaultDuplicateWindow = 2 * time.Minute
)

const (
	// readyTimeout bounds the start of the embedded server.
	readyTimeout = 10 * time.Second
	// ackTimeout fails a publication whose ack never comes (a lost reply, a
	// stream leader that went away) so that the caller retries it.
	ackTimeout = 10 * time.Second
	// drainTimeout bounds Close's wait for in-flight messages.
	drainTimeout = 10 * time.Second
)

// Config configures the bus. The zero value with a StoreDir runs an embedded
// server with no TCP port.
type Config struct {
	// URL of an external NATS server or cluster, e.g. nats://127.0.0.1:4222.
	// Empty: start an embedded server in-process.
	URL string
	// StoreDir is where the embedded server keeps JetStream's files.
	// Required when URL is empty; unused otherwise.
	StoreDir string
	// Listen, host:port, also opens a TCP port on the embedded server, for
	// the nats CLI or other processes; port 0 picks a free one. The port has
	// no authentication: bind it to a loopback address. Empty: in-process only.
	Listen string
	// Stream is the JetStream stream of the events; default "COUPOND".
	Stream string
	// SubjectPrefix starts every subject; the stream takes SubjectPrefix+">".
	// Default SubjectPrefix ("coupond."). Only tests that share a NATS server
	// with other streams change it.
	SubjectPrefix string
	// Replicas of the stream; default 1. The embedded server holds one.
	Replicas int
	// DuplicateWindow is how long JetStream remembers a message id to drop a
	// re-publication; default 2m.
	DuplicateWindow time.Duration
}

// Bus publishes events to a JetStream stream and gives consumers the
// connection. It is safe for concurrent use.
type Bus struct {
	stream string
	prefix string
	log    *slog.Logger
	server *server.Server // nil with an external server
	nc     *nats.Conn
	js     jetstream.JetStream

	connClosed chan struct{} // closed when the connection has closed
	closeOnce  sync.Once
	closeErr   error
}

// Open starts the embedded server (if cfg.URL is empty), connects to it or
// to cfg.URL, and creates the stream or brings its subjects, replicas and
// duplicate window to cfg. Other settings of an existing stream, such as
// limits an operator has set, are kept.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{
		stream:     cfg.Stream,
		prefix:     cfg.SubjectPrefix,
		log:        log,
		connClosed: make(chan struct{}),
	}
	url := cfg.URL
	opts := []nats.Option{
		nats.Name("coupond"),
		// A service outlives a NATS restart or a leader change: keep trying.
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(b.connClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("bus: NATS subscription error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("bus: NATS error", "err", err)
		}),
	}
	if cfg.URL == "" {
		ns, err := startServer(cfg, log)
		if err != nil {
			return nil, err
		}
		b.server = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("bus: connect to NATS at %s: %w", redact(url), err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err == nil {
		err = b.ensureStream(ctx, cfg)
	}
	if err != nil {
		nc.Close()
		b.shutdownServer()
		return nil, err
	}
	log.Info("bus: ready", "stream", b.stream, "embedded", b.server != nil, "listen", b.addrString())
	return b, nil
}

// Publish publishes each envelope as JSON to its subject with its id as the
// Nats-Msg-Id header, all at once, and returns when JetStream has stored
// every one, or with the first error. A message JetStream drops as a
// duplicate counts as stored. On error some envelopes may be stored
// already: publishing them again is safe within the duplicate window.
func (b *Bus) Publish(ctx context.Context, envs []Envelope) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: publish: %w", err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(envs))
	for i := range envs {
		env := &envs[i]
		if err := validEvent(env); err != nil {
			return err
		}
		data, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("bus: encode event %d: %w", env.ID, err)
		}
		msg := &nats.Msg{
			Subject: b.prefix + env.Type,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{strconv.FormatInt(env.ID, 10)}},
			Data:    data,
		}
		injectTrace(ctx, env.Trace, msg.Header)
		f, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(b.stream))
		if err != nil {
			return fmt.Errorf("bus: publish event %d: %w", env.ID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bus: publish event %d: %w", envs[i].ID, err)
		case <-ctx.Done():
			return fmt.Errorf("bus: publish: waiting for acks: %w", ctx.Err())
		}
	}
	return nil
}

// Subject returns the subject of events of type eventType, for consumers'
// filters.
func (b *Bus) Subject(eventType string) string { return b.prefix + eventType }

// StreamName returns the name of the events' stream.
func (b *Bus) StreamName() string { return b.stream }

// JetStream returns the JetStream context, for consumers.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn returns the NATS connection. Close drains it: do not close it.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Addr returns the TCP address the embedded server listens on, or nil when
// it has none (Listen empty) or the server is external.
func (b *Bus) Addr() net.Addr {
	if b.server == nil {
		return nil
	}
	return b.server.Addr()
}

// Close drains the connection, letting in-flight messages finish, then
// shuts the embedded server down and waits for it. Calling it again returns
// the first result.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Bus) close() error {
	var errs []error
	if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		errs = append(errs, fmt.Errorf("bus: drain: %w", err))
		b.nc.Close()
	}
	select {
	case <-b.connClosed:
	case <-time.After(drainTimeout + time.Second):
		// The client gives up draining after its own timeout; this is a
		// backstop in case its closed callback never comes.
		errs = append(errs, errors.New("bus: drain: timed out"))
		b.nc.Close()
	}
	b.shutdownServer()
	b.log.Info("bus: closed", "stream", b.stream)
	return errors.Join(errs...)
}

func (b *Bus) shutdownServer() {
	if b.server == nil {
		return
	}
	b.server.Shutdown()
	b.server.WaitForShutdown()
}

func (b *Bus) addrString() string {
	if a := b.Addr(); a != nil {
		return a.String()
	}
	return ""
}

// ensureStream creates the stream, or updates the settings the bus owns.
// Two instances starting at once may both try to create it: the loser sees
// the stream on its second pass.
func (b *Bus) ensureStream(ctx context.Context, cfg Config) error {
	want := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "coupond events",
		Subjects:    []string{cfg.SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	}
	for attempt := 0; ; attempt++ {
		s, err := b.js.Stream(ctx, cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = b.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue
			}
			if err != nil {
				return fmt.Errorf("bus: create stream %s: %w", cfg.Stream, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("bus: look up stream %s: %w", cfg.Stream, err)
		}
		have := s.CachedInfo().Config
		if slices.Equal(have.Subjects, want.Subjects) && have.Replicas == want.Replicas &&
			have.Duplicates == want.Duplicates && have.Storage == want.Storage {
			return nil
		}
		next := have
		next.Subjects, next.Replicas, next.Duplicates, next.Storage = want.Subjects, want.Replicas, want.Duplicates, want.Storage
		if _, err := b.js.UpdateStream(ctx, next); err != nil {
			return fmt.Errorf("bus: update stream %s: %w", cfg.Stream, err)
		}
		b.log.Info("bus: stream updated", "stream", cfg.Stream)
		return nil
	}
}

func (c *Config) normalize() error {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = SubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	switch {
	case strings.ContainsAny(c.Stream, ".*> \t\r\n/\\"):
		return fmt.Errorf("bus: stream name %q must not contain '.', '*', '>', '/', '\\' or white space", c.Stream)
	case !validToken(strings.TrimSuffix(c.SubjectPrefix, ".")) || !strings.HasSuffix(c.SubjectPrefix, "."):
		return fmt.Errorf("bus: subject prefix %q must be dot-separated tokens ending in '.', without wildcards", c.SubjectPrefix)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("bus: replicas must be between 1 and 5, not %d", c.Replicas)
	case c.DuplicateWindow < 0:
		return errors.New("bus: the duplicate window must not be negative")
	case c.URL == "" && c.StoreDir == "":
		return errors.New("bus: the embedded server needs a store directory")
	case c.URL == "" && c.Replicas != 1:
		return errors.New("bus: the embedded server holds one replica; replicas need a NATS cluster")
	case c.URL != "" && c.Listen != "":
		return errors.New("bus: listen applies to the embedded server only, not with a NATS URL")
	}
	return nil
}

func startServer(cfg Config, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "coupond",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("bus: listen address %q: bad port", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("bus: embedded server not ready after %s", readyTimeout)
	}
	return ns, nil
}

// serverLogger routes the embedded server's log to slog, a level quieter:
// its notices (a banner of a dozen lines at start) become debug records.
// Debug and trace output is dropped, since traces carry message bodies.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }

// Fatalf logs only: the server's own fatal logger would exit the process.
func (l serverLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(string, ...any)          {}
func (l serverLogger) Tracef(string, ...any)          {}

func validEvent(env *Envelope) error {
	if env.ID <= 0 {
		return fmt.Errorf("bus: event id %d: must be positive", env.ID)
	}
	if !validToken(env.Type) {
		return fmt.Errorf("bus: event %d: type %q is not a subject of dot-separated tokens", env.ID, env.Type)
	}
	return nil
}

// validToken reports whether s is one or more dot-separated subject tokens
// without wildcards.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}

// redact drops credentials from a server URL before it is logged.
func redact(url string) string {
	if at := strings.LastIndex(url, "@"); at >= 0 {
		if scheme := strings.Index(url, "://"); scheme >= 0 && scheme < at {
			return url[:scheme+3] + "***" + url[at:]
		}
	}
	return url
}
