package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/sms"
	"github.com/coupond/coupond/store"
)

// AccessConfig configures access control and anti-fraud. The zero value
// works: no API keys (only the bootstrap token), the logging SMS sender,
// no external risk service.
type AccessConfig struct {
	// Keyring derives API keys' secrets; nil: keys cannot be created, and
	// none authenticate.
	Keyring *auth.Keyring
	// AppKeysMustSign refuses an app key presented as a bearer token: app
	// keys live in client-facing backends, so their requests are signed.
	AppKeysMustSign bool
	// SignatureSkew is how far a signature's timestamp may be from the
	// server's clock; default 5m. Nonces are remembered twice as long.
	SignatureSkew time.Duration
	// KeyCacheTTL is how long a key read from the store is trusted; a key
	// revoked on another instance is refused here after at most this long.
	// Default 5s.
	KeyCacheTTL time.Duration
	// RuleSetCacheTTL is the same for risk rule sets; default 5s.
	RuleSetCacheTTL time.Duration

	// SMS configures SMS challenges.
	SMS SMSConfig
	// Risk is the external risk service; nil: none.
	Risk *risk.External
	// RiskOn reports whether risk scoring runs (the risk_scoring switch);
	// nil: always.
	RiskOn func() bool
	// RefusalBuffer bounds the refusals waiting to be recorded; beyond it
	// they are counted and dropped, so that a flood of refused requests
	// cannot make the store its bottleneck. Default 8192.
	RefusalBuffer int
	// OnRefusalDropped is called with the number of refusals dropped.
	OnRefusalDropped func(n int)
}

// SMSConfig configures SMS challenges.
type SMSConfig struct {
	Sender sms.Sender // default: a sms.LogSender on the service's logger
	// TTL is how long a code can be used; default 5m.
	TTL time.Duration
	// MaxAttempts is how many wrong codes use a challenge up; default 5.
	MaxAttempts int
	// ResendInterval is the least time between two challenges of one
	// phone; default 60s. PerHour caps a phone's challenges in an hour;
	// default 5.
	ResendInterval time.Duration
	PerHour        int
	Text           string // the message template; default sms.DefaultText
}

func (c AccessConfig) withDefaults(log *slog.Logger) AccessConfig {
	if c.SignatureSkew <= 0 {
		c.SignatureSkew = 5 * time.Minute
	}
	if c.KeyCacheTTL <= 0 {
		c.KeyCacheTTL = 5 * time.Second
	}
	if c.RuleSetCacheTTL <= 0 {
		c.RuleSetCacheTTL = 5 * time.Second
	}
	if c.RefusalBuffer <= 0 {
		c.RefusalBuffer = 8192
	}
	if c.RiskOn == nil {
		c.RiskOn = func() bool { return true }
	}
	if c.SMS.Sender == nil {
		c.SMS.Sender = &sms.LogSender{Log: log}
	}
	if c.SMS.TTL <= 0 {
		c.SMS.TTL = 5 * time.Minute
	}
	if c.SMS.MaxAttempts <= 0 {
		c.SMS.MaxAttempts = 5
	}
	if c.SMS.ResendInterval <= 0 {
		c.SMS.ResendInterval = time.Minute
	}
	if c.SMS.PerHour <= 0 {
		c.SMS.PerHour = 5
	}
	return c
}

// accessState is the service's part for access control and anti-fraud.
type accessState struct {
	cfg      AccessConfig
	lists    *access.Lists
	listSync sync.Mutex // one sync of the replica at a time
	// identityLoads loads a batch's identity counts once at a time.
	identityLoads flight[struct{}]
	keys          cache[*cachedKey]
	rules         cache[*risk.RuleSet]
	refusals      *batchWriter[access.Refusal]
	devices       *batchWriter[store.ClaimDevice]
}

func newAccessState(cfg AccessConfig, st store.Store, log *slog.Logger) *accessState {
	cfg = cfg.withDefaults(log)
	return &accessState{
		cfg:   cfg,
		lists: access.NewLists(),
		keys:  cache[*cachedKey]{ttl: cfg.KeyCacheTTL},
		rules: cache[*risk.RuleSet]{ttl: cfg.RuleSetCacheTTL},
		refusals: newBatchWriter("refusals", cfg.RefusalBuffer, func(ctx context.Context, rs []access.Refusal) error {
			return st.InsertRefusals(ctx, rs)
		}, log, cfg.OnRefusalDropped),
		devices: newBatchWriter("claim devices", cfg.RefusalBuffer, func(ctx context.Context, ds []store.ClaimDevice) error {
			return st.AddClaimDevices(ctx, ds)
		}, log, nil),
	}
}

// close writes the records still waiting.
func (a *accessState) close() {
	a.refusals.stop()
	a.devices.stop()
}

// NewKey asks for an API key.
type NewKey struct {
	Name       string
	Role       auth.Role
	MerchantID string
}

// IssuedKey is a key with its secret, shown once: at creation and at each
// rotation.
type IssuedKey struct {
	*auth.Key
	Secret string
	Token  string // the bearer token: id, a dot, the secret
}

