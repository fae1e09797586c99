package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/coupond/coupond/telemetry"
)

// Secrets that must never reach a log, whichever way a caller passes them.
const (
	token    = "s3cr3t-T0ken-VALUE"
	password = "hunter2-pass"
	phone    = "+8613812345678"
	bare     = "13812345678"
)

func TestLogsNeverHoldSecrets(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := telemetry.NewLogger(format, "debug", &buf)
			hdr := http.Header{"Authorization": {"Bearer " + token}, "X-Api-Key": {token}, "Accept": {"application/json"}}
			type claimant struct {
				UserID string `json:"user_id"`
				Phone  string `json:"phone"`
			}
			type config struct {
				AdminToken  string
				PostgresURL string
			}

			log.Info("plain attrs", "token", token, "admin_token", token, "Authorization", "Bearer "+token,
				"password", password, "client_secret", token, "phone", phone, "mobile", bare, "cookie", "session="+token)
			log.Info("header map", "headers", hdr)
			log.Info("struct", "who", claimant{UserID: "alice", Phone: phone}, "cfg", config{AdminToken: token, PostgresURL: "postgres://app:" + password + "@db:5432/coupond"})
			log.Info("pointer struct", "who", &claimant{UserID: "bob", Phone: bare})
			log.Error("error text", "err", fmt.Errorf("request failed: Authorization: Bearer %s", token))
			log.Error("dsn in error", "err", errors.New("connect postgres://app:"+password+"@db:5432/coupond?sslmode=disable failed"))
			log.Warn("query string", "url", "https://sms.example/send?to="+phone+"&api_key="+token+"&token="+token)
			log.Warn("message with a phone " + phone + " and " + bare + " inside")
			log.Warn("json in a string", "body", `{"user_id":"carol","phone":"`+phone+`","token":"`+token+`"}`)
			log.With("token", token, "phone", phone).Info("preset attrs")
			log.WithGroup("req").Info("grouped", "authorization", "Basic "+token, slog.Group("user", "phone", phone))
			log.Info("stringer", "v", stringer("Bearer "+token))
			log.Info("bytes", "raw", []byte("password="+password))

			out := buf.String()
			for _, secret := range []string{token, password, phone, bare, "12345678"} {
				require.NotContains(t, out, secret, "a secret reached the log:\n%s", out)
			}
			require.Contains(t, out, "5678", "a phone keeps its last 4 digits")
			require.Contains(t, out, telemetry.Redacted)
			require.Contains(t, out, "alice", "what is not secret stays readable")
			require.Contains(t, out, "application/json")
			require.Equal(t, 13, strings.Count(out, "\n"), "every line written:\n%s", out)
		})
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// Counts, ids and times stay as they are: only phone-shaped runs are masked.
func TestRedactionKeepsOrdinaryNumbers(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := telemetry.NewLogger("json", "info", &buf)
	log.Info("published events 1234567 to 1234999 at 2026-03-14T09:31:00Z", "batch", "01JQ3W8Z9N4M7K2H5G6F1D0C8B", "amount", 12345678901)
	out := buf.String()
	require.Contains(t, out, "1234567 to 1234999")
	require.Contains(t, out, "2026-03-14T09:31:00Z")
	require.Contains(t, out, "01JQ3W8Z9N4M7K2H5G6F1D0C8B")
	require.Contains(t, out, "12345678901", "numbers that are not strings are not phone numbers")
}

func TestMaskPhone(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"+8613812345678": "+*********5678",
		"13812345678":    "*******5678",
		"138-1234-5678":  "***-****-5678",
		"1234":           "****",
		"":               "",
	} {
		require.Equal(t, want, telemetry.MaskPhone(in), in)
	}
}

func TestEveryLineOfARequestCarriesItsIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := telemetry.NewLogger("json", "info", &buf)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	ctx = telemetry.WithRequest(ctx, &telemetry.Request{ID: "req-1"})
	log.InfoContext(ctx, "one")
	log.With("worker", "x").WarnContext(ctx, "two", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6)
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	for _, l := range lines[:2] {
		require.Contains(t, l, `"request_id":"req-1"`)
		require.Contains(t, l, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`)
	}
	require.NotContains(t, lines[2], "request_id")
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	a, b := telemetry.NewRequestID(), telemetry.NewRequestID()
	require.NotEqual(t, a, b)
	require.True(t, telemetry.ValidRequestID(a))
	require.False(t, telemetry.ValidRequestID("x\ny"))
	require.False(t, telemetry.ValidRequestID(strings.Repeat("a", 65)))
	require.False(t, telemetry.ValidRequestID(""))
}
