package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// ClaimRequest asks for one coupon of a batch for a user.
type ClaimRequest struct {
	BatchID string
	coupon.Claimant
	// IdempotencyKey makes retries safe: the same key (for the same user
	// and batch) returns the same claim and never makes a second one.
	IdempotencyKey string
	// Channel records how the coupon reached the user (a grant, an import,
	// an event…); empty: the batch's channel.
	Channel string
	// Grant marks a claim the business makes for the user (a server-to-server
	// grant, a bulk job, an event trigger) rather than one the user asks
	// for: the checks that guard users' requests (SMS challenges, device and
	// IP rate limits, risk rules) do not apply; lists and limits still do.
	Grant bool

	// Where the claim comes from, for the lists, rate limits and risk
	// rules (protect.go): the user's device and IP address, and when the
	// user's account was made (zero: unknown).
	DeviceID         string
	IP               string
	AccountCreatedAt time.Time
	// SMSChallengeID and SMSCode solve an SMS challenge, when the batch or
	// its risk rules ask for one.
	SMSChallengeID string
	SMSCode        string
	// Nonce is "<key id>:<nonce>" of a signed request: the claim step
	// refuses it (replayed) if the batch has seen it.
	Nonce string

	protection *claimProtection // the checks, across the claim's engine attempts
}

// Claim hands one code of a batch to a user: the claim path of DESIGN.md.
// The checks of the request come first; then one atomic engine step pops a
// code; then the claim and its event are committed with other concurrent
// claims in one transaction. The claim is returned only after that commit;
// if the commit fails the engine step is undone. replayed reports a claim
// returned again for a repeated idempotency key.
func (s *Service) Claim(ctx context.Context, req ClaimRequest) (c *coupon.Claim, replayed bool, err error) {
	if req.Nonce != "" {
		defer func() { s.spendNonce(ctx, &req, err) }() // protect.go: a refused signed claim uses its nonce up too
	}
	if err := req.Claimant.Validate(); err != nil {
		return nil, false, err
	}
	if req.IdempotencyKey != "" {
		if err := coupon.ValidIdempotencyKey(req.IdempotencyKey); err != nil {
			return nil, false, err
		}
	}
	if !coupon.ValidID(req.BatchID) {
		return nil, false, fmt.Errorf("batch %q: %w", req.BatchID, coupon.ErrNotFound)
	}
	b, err := s.batches.get(ctx, req.BatchID)
	if err != nil {
		return nil, false, unavailable("get batch", err)
	}
	now := s.clock()
	if err := b.ClaimableAt(now, req.Platform); err != nil {
		return nil, false, err
	}
	prot, err := s.protectClaim(ctx, b, &req, now) // protect.go: lists, risk, and the checks of the engine step
	defer func() { s.finishProtection(ctx, prot, &req, c, replayed, err) }()
	if err != nil {
		return nil, false, err
	}
	req.protection = prot

	// A store constraint can refuse a code or a sequence number the engine
	// handed out only when the engine's state was rebuilt while claims were
	// in flight; the engine step is then undone keeping what the store
	// holds, and tried again. An empty pool is sold out only once every
	// code of the batch is generated and loaded: until then the claim waits
	// for codes (see refill) and is tried again.
	var refillUntil time.Time
	for attempt := 1; ; {
		c, replayed, err := s.claimOnce(ctx, b, req, now)
		switch {
		case errors.Is(err, engine.ErrSoldOut):
			if refillUntil.IsZero() {
				refillUntil = time.Now().Add(maxRefillWaits * s.refillWait)
			}
			more, rerr := s.refill(ctx, b)
			switch {
			case rerr != nil:
				return nil, false, rerr
			case more && time.Now().After(refillUntil):
				return nil, false, fmt.Errorf("batch %s: more codes are being generated, try again: %w", b.ID, coupon.ErrUnavailable)
			case more:
				continue
			}
			s.soldOut(ctx, b) // batch.stock_out, once (tagging.go)
		case attempt < maxClaimAttempts && (errors.Is(err, store.ErrCodeClaimed) || errors.Is(err, store.ErrSeqTaken)):
			attempt++
			continue
		}
		if err != nil && coupon.ErrorCode(err) == coupon.CodeInternal {
			return nil, false, unavailable("claim", err)
		}
		return c, replayed, err
	}
}

const (
	maxClaimAttempts = 3
	// maxRefillWaits bounds, in RefillWaits, how long one claim keeps
	// waiting for codes while others take them as they come.
	maxRefillWaits = 2
)

