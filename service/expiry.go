package service

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// ExpiryResult counts what one expiry pass did.
type ExpiryResult struct {
	Batches int // batches swept
	Expired int // claims marked expired (claim.expired)
	Noticed int // claim.expiring events written
}

// expiryChunk is the number of claims one transaction of the sweep reads.
const expiryChunk = 500

// SweepExpiry marks available claims past their validity as expired, each
// with claim.expired, and writes claim.expiring for claims whose validity
// ends within the configured lead. It walks each batch's claims in chunks,
// one short transaction each, through the batch's own index, and only when
// a batch can have claims to expire or notice:
//
//   - a batch valid until a fixed end is swept once the notice lead before
//     the end, to notice, and once a grace after the end, to expire; then
//     it is finished;
//   - a batch valid for some days from each claim is swept every
//     ExpiryInterval until it has ended and its last claim's validity has
//     passed.
//
// Queries never wait for it: an available claim past its validity reads as
// expired anyway. Claims made after their batch's notice pass get no
// claim.expiring.
func (s *Service) SweepExpiry(ctx context.Context) (ExpiryResult, error) {
	var res ExpiryResult
	cfg := s.redemption
	now := s.clock()
	batches, err := s.store.ExpiryBatches(ctx, now, 100)
	if err != nil {
		return res, unavailable("expiry batches", err)
	}
	var errs []error
	for _, e := range batches {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b, st := e.Batch, e.State
		var touched expiryTouches // the users to drop from the claims cache
		p := store.SweepClaims{BatchID: b.ID, Now: now, Limit: expiryChunk,
			Expired: touched.wrap(s.expiredEvent(now)), Expiring: s.expiringEvent(now)}
		if st.InPass {
			p.NoticeFrom, p.NoticeTo, p.AfterUser, p.AfterSeq = st.PassFrom, st.PassTo, st.CursorUser, st.CursorSeq
		} else {
			p.NoticeFrom, p.NoticeTo = st.NoticedTo, now.Add(cfg.ExpiringLead)
		}
		if end := b.Validity.End; !end.IsZero() && b.Validity.Days == 0 {
			switch {
			case now.Before(end.Add(-cfg.ExpiringLead)):
				p.Limit, p.NextAt = 0, end.Add(-cfg.ExpiringLead) // nothing to do yet
			case now.Before(end.Add(cfg.ExpiryGrace)):
				p.NextAt = end.Add(cfg.ExpiryGrace)
			default:
				p.Finished = true
			}
		} else {
			p.NextAt = now.Add(cfg.ExpiryInterval)
			last := b.UpdatedAt.AddDate(0, 0, b.Validity.Days).Add(cfg.ExpiryGrace)
			p.Finished = b.Status == coupon.StatusEnded && !now.Before(last)
		}
		if p.Limit == 0 {
			if err := s.store.ScheduleExpiry(ctx, b.ID, p.NextAt); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		res.Batches++
		for {
			r, err := s.store.SweepClaims(ctx, p)
			if err != nil {
				errs = append(errs, err)
				break
			}
			touched.flush(ctx, s)
			res.Expired += r.Expired
			res.Noticed += r.Noticed
			if r.Expired+r.Noticed > 0 {
				s.onCommit()
			}
			if r.Done {
				break
			}
			p.AfterUser, p.AfterSeq = r.LastUser, r.LastSeq
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, unavailable("sweep expiry", err)
	}
	return res, nil
}

// expiredEvent builds the claim.expired event of a claim, stamped at.
func (s *Service) expiredEvent(at time.Time) func(*coupon.Claim) store.Event {
	return func(c *coupon.Claim) store.Event { return claimExpiry(bus.TypeClaimExpired, c, at) }
}

func (s *Service) expiringEvent(at time.Time) func(*coupon.Claim) store.Event {
	return func(c *coupon.Claim) store.Event { return claimExpiry(bus.TypeClaimExpiring, c, at) }
}

func claimExpiry(typ string, c *coupon.Claim, at time.Time) store.Event {
	data, _ := json.Marshal(bus.ClaimExpiry{ClaimID: c.ID, BatchID: c.BatchID, MerchantID: c.MerchantID,
		UserID: c.UserID, Amount: c.Amount, ValidTo: c.ValidTo, At: at})
	return store.Event{Type: typ, AggregateID: c.ID, Payload: data, CreatedAt: at}
}
