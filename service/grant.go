package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Passive distribution: the business hands a user a coupon — one grant by
// API, a bulk job over a list (jobs.go), an event on NATS. Every grant is a
// claim through the one claim core (Claim with Grant set), so the total,
// the per-user limit, lists and the store's constraints hold as for users'
// own claims, and the claim records the channel it came by. Each grant has
// an idempotency key — the caller's, the job's line, the event's id — that
// makes a retry, a resumed job or a redelivered event return the first
// claim instead of making a second.

// Default channels recorded on granted claims.
const (
	ChannelGrant   = "grant"
	ChannelJob     = "grant_job"
	ChannelTrigger = "trigger"
)

// GrantRequest grants one coupon of a batch to a user.
type GrantRequest struct {
	BatchID string
	coupon.Claimant
	// IdempotencyKey is required: a server-to-server call is retried, and
	// a retry must not grant twice.
	IdempotencyKey string
	// Channel is recorded on the claim; default "grant".
	Channel string
}

// Grant grants one coupon of a batch to a user through the claim core.
// replayed reports a grant returned again for a repeated idempotency key.
func (s *Service) Grant(ctx context.Context, req GrantRequest) (*coupon.Claim, bool, error) {
	if req.IdempotencyKey == "" {
		return nil, false, &coupon.Error{Code: coupon.CodeInvalid, Message: "invalid input",
			Fields: []coupon.FieldError{{Field: "Idempotency-Key", Reason: "is required for a grant"}}}
	}
	if req.Channel == "" {
		req.Channel = ChannelGrant
	}
	if err := validChannel(req.Channel); err != nil {
		return nil, false, err
	}
	if ok, err := s.seesBatch(ctx, req.BatchID); err != nil || !ok {
		if err == nil {
			err = hidden("batch", req.BatchID)
		}
		return nil, false, err
	}
	return s.Claim(ctx, ClaimRequest{
		BatchID: req.BatchID, Claimant: req.Claimant, IdempotencyKey: req.IdempotencyKey,
		Channel: req.Channel, Grant: true,
	})
}

func validChannel(ch string) error {
	if len(ch) > coupon.MaxIdentifierBytes {
		return &coupon.Error{Code: coupon.CodeInvalid, Message: "invalid input",
			Fields: []coupon.FieldError{{Field: "channel", Reason: fmt.Sprintf("must be at most %d bytes", coupon.MaxIdentifierBytes)}}}
	}
	for i := 0; i < len(ch); i++ {
		if ch[i] < 0x21 || ch[i] > 0x7e {
			return &coupon.Error{Code: coupon.CodeInvalid, Message: "invalid input",
				Fields: []coupon.FieldError{{Field: "channel", Reason: "must be printable ASCII without spaces"}}}
		}
	}
	return nil
}

// TriggerEvent is an event that may grant batches: its subject, a stable
// id (redeliveries of one event carry the same id) and its user.
type TriggerEvent struct {
	Subject string
	ID      string
	coupon.Claimant
}

// TriggerOutcome is what one event did to one batch.
type TriggerOutcome struct {
	BatchID  string
	Claim    *coupon.Claim
	Replayed bool
	Err      error // a refusal (limit reached, sold out, …) or a failure
}

// GrantOnEvent grants every active batch whose trigger_subject is the
// event's subject to the event's user, each exactly once per event: the
// idempotency key is the event's id, so a redelivered event returns the
// first claims. It returns one outcome per batch; err is set only when the
// batches could not be listed. An outcome whose Err is retryable
// (coupon.CodeUnavailable, in_progress) asks for the event to be
// delivered again.
func (s *Service) GrantOnEvent(ctx context.Context, ev TriggerEvent) ([]TriggerOutcome, error) {
	ids, err := s.triggers.batches(ctx, s.store, ev.Subject)
	if err != nil {
		return nil, unavailable("list trigger batches", err)
	}
	key := "evt:" + ev.ID
	if len(key) > 128 {
		key = key[:128]
	}
	out := make([]TriggerOutcome, 0, len(ids))
	for _, id := range ids {
		c, replayed, err := s.Claim(ctx, ClaimRequest{
			BatchID: id, Claimant: ev.Claimant, IdempotencyKey: key,
			Channel: ChannelTrigger, Grant: true,
		})
		out = append(out, TriggerOutcome{BatchID: id, Claim: c, Replayed: replayed, Err: err})
	}
	return out, nil
}

// TriggerSubjects returns the trigger subjects of the active batches, for
// the consumer that subscribes to them.
func (s *Service) TriggerSubjects(ctx context.Context) ([]string, error) {
	m, err := s.triggers.load(ctx, s.store)
	if err != nil {
		return nil, unavailable("list trigger batches", err)
	}
	out := make([]string, 0, len(m))
	for subj := range m {
		out = append(out, subj)
	}
	return out, nil
}

// Retryable reports whether an error of a grant may go away on a retry.
func Retryable(err error) bool {
	switch coupon.ErrorCode(err) {
	case coupon.CodeUnavailable, coupon.CodeInProgress, coupon.CodeInternal:
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// triggerIndex maps trigger subjects to the active batches that name them,
// read from the store at most every triggerTTL: a batch published a moment
// ago starts granting within that time.
type triggerIndex struct {
	mu     sync.Mutex
	m      map[string][]string
	loaded time.Time
}

const triggerTTL = 2 * time.Second

func (t *triggerIndex) batches(ctx context.Context, st store.Store, subject string) ([]string, error) {
	m, err := t.load(ctx, st)
	if err != nil {
		return nil, err
	}
	return m[subject], nil
}

func (t *triggerIndex) load(ctx context.Context, st store.Store) (map[string][]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m != nil && time.Since(t.loaded) < triggerTTL {
		return t.m, nil
	}
	m := map[string][]string{}
	cursor := ""
	for {
		bs, err := st.ListBatches(ctx, store.BatchFilter{Status: coupon.StatusActive, Cursor: cursor, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			if b.TriggerSubject != "" {
				m[b.TriggerSubject] = append(m[b.TriggerSubject], b.ID)
			}
		}
		if len(bs) < 1000 {
			break
		}
		cursor = bs[len(bs)-1].ID
	}
	t.m, t.loaded = m, time.Now()
	return m, nil
}

// jobKey is the idempotency key of a job's grant to the user of a line.
func jobKey(jobID string, line int64) string {
	return "job:" + jobID + ":" + strconv.FormatInt(line, 10)
}
