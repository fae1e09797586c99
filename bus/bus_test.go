package bus_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/bus"
)

// mode is one way of running the bus: embedded, or against an external server.
type mode struct {
	name string
	// open opens a bus on a fresh stream; cfg may set the duplicate window.
	open func(t *testing.T, cfg bus.Config) *bus.Bus
}

func modes() []mode {
	return []mode{
		{name: "embedded", open: openEmbedded},
		{name: "external", open: openExternal},
	}
}

func TestPublishAndReadBack(t *testing.T) {
	t.Parallel()
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := m.open(t, bus.Config{})
			envs := []bus.Envelope{
				envelope(t, 1, bus.TypeBatchPublished, "01JBATCH00000000000000000A", bus.BatchStatusChanged{
					BatchID: "01JBATCH00000000000000000A", Status: "active", From: "draft",
					TotalQuantity: 1000, GeneratedCount: 1000, At: at(),
				}),
				envelope(t, 2, bus.TypeClaimCreated, "01JCLAIM00000000000000000A", bus.ClaimCreated{
					ClaimID: "01JCLAIM00000000000000000A", BatchID: "01JBATCH00000000000000000A",
					UserID: "u-42", Code: "SPRING7K3QZ9X", Amount: 500,
					ValidFrom: at(), ValidTo: at().AddDate(0, 0, 7), ClaimedAt: at(),
				}),
				envelope(t, 3, bus.TypeBatchEnded, "01JBATCH00000000000000000A", bus.BatchStatusChanged{
					BatchID: "01JBATCH00000000000000000A", Status: "ended", From: "active", At: at(),
				}),
			}
			require.NoError(t, b.Publish(context.Background(), envs))

			msgs := readAll(t, b, len(envs))
			for i, msg := range msgs {
				want := envs[i]
				require.Equal(t, b.Subject(want.Type), msg.Subject())
				require.Equal(t, strconv.FormatInt(want.ID, 10), msg.Headers().Get(jetstream.MsgIDHeader))

				var got bus.Envelope
				require.NoError(t, json.Unmarshal(msg.Data(), &got))
				require.Equal(t, want.ID, got.ID)
				require.Equal(t, want.Type, got.Type)
				require.Equal(t, want.AggregateID, got.AggregateID)
				require.True(t, want.OccurredAt.Equal(got.OccurredAt), "occurred_at %v, want %v", got.OccurredAt, want.OccurredAt)
				require.JSONEq(t, string(want.Data), string(got.Data))
			}
		})
	}
}

func TestPublishSameIDStoresOneMessage(t *testing.T) {
	t.Parallel()
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := m.open(t, bus.Config{})
			ctx := context.Background()
			env := envelope(t, 7, bus.TypeBatchPaused, "b1", bus.BatchStatusChanged{BatchID: "b1", Status: "paused", From: "active", At: at()})

			require.NoError(t, b.Publish(ctx, []bus.Envelope{env}))
			require.NoError(t, b.Publish(ctx, []bus.Envelope{env}), "a duplicate is success")
			require.NoError(t, b.Publish(ctx, []bus.Envelope{env, env}), "a duplicate within one batch is success")

			require.EqualValues(t, 1, streamMsgs(t, b))
		})
	}
}

func TestPublishLargeBatch(t *testing.T) {
	t.Parallel()
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := m.open(t, bus.Config{})
			const n = 500
			envs := make([]bus.Envelope, n)
			for i := range envs {
				envs[i] = envelope(t, int64(i+1), bus.TypeClaimCreated, fmt.Sprintf("c%d", i+1), bus.ClaimCreated{ClaimID: fmt.Sprintf("c%d", i+1), BatchID: "b1", UserID: "u", Code: "X", Amount: 1})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, b.Publish(ctx, envs))
			require.EqualValues(t, n, streamMsgs(t, b))

			// Stored in publication order.
			for i, msg := range readAll(t, b, n) {
				require.Equal(t, strconv.Itoa(i+1), msg.Headers().Get(jetstream.MsgIDHeader))
			}
		})
	}
}

func TestPublishRefusesBadEnvelopes(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{})
	ctx := context.Background()
	for name, env := range map[string]bus.Envelope{
		"zero id":       {ID: 0, Type: bus.TypeClaimCreated, Data: json.RawMessage(`{}`)},
		"empty type":    {ID: 1, Type: "", Data: json.RawMessage(`{}`)},
		"wildcard type": {ID: 1, Type: "claim.*", Data: json.RawMessage(`{}`)},
		"bad data":      {ID: 1, Type: bus.TypeClaimCreated, Data: json.RawMessage(`{`)},
	} {
		require.Error(t, b.Publish(ctx, []bus.Envelope{env}), name)
	}
	require.EqualValues(t, 0, streamMsgs(t, b))
}