// CreateKey makes an API key.
func (s *Service) CreateKey(ctx context.Context, in NewKey) (*IssuedKey, error) {
	var v coupon.Validation
	if len(in.Name) > 200 {
		v.Add("name", "must be at most 200 bytes")
	}
	if !in.Role.Valid() {
		v.Add("role", "must be one of admin, operator, merchant, app")
	}
	switch {
	case in.Role == auth.Merchant:
		coupon.ValidIdentifier(&v, "merchant_id", in.MerchantID, true)
	case in.MerchantID != "":
		v.Add("merchant_id", "applies to the merchant role only")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	kr := s.acc.cfg.Keyring
	if kr == nil {
		return nil, coupon.Errorf(coupon.CodeUnavailable, "API keys are not configured on this server")
	}
	now := s.clock()
	k := &auth.Key{ID: coupon.NewID(now), Name: in.Name, Role: in.Role, MerchantID: in.MerchantID, Salt: auth.NewSalt(), CreatedAt: now}
	secret := kr.Secret(k.ID, k.Salt)
	k.SecretHash = auth.HashSecret(secret)
	if err := s.store.CreateKey(ctx, k); err != nil {
		return nil, unavailable("create key", err)
	}
	return &IssuedKey{Key: k, Secret: secret, Token: auth.Token(k.ID, secret)}, nil
}

// GetKey returns a key (never its secret).
func (s *Service) GetKey(ctx context.Context, id string) (*auth.Key, error) {
	if !auth.ValidKeyID(id) {
		return nil, fmt.Errorf("key %q: %w", id, coupon.ErrNotFound)
	}
	k, err := s.store.GetKey(ctx, id)
	if err != nil {
		return nil, unavailable("get key", notFound("key", id, err))
	}
	return k, nil
}

// ListKeys lists keys in id order, with the cursor of the next page.
func (s *Service) ListKeys(ctx context.Context, cursor string, limit int) ([]*auth.Key, string, error) {
	var v coupon.Validation
	limit = clampLimit(&v, limit)
	if cursor != "" && !auth.ValidKeyID(cursor) {
		v.Add("cursor", "is not a cursor this API returned")
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	ks, err := s.store.ListKeys(ctx, store.KeyFilter{Cursor: cursor, Limit: limit + 1})
	if err != nil {
		return nil, "", unavailable("list keys", err)
	}
	next := ""
	if len(ks) > limit {
		ks = ks[:limit]
		next = ks[limit-1].ID
	}
	return ks, next, nil
}

// RevokeKey revokes a key at once on this instance, and on the others
// within the key cache's TTL.
func (s *Service) RevokeKey(ctx context.Context, id string) (*auth.Key, error) {
	if !auth.ValidKeyID(id) {
		return nil, fmt.Errorf("key %q: %w", id, coupon.ErrNotFound)
	}
	k, err := s.store.RevokeKey(ctx, id, s.clock())
	s.acc.keys.drop(id)
	if err != nil {
		return nil, unavailable("revoke key", notFound("key", id, err))
	}
	return k, nil
}

// MaxKeyGrace bounds how long a rotated key's previous secret stays valid.
const MaxKeyGrace = 7 * 24 * time.Hour

// RotateKey gives a key a new secret. The previous one stays valid for
// grace (0: not at all), so that clients can switch without downtime.
func (s *Service) RotateKey(ctx context.Context, id string, grace time.Duration) (*IssuedKey, error) {
	if grace < 0 || grace > MaxKeyGrace {
		var v coupon.Validation
		v.Addf("grace_seconds", "must be between 0 and %d", int(MaxKeyGrace/time.Second))
		return nil, v.Err()
	}
	if !auth.ValidKeyID(id) {
		return nil, fmt.Errorf("key %q: %w", id, coupon.ErrNotFound)
	}
	kr := s.acc.cfg.Keyring
	if kr == nil {
		return nil, coupon.Errorf(coupon.CodeUnavailable, "API keys are not configured on this server")
	}
	now := s.clock()
	salt := auth.NewSalt()
	secret := kr.Secret(id, salt)
	p := store.RotateKey{ID: id, Salt: salt, SecretHash: auth.HashSecret(secret), At: now}
	if grace > 0 {
		p.PreviousExpiresAt = now.Add(grace)
	}
	k, err := s.store.RotateKey(ctx, p)
	s.acc.keys.drop(id)
	switch {
	case errors.Is(err, store.ErrKeyRevoked):
		return nil, coupon.Errorf(coupon.CodeConflict, "key %s is revoked and cannot be rotated", id)
	case err != nil:
		return nil, unavailable("rotate key", notFound("key", id, err))
	}
	return &IssuedKey{Key: k, Secret: secret, Token: auth.Token(k.ID, secret)}, nil
}

// cachedKey is a live key with its usable secrets.
type cachedKey struct {
	principal auth.Principal
	secrets   []keySecret // the current one first
	missing   bool        // no such key, or revoked
}

type keySecret struct {
	secret  string
	hash    string
	expires time.Time // zero: none
}

// KeyCredential is what verifies a request made with an API key: who it
// is, and the secrets it may sign with or present.
type KeyCredential struct {
	Principal auth.Principal
	Secrets   []string
}

// ErrUnknownKey is returned for a key id that names no live key.
var ErrUnknownKey = access.ErrUnauthorized

// KeyCredential returns the principal and the usable secrets of a live
// key, from a cache refreshed every KeyCacheTTL; ErrUnknownKey if the key
// does not exist or is revoked (the answer is cached too, so that a flood of
// made-up ids does not reach the store).
func (s *Service) KeyCredential(ctx context.Context, id string) (KeyCredential, error) {
	kr := s.acc.cfg.Keyring
	if kr == nil || !auth.ValidKeyID(id) {
		return KeyCredential{}, ErrUnknownKey
	}
	now := s.clock()
	ck, err := s.acc.keys.get(id, now, func() (*cachedKey, error) {
		k, err := s.store.GetKey(ctx, id)
		if errors.Is(err, coupon.ErrNotFound) {
			return &cachedKey{missing: true}, nil
		}
		if err != nil {
			return nil, unavailable("get key", err)
		}
		if k.Revoked() {
			return &cachedKey{missing: true}, nil
		}
		ck := &cachedKey{principal: k.Principal()}
		for _, cand := range []struct {
			salt, hash string
			expires    time.Time
		}{{k.Salt, k.SecretHash, time.Time{}}, {k.PreviousSalt, k.PreviousSecretHash, k.PreviousExpiresAt}} {
			if cand.salt == "" {
				continue
			}
			secret := kr.Secret(k.ID, cand.salt)
			if !auth.SameHash(auth.HashSecret(secret), cand.hash) {
				// The key was made with another key secret: this server
				// cannot verify it. Every instance must share one.
				s.log.ErrorContext(ctx, "API key does not match this server's key secret (COUPOND_KEY_SECRET differs between instances?)",
					"key", k.ID)
				continue
			}
			ck.secrets = append(ck.secrets, keySecret{secret: secret, hash: cand.hash, expires: cand.expires})
		}
		return ck, nil
	})
	if err != nil {
		return KeyCredential{}, err
	}
	if ck.missing {
		return KeyCredential{}, ErrUnknownKey
	}
	kc := KeyCredential{Principal: ck.principal}
	for _, sec := range ck.secrets {
		if sec.expires.IsZero() || now.Before(sec.expires) {
			kc.Secrets = append(kc.Secrets, sec.secret)
		}
	}
	if len(kc.Secrets) == 0 {
		return KeyCredential{}, ErrUnknownKey
	}
	return kc, nil
}

// AuthenticateBearer checks an API key's bearer token: the principal, or
// ErrUnknownKey (unauthorized) for a wrong one, or bad_signature for an app
// key that must sign its requests.
func (s *Service) AuthenticateBearer(ctx context.Context, token string) (auth.Principal, error) {
	id, secret, ok := auth.ParseToken(token)
	if !ok {
		return auth.Principal{}, ErrUnknownKey
	}
	kc, err := s.KeyCredential(ctx, id)
	if err != nil {
		return auth.Principal{}, err
	}
	hash := auth.HashSecret(secret)
	for _, sec := range kc.Secrets {
		if auth.SameHash(hash, auth.HashSecret(sec)) {
			if kc.Principal.Role == auth.App && s.acc.cfg.AppKeysMustSign {
				return auth.Principal{}, fmt.Errorf("app keys must sign their requests (%s): %w", auth.Scheme, access.ErrBadSignature)
			}
			return kc.Principal, nil
		}
	}
	return auth.Principal{}, ErrUnknownKey
}

// SignatureSkew is the clock skew a signature may have.
func (s *Service) SignatureSkew() time.Duration { return s.acc.cfg.SignatureSkew }

// UseNonce remembers a signed request's nonce (for requests other than
// claims, whose claim step checks it): replayed if it was seen.
func (s *Service) UseNonce(ctx context.Context, keyID, nonce string) error {
	err := s.engine.UseNonce(ctx, keyID, nonce, s.nonceTTL())
	if err != nil && coupon.ErrorCode(err) == coupon.CodeInternal {
		return unavailable("use nonce", err)
	}
	return err
}

// nonceTTL covers every moment a signature with the nonce is fresh.
func (s *Service) nonceTTL() time.Duration { return 2*s.acc.cfg.SignatureSkew + time.Second }

// cache is a small TTL cache of values by string, filled by one caller at a
// time per miss. It holds at most cacheMax values, and is cleared when full:
// entries are cheap to read again.
type cache[V any] struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v      V
	loaded time.Time
}

const cacheMax = 100_000

func (c *cache[V]) get(key string, now time.Time, load func() (V, error)) (V, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.loaded) < c.ttl && !now.Before(e.loaded) {
		return e.v, nil
	}
	v, err := load()
	if err != nil {
		var zero V
		return zero, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cacheMax {
		c.m = make(map[string]cacheEntry[V])
	}
	c.m[key] = cacheEntry[V]{v: v, loaded: now}
	c.mu.Unlock()
	return v, nil
}

func (c *cache[V]) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
