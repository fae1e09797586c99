package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/sms"
)

// accessParts are the App's pieces of access control and anti-fraud.
type accessParts struct {
	keyring *auth.Keyring
	sync    *listSync
}

// setupKeyring picks the secret API keys' secrets are derived from:
// COUPOND_KEY_SECRET; else one derived from COUPOND_ADMIN_TOKEN when it is
// configured (every instance of a deployment shares it); else a random one
// kept in the data directory, for a single instance whose admin token is
// generated per run. It runs before a missing admin token is generated.
func (a *App) setupKeyring() error {
	switch {
	case a.cfg.Access.KeySecret != "":
		a.access.keyring = auth.NewKeyring([]byte(a.cfg.Access.KeySecret))
	case a.cfg.AdminToken != "":
		sum := sha256.Sum256([]byte("coupond key secret\x00" + a.cfg.AdminToken))
		a.access.keyring = auth.NewKeyring(sum[:])
	default:
		secret, err := keySecretFile(filepath.Join(a.cfg.DataDir, "key-secret"))
		if err != nil {
			return err
		}
		a.access.keyring = auth.NewKeyring(secret)
		if a.cfg.Postgres.URL != "" {
			a.log.Warn("API keys are derived from a secret in this instance's data dir: other instances will not accept them; set COUPOND_KEY_SECRET (or COUPOND_ADMIN_TOKEN) on every instance")
		}
	}
	return nil
}

// keySecretFile reads the key secret kept at path, making it on first use.
func keySecretFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(raw))) > 0 {
		return []byte(strings.TrimSpace(string(raw))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key secret: %w", err)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("key secret: %w", err)
	}
	return []byte(secret), nil
}

// accessConfig is the service's configuration of access control and
// anti-fraud; zero settings (a Config literal in a test) take the defaults.
func (a *App) accessConfig() service.AccessConfig {
	c := service.AccessConfig{
		Keyring:         a.access.keyring,
		AppKeysMustSign: !a.cfg.Access.AppKeysBearer,
		SignatureSkew:   a.cfg.Access.SignatureSkew,
		KeyCacheTTL:     a.cfg.Access.KeyCacheTTL,
		SMS: service.SMSConfig{
			Sender: a.SMSSender, TTL: a.cfg.SMS.TTL, MaxAttempts: a.cfg.SMS.MaxAttempts,
			ResendInterval: a.cfg.SMS.ResendInterval, PerHour: a.cfg.SMS.PerHour, Text: a.cfg.SMS.Text,
		},
	}
	if c.SMS.Sender == nil {
		switch a.cfg.SMS.Sender {
		case "webhook":
			c.SMS.Sender = sms.NewWebhookSender(sms.WebhookConfig{URL: a.cfg.SMS.WebhookURL, Secret: a.cfg.SMS.WebhookSecret,
				Guard: guard.NewExternal(guard.ExternalConfig{Name: "sms", Timeout: 3 * time.Second, Failures: a.cfg.Ops.BreakerFailures,
					Cooldown: a.cfg.Ops.BreakerCooldown, Tracer: a.Tracing.Tracer("sms"), Metrics: a.Metrics}, "send")})
		default:
			c.SMS.Sender = &sms.LogSender{Log: a.log, LogCodes: a.cfg.SMS.LogCodes}
			if a.cfg.SMS.LogCodes {
				a.log.Warn("SMS codes are written to the log in full (COUPOND_SMS_LOG_CODES): for development only")
			}
		}
	}
	if a.cfg.Risk.URL != "" {
		timeout := a.cfg.Risk.Timeout
		if timeout <= 0 {
			timeout = 200 * time.Millisecond
		}
		c.Risk = risk.NewExternal(risk.ExternalConfig{URL: a.cfg.Risk.URL, Timeout: timeout, FailOpen: a.cfg.Risk.FailOpen,
			Guard: guard.NewExternal(guard.ExternalConfig{Name: "risk", Timeout: timeout, Failures: a.cfg.Ops.BreakerFailures,
				Cooldown: a.cfg.Ops.BreakerCooldown, Tracer: a.Tracing.Tracer("risk"), Metrics: a.Metrics}, "assess")})
	}
	if sw := a.Switches.Get(guard.SwitchRiskScoring); sw != nil {
		c.RiskOn = sw.On
	}
	if a.Metrics != nil {
		var dropped atomic.Int64
		a.Metrics.CounterFunc("coupond_refusals_dropped_total", "Refusals not recorded because the store fell behind a flood of them.",
			func() float64 { return float64(dropped.Load()) })
		c.OnRefusalDropped = func(n int) { dropped.Add(int64(n)) }
	}
	return c
}

// startAccess loads every list into this instance's replica, before it
// serves claims, and starts following their changes.
func (a *App) startAccess(ctx context.Context) error {
	if err := a.Service.SyncLists(ctx); err != nil {
		return fmt.Errorf("load lists: %w", err)
	}
	a.log.Info("lists loaded", "entries", a.Service.ListEntriesHeld())
	every := a.cfg.Access.ListSync
	if every <= 0 {
		every = time.Second
	}
	a.access.sync = &listSync{svc: a.Service, every: every, log: a.log.With("worker", "list-sync")}
	a.access.sync.Start(context.WithoutCancel(ctx))
	return nil
}

func (a *App) stopAccess() {
	if a.access.sync != nil {
		a.access.sync.Stop()
	}
}

// listSync applies the lists' changes made on other instances, every
// interval. Stop is safe twice.
type listSync struct {
	svc   *service.Service
	every time.Duration
	log   interface {
		Warn(msg string, args ...any)
	}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (l *listSync) Start(ctx context.Context) {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(l.every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				if err := l.svc.SyncLists(ctx); err != nil {
					l.log.Warn("list sync failed; retrying next interval", "err", err)
				}
			}
		}
	}()
}

func (l *listSync) Stop() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
	})
}