func TestPublishAfterCloseFails(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{})
	require.NoError(t, b.Close())
	err := b.Publish(context.Background(), []bus.Envelope{envelope(t, 1, bus.TypeBatchEnded, "b1", bus.BatchStatusChanged{})})
	require.Error(t, err)
}

func TestPublishCanceledContext(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Publish(ctx, []bus.Envelope{envelope(t, 1, bus.TypeBatchEnded, "b1", bus.BatchStatusChanged{})})
	require.ErrorIs(t, err, context.Canceled)
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := m.open(t, bus.Config{})
			require.NoError(t, b.Close())
			require.NoError(t, b.Close())
			require.True(t, b.Conn().IsClosed())
		})
	}
}

func TestStreamConfig(t *testing.T) {
	t.Parallel()
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := m.open(t, bus.Config{DuplicateWindow: 5 * time.Minute})
			s, err := b.JetStream().Stream(context.Background(), b.StreamName())
			require.NoError(t, err)
			cfg := s.CachedInfo().Config
			require.Equal(t, []string{b.Subject(">")}, cfg.Subjects)
			require.Equal(t, jetstream.FileStorage, cfg.Storage)
			require.Equal(t, 5*time.Minute, cfg.Duplicates)
			require.Equal(t, 1, cfg.Replicas)
		})
	}
}

func TestEmbeddedDefaults(t *testing.T) {
	t.Parallel()
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })

	require.Equal(t, "COUPOND", b.StreamName())
	require.Equal(t, "coupond.claim.created", b.Subject(bus.TypeClaimCreated))
	env := bus.Envelope{Type: bus.TypeClaimCreated}
	require.Equal(t, env.Subject(), b.Subject(bus.TypeClaimCreated))

	s, err := b.JetStream().Stream(context.Background(), "COUPOND")
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	require.Equal(t, []string{"coupond.>"}, cfg.Subjects)
	require.Equal(t, bus.DefaultDuplicateWindow, cfg.Duplicates)
}

// With Listen empty the embedded server has no listener at all: Addr reports
// the server's own listener, which it only creates when it may listen.
func TestEmbeddedOpensNoTCPPort(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{})
	require.Nil(t, b.Addr())
	require.True(t, b.Conn().IsConnected())
}

func TestEmbeddedListen(t *testing.T) {
	t.Parallel()
	b := openEmbedded(t, bus.Config{Listen: "127.0.0.1:0"})
	addr := b.Addr()
	require.NotNil(t, addr)
	tcp, ok := addr.(*net.TCPAddr)
	require.True(t, ok)
	require.NotZero(t, tcp.Port)

	// Another client reaches the stream over TCP.
	nc, err := nats.Connect("nats://"+addr.String(), nats.Timeout(5*time.Second))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, b.Publish(context.Background(), []bus.Envelope{envelope(t, 1, bus.TypeBatchEnded, "b1", bus.BatchStatusChanged{})}))
	s, err := js.Stream(context.Background(), b.StreamName())
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs)
}

func TestEmbeddedKeepsEventsAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir}, nil)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, []bus.Envelope{
		envelope(t, 1, bus.TypeBatchPublished, "b1", bus.BatchStatusChanged{}),
		envelope(t, 2, bus.TypeBatchEnded, "b1", bus.BatchStatusChanged{}),
	}))
	require.NoError(t, b.Close())

	// Reopening updates the duplicate window and keeps the events, and still
	// remembers their ids.
	b, err = bus.Open(ctx, bus.Config{StoreDir: dir, DuplicateWindow: time.Hour}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	require.EqualValues(t, 2, streamMsgs(t, b))
	require.NoError(t, b.Publish(ctx, []bus.Envelope{envelope(t, 2, bus.TypeBatchEnded, "b1", bus.BatchStatusChanged{})}))
	require.EqualValues(t, 2, streamMsgs(t, b))

	s, err := b.JetStream().Stream(ctx, b.StreamName())
	require.NoError(t, err)
	require.Equal(t, time.Hour, s.CachedInfo().Config.Duplicates)
}

