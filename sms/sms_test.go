package sms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/sms"
)

func TestWebhookSender(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []byte
	var sig string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got, _ = io.ReadAll(r.Body)
		sig = r.Header.Get("X-Coupond-Signature")
		if fail {
			w.WriteHeader(502)
		}
	}))
	t.Cleanup(srv.Close)
	s := sms.NewWebhookSender(sms.WebhookConfig{URL: srv.URL, Secret: "gateway secret", Timeout: time.Second})
	m := sms.Message{ChallengeID: "c1", BatchID: "b1", Phone: "+8613800000000", Code: "123456", Text: "code 123456", ExpiresAt: time.Unix(1794355500, 0).UTC()}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	var body map[string]any
	_ = json.Unmarshal(got, &body)
	if body["code"] != "123456" || body["phone"] != "+8613800000000" || sig != "sha256="+sms.Signature("gateway secret", got) {
		t.Fatalf("body %s, signature %q", got, sig)
	}
	fail = true
	mu.Unlock()
	err := s.Send(context.Background(), m)
	if !errors.Is(err, coupon.ErrUnavailable) || strings.Contains(err.Error(), "123456") {
		t.Fatalf("failed send: %v (must be unavailable, without the code)", err)
	}
}

func TestCodesAndLogSender(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		c := sms.NewCode()
		if len(c) != sms.CodeDigits || strings.Trim(c, "0123456789") != "" {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 190 {
		t.Fatalf("only %d distinct codes of 200", len(seen))
	}
	var buf bytes.Buffer
	s := &sms.LogSender{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	_ = s.Send(context.Background(), sms.Message{ChallengeID: "c1", Phone: "+8613800000000", Code: "987654"})
	if strings.Contains(buf.String(), "987654") || strings.Contains(buf.String(), "13800000000") {
		t.Fatalf("the log shows the code or the phone: %s", buf.String())
	}
}