func (s *Service) claimOnce(ctx context.Context, b *coupon.Batch, req ClaimRequest, now time.Time) (*coupon.Claim, bool, error) {
	claimID := coupon.NewID(now)
	p := engine.ClaimParams{BatchID: b.ID, UserID: req.UserID, IdempotencyKey: req.IdempotencyKey, ClaimID: claimID, At: now}
	res, err := s.claimStep(ctx, p, req.protection)
	if errors.Is(err, engine.ErrUnknownBatch) {
		if err = s.loadBatch(ctx, b.ID); err == nil {
			res, err = s.claimStep(ctx, p, req.protection)
		}
	}
	if err != nil {
		return nil, false, unavailable("engine claim", err)
	}
	if res.Replayed {
		c, err := s.awaitClaim(ctx, res.ClaimID)
		return c, true, err
	}

	c := coupon.NewClaim(b, claimID, req.Claimant, res.Code, res.Amount, res.Seq, req.IdempotencyKey, now)
	if req.Channel != "" {
		c.Channel = req.Channel
	}
	err = s.claims.Do(ctx, store.ClaimWrite{Claim: c, Event: claimCreated(c)})
	switch {
	case err == nil:
		return c, false, nil
	case errors.Is(err, store.ErrKeyUsed):
		s.undo(ctx, c, err)
		// The engine forgot a key the store holds (its state was rebuilt
		// from a store read taken just before that claim committed): the
		// earlier claim is the answer.
		c, err := s.await(ctx, func() (*coupon.Claim, error) {
			return s.store.GetClaimByKey(ctx, req.BatchID, req.UserID, req.IdempotencyKey)
		})
		return c, true, err
	case errors.Is(err, store.ErrCodeClaimed), errors.Is(err, store.ErrSeqTaken):
		s.undo(ctx, c, err)
		return nil, false, err
	default:
		s.undo(ctx, c, err)
		return nil, false, unavailable("commit claim", err)
	}
}

func claimCreated(c *coupon.Claim) store.Event {
	data, _ := json.Marshal(bus.ClaimCreated{
		ClaimID: c.ID, BatchID: c.BatchID, MerchantID: c.MerchantID, UserID: c.UserID,
		Code: c.Code, Amount: c.Amount, Platform: c.Platform, Channel: c.Channel,
		ValidFrom: c.ValidFrom, ValidTo: c.ValidTo, ClaimedAt: c.ClaimedAt,
	})
	return store.Event{Type: bus.TypeClaimCreated, AggregateID: c.ID, Payload: data, CreatedAt: c.ClaimedAt}
}

// undo reverses the engine step of a claim whose row was not written. What
// the store already holds (a code or a sequence number that a constraint
// found taken) stays out of the engine's hands, so the undo can never give
// one code to two claims.
func (s *Service) undo(ctx context.Context, c *coupon.Claim, cause error) {
	p := engine.UndoParams{
		BatchID: c.BatchID, UserID: c.UserID, IdempotencyKey: c.IdempotencyKey,
		Code: c.Code, Amount: c.Amount, Seq: c.UserSeq,
	}
	switch {
	case errors.Is(cause, store.ErrCodeClaimed), errors.Is(cause, store.ErrUnknownCode):
		p.KeepCode = true
	case errors.Is(cause, store.ErrSeqTaken):
		p.KeepSeq = true
	}
	if p.KeepCode || p.KeepSeq {
		// The engine disagreed with the store: its state was rebuilt while
		// claims were in flight (or it has a bug), and the store's
		// constraint just stopped it overselling.
		s.log.WarnContext(ctx, "store refused an engine claim; retrying", "batch", c.BatchID, "claim", c.ID, "err", cause)
	}
	if err := s.engine.Undo(context.WithoutCancel(ctx), p); err != nil {
		// The code stays popped; a rebuild of the batch returns it.
		s.log.ErrorContext(ctx, "engine undo failed", "batch", c.BatchID, "claim", c.ID, "err", err)
	}
}

// awaitClaim returns the claim of an earlier request with the same
// idempotency key, waiting for it to commit if it is still in flight.
func (s *Service) awaitClaim(ctx context.Context, id string) (*coupon.Claim, error) {
	return s.await(ctx, func() (*coupon.Claim, error) { return s.store.GetClaim(ctx, id) })
}

func (s *Service) await(ctx context.Context, get func() (*coupon.Claim, error)) (*coupon.Claim, error) {
	deadline := time.Now().Add(s.replay)
	wait := time.Millisecond
	for {
		c, err := get()
		switch {
		case err == nil:
			c.Status = c.EffectiveStatus(s.clock())
			return c, nil
		case !errors.Is(err, coupon.ErrNotFound):
			return nil, unavailable("get claim", err)
		case time.Now().After(deadline):
			return nil, coupon.ErrInProgress
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
