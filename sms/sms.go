// Package sms sends the one-time codes of SMS challenges through a
// pluggable Sender: LogSender (the default, for development and for
// deployments that have not configured a gateway) and WebhookSender, which
// posts each message to an HTTP endpoint in front of a real SMS gateway.
//
// A code is a secret until it is used: LogSender masks it unless told
// otherwise (LogCodes, for development only), so that production logs never
// hold a usable code; WebhookSender puts it in the request body only, never
// in a URL or a header, and signs the body so the gateway can tell that it
// comes from coupond.
package sms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/telemetry"
)

// Message is one SMS: a one-time code for a phone.
type Message struct {
	ChallengeID string
	BatchID     string
	Phone       string
	Code        string
	ExpiresAt   time.Time
	Text        string // the text to send, code included
}

// Sender sends messages. Send returns once the gateway accepted the message
// (or failed); an error means the user will not get it.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// CodeDigits is the length of a one-time code.
const CodeDigits = 6

// NewCode returns a uniformly random code of CodeDigits digits.
func NewCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand never fails
	}
	s := strconv.FormatInt(n.Int64(), 10)
	return strings.Repeat("0", CodeDigits-len(s)) + s
}

// DefaultText is the message template: {code} and {minutes} are replaced.
const DefaultText = "Your verification code is {code}. It expires in {minutes} minutes."

// Render fills a template with a code and its lifetime.
func Render(template, code string, ttl time.Duration) string {
	if template == "" {
		template = DefaultText
	}
	minutes := strconv.Itoa(max(int((ttl+time.Minute-1)/time.Minute), 1))
	return strings.NewReplacer("{code}", code, "{minutes}", minutes).Replace(template)
}

// LogSender writes each message to the log instead of sending it. The code
// is masked unless LogCodes is set, so the default is safe in production
// (where the code then reaches nobody: configure a webhook) and LogCodes
// turns it into a development tool.
type LogSender struct {
	Log *slog.Logger
	// LogCodes logs codes in full. Never set it in production: anyone who
	// reads the logs could then solve the challenges.
	LogCodes bool
}

// Send logs m, its phone masked but for the last 4 digits and, without
// LogCodes, its code masked entirely.
func (s *LogSender) Send(ctx context.Context, m Message) error {
	code := strings.Repeat("*", len(m.Code))
	if s.LogCodes {
		code = m.Code
	}
	s.Log.InfoContext(ctx, "sms: message not sent (log sender)",
		"challenge", m.ChallengeID, "batch", m.BatchID, "phone", telemetry.MaskPhone(m.Phone),
		"code", code, "expires_at", m.ExpiresAt)
	return nil
}

// WebhookConfig configures a WebhookSender.
type WebhookConfig struct {
	URL string
	// Secret, if set, signs each body: the header X-Coupond-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body with this secret.
	Secret string
	// Header is added to every request (e.g. the gateway's Authorization).
	Header  http.Header
	Timeout time.Duration // default 3s
	HTTP    *http.Client
	// Guard is the breaker, timeout and metrics of the calls; default one
	// named "sms" with Timeout.
	Guard *guard.External
}

// WebhookSender posts each message as JSON to a URL:
//
//	POST <url>  {"challenge_id": …, "batch_id": …, "phone": …, "code": …, "text": …, "expires_at": …}
//
// Any 2xx answer is success; anything else, or no answer within the
// timeout, is an error wrapping coupon.ErrUnavailable.
type WebhookSender struct {
	cfg WebhookConfig
}

// NewWebhookSender returns a sender posting to cfg.URL.
func NewWebhookSender(cfg WebhookConfig) *WebhookSender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Guard == nil {
		cfg.Guard = guard.NewExternal(guard.ExternalConfig{Name: "sms", Timeout: cfg.Timeout}, "send")
	}
	return &WebhookSender{cfg: cfg}
}

type webhookBody struct {
	ChallengeID string    `json:"challenge_id"`
	BatchID     string    `json:"batch_id"`
	Phone       string    `json:"phone"`
	Code        string    `json:"code"`
	Text        string    `json:"text"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Send posts m.
func (s *WebhookSender) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(webhookBody{ChallengeID: m.ChallengeID, BatchID: m.BatchID, Phone: m.Phone, Code: m.Code,
		Text: m.Text, ExpiresAt: m.ExpiresAt})
	if err != nil {
		return err
	}
	err = s.cfg.Guard.Do(ctx, "send", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		for k, vs := range s.cfg.Header {
			req.Header[k] = vs
		}
		if s.cfg.Secret != "" {
			req.Header.Set("X-Coupond-Signature", "sha256="+Signature(s.cfg.Secret, body))
		}
		resp, err := s.cfg.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<10))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		// The error must not carry the code: it is logged.
		return fmt.Errorf("sms webhook: %w: %w", coupon.ErrUnavailable, err)
	}
	return nil
}

// Signature is the hex HMAC-SHA256 of body with secret: what a gateway
// compares the X-Coupond-Signature header with.
func Signature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
