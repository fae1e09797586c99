package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/sms"
)

// ChallengeRequest asks for an SMS challenge: a one-time code sent to a
// user's phone, which a claim of the batch by that user then carries.
type ChallengeRequest struct {
	BatchID string
	UserID  string
	Phone   string
}

// Challenge is a challenge sent.
type Challenge struct {
	ID        string
	BatchID   string
	ExpiresAt time.Time
	// ResendAfter is when the phone may be sent another challenge.
	ResendAfter time.Time
}

// CreateChallenge sends a one-time code to the user's phone for claiming
// the batch. A phone gets at most one challenge per resend interval and
// PerHour an hour (rate_limited with the wait); a blacklisted user or phone
// none (blocked). The code is valid for the SMS TTL and for MaxAttempts
// wrong guesses, and solves one claim.
func (s *Service) CreateChallenge(ctx context.Context, req ChallengeRequest) (*Challenge, error) {
	var v coupon.Validation
	coupon.ValidIdentifier(&v, "user_id", req.UserID, true)
	phone := access.NormalizePhone(req.Phone)
	if phone == "" {
		v.Add("phone", "must be 5 to 20 digits, optionally after a '+'")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if !coupon.ValidID(req.BatchID) {
		return nil, fmt.Errorf("batch %q: %w", req.BatchID, coupon.ErrNotFound)
	}
	b, err := s.batches.get(ctx, req.BatchID)
	if err != nil {
		return nil, unavailable("get batch", err)
	}
	now := s.clock()
	if b.Status != coupon.StatusActive {
		return nil, fmt.Errorf("batch is %s: %w", b.Status, coupon.ErrNotClaimable)
	}
	ids := access.Identities{UserID: req.UserID, Phone: phone}
	for _, scope := range []string{access.GlobalScope, b.ID} {
		if kind, ok := s.acc.lists.Match(scope, access.Blacklist, ids); ok {
			err := fmt.Errorf("the %s is blacklisted: %w", kind, access.ErrBlocked)
			s.RecordRefusal(ctx, access.Refusal{Code: access.CodeBlocked, Reason: "sms challenge: " + err.Error(), BatchID: b.ID,
				MerchantID: b.MerchantID, UserID: req.UserID, Phone: phone})
			return nil, err
		}
	}
	cfg := s.acc.cfg.SMS
	for _, l := range []engine.RateLimit{
		{Key: "sms:" + phone, What: "sms resend", Rate: 1, Period: cfg.ResendInterval, Burst: 1},
		{Key: "sms-hour:" + phone, What: "sms per hour", Rate: cfg.PerHour, Period: time.Hour, Burst: cfg.PerHour},
	} {
		if err := s.engine.Allow(ctx, l.Key, l, now); err != nil {
			if access.IsRefusal(err) {
				s.RecordRefusal(ctx, access.Refusal{Code: access.CodeRateLimited, Reason: "sms challenge: " + err.Error(),
					BatchID: b.ID, MerchantID: b.MerchantID, UserID: req.UserID, Phone: phone})
				return nil, err
			}
			return nil, unavailable("sms throttle", err)
		}
	}
	id := newChallengeID()
	code := sms.NewCode()
	c := engine.Challenge{ID: id, BatchID: b.ID, UserID: req.UserID, Phone: phone, CodeHash: challengeHash(id, code),
		ExpiresAt: now.Add(cfg.TTL), MaxAttempts: cfg.MaxAttempts}
	if err := s.engine.PutChallenge(ctx, c); err != nil {
		return nil, unavailable("put challenge", err)
	}
	err = cfg.Sender.Send(ctx, sms.Message{ChallengeID: id, BatchID: b.ID, Phone: phone, Code: code, ExpiresAt: c.ExpiresAt,
		Text: sms.Render(cfg.Text, code, cfg.TTL)})
	if err != nil {
		// Nobody will see the code: the challenge expires unused.
		return nil, unavailable("send sms", fmt.Errorf("%w: %w", coupon.ErrUnavailable, err))
	}
	return &Challenge{ID: id, BatchID: b.ID, ExpiresAt: c.ExpiresAt, ResendAfter: now.Add(cfg.ResendInterval)}, nil
}

// newChallengeID is 128 random bits in hex.
func newChallengeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