func TestEmbeddedLogsNoBodies(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir()}, log)
	require.NoError(t, err)
	const secret = "user-secret-4711"
	require.NoError(t, b.Publish(context.Background(), []bus.Envelope{
		envelope(t, 1, bus.TypeClaimCreated, "c1", bus.ClaimCreated{UserID: secret, Code: secret}),
	}))
	require.NoError(t, b.Close())

	out := buf.String()
	require.Contains(t, out, "nats-server", "the server's log reaches the injected logger")
	require.Contains(t, out, "bus: ready")
	require.NotContains(t, out, secret)
	// The server's start-up banner is below info level.
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "Starting nats-server") {
			require.Contains(t, line, "level=DEBUG")
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, cfg := range map[string]bus.Config{
		"no store dir":      {},
		"replicas embedded": {StoreDir: t.TempDir(), Replicas: 3},
		"bad stream":        {StoreDir: t.TempDir(), Stream: "A.B"},
		"bad prefix":        {StoreDir: t.TempDir(), SubjectPrefix: "coupond"},
		"wildcard prefix":   {StoreDir: t.TempDir(), SubjectPrefix: "coupond.*."},
		"bad listen":        {StoreDir: t.TempDir(), Listen: "localhost"},
		"listen with url":   {URL: "nats://127.0.0.1:1", Listen: "127.0.0.1:0"},
		"negative window":   {StoreDir: t.TempDir(), DuplicateWindow: -time.Second},
	} {
		b, err := bus.Open(ctx, cfg, nil)
		require.Error(t, err, name)
		require.Nil(t, b, name)
	}
}

func TestOpenUnreachableURL(t *testing.T) {
	t.Parallel()
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	_, err = bus.Open(context.Background(), bus.Config{URL: "nats://" + addr}, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}

func openEmbedded(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	cfg.StoreDir = t.TempDir()
	b, err := bus.Open(context.Background(), cfg, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// openExternal opens a bus on the machine's NATS server, on a stream and
// subjects of its own that it deletes afterwards. Without a server the test
// is skipped, but not in CI, where the server is part of the setup.
func openExternal(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	url := os.Getenv("COUPOND_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	admin, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s is unreachable (%v); CI must provide it", url, err)
		}
		t.Skipf("skipping: NATS at %s is unreachable (%v); start nats-server -js or set COUPOND_TEST_NATS_URL", url, err)
	}
	suffix := randomSuffix(t)
	cfg.URL = url
	cfg.Stream = "COUPOND_TEST_" + strings.ToUpper(suffix)
	cfg.SubjectPrefix = "coupondtest." + suffix + "."
	// Registered first, so it runs after the bus is closed.
	t.Cleanup(func() {
		defer admin.Close()
		js, err := jetstream.New(admin)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = js.DeleteStream(ctx, cfg.Stream)
		}
		if err != nil {
			t.Errorf("delete stream %s: %v", cfg.Stream, err)
		}
	})
	b, err := bus.Open(context.Background(), cfg, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// readAll reads the first n messages of the bus's stream with an ordered
// consumer.
func readAll(t *testing.T, b *bus.Bus, n int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.JetStream().OrderedConsumer(ctx, b.StreamName(), jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var msgs []jetstream.Msg
	for len(msgs) < n {
		batch, err := c.Fetch(n-len(msgs), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		before := len(msgs)
		for msg := range batch.Messages() {
			msgs = append(msgs, msg)
		}
		require.NoError(t, batch.Error())
		require.Greater(t, len(msgs), before, "no message within the fetch wait; have %d of %d", len(msgs), n)
	}
	return msgs
}

func streamMsgs(t *testing.T, b *bus.Bus) uint64 {
	t.Helper()
	s, err := b.JetStream().Stream(context.Background(), b.StreamName())
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func envelope(t *testing.T, id int64, typ, aggregate string, data any) bus.Envelope {
	t.Helper()
	raw, err := json.Marshal(data)
	require.NoError(t, err)
	return bus.Envelope{ID: id, Type: typ, AggregateID: aggregate, OccurredAt: at(), Data: raw}
}

func at() time.Time { return time.Date(2026, 3, 14, 9, 30, 0, 123456000, time.UTC) }

func randomSuffix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

// testLogger writes the bus's log into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BenchmarkPublish500 publishes batches of 500 claim events, the relay's
// default batch, to the embedded server.
func BenchmarkPublish500(b *testing.B) {
	bs, err := bus.Open(context.Background(), bus.Config{StoreDir: b.TempDir()}, nil)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, bs.Close()) })
	data, err := json.Marshal(bus.ClaimCreated{ClaimID: "01KKNTWRE084NXENCRE5BKZB1M", BatchID: "01KJKHZE8001AM2YS5XQ9TM3NC", UserID: "u-884120", Code: "HBGHS2HPS6ZMVQN", Amount: 500, ValidFrom: at(), ValidTo: at(), ClaimedAt: at()})
	require.NoError(b, err)
	envs := make([]bus.Envelope, 500)
	id := int64(0)
	for b.Loop() {
		for i := range envs {
			id++
			envs[i] = bus.Envelope{ID: id, Type: bus.TypeClaimCreated, AggregateID: "c", OccurredAt: at(), Data: data}
		}
		if err := bs.Publish(context.Background(), envs); err != nil {
			b.Fatal(err)
		}
	}
}
