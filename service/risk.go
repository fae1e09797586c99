package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/risk"
)

// PutRuleSet creates or replaces a risk rule set. Claims of batches that
// name it use the new rules on this instance at once, on the others within
// the rule-set cache's TTL.
func (s *Service) PutRuleSet(ctx context.Context, rs risk.RuleSet) (*risk.RuleSet, error) {
	if rs.Rules == nil {
		rs.Rules = []risk.Rule{}
	}
	if err := rs.Validate(); err != nil {
		return nil, err
	}
	now := s.clock()
	rs.CreatedAt, rs.UpdatedAt = now, now
	if err := s.store.PutRuleSet(ctx, &rs); err != nil {
		return nil, unavailable("put rule set", err)
	}
	s.acc.rules.drop(rs.Name)
	return &rs, nil
}

// GetRuleSet returns a risk rule set.
func (s *Service) GetRuleSet(ctx context.Context, name string) (*risk.RuleSet, error) {
	if !coupon.ValidRuleSetName(name) {
		return nil, fmt.Errorf("rule set %q: %w", name, coupon.ErrNotFound)
	}
	rs, err := s.store.GetRuleSet(ctx, name)
	if err != nil {
		return nil, unavailable("get rule set", notFound("rule set", name, err))
	}
	return rs, nil
}

// ListRuleSets returns every risk rule set.
func (s *Service) ListRuleSets(ctx context.Context) ([]*risk.RuleSet, error) {
	rss, err := s.store.ListRuleSets(ctx)
	if err != nil {
		return nil, unavailable("list rule sets", err)
	}
	return rss, nil
}

// DeleteRuleSet deletes a risk rule set. Batches that name it are judged by
// no rules afterwards (a warning is logged at each of their claims).
func (s *Service) DeleteRuleSet(ctx context.Context, name string) error {
	if !coupon.ValidRuleSetName(name) {
		return fmt.Errorf("rule set %q: %w", name, coupon.ErrNotFound)
	}
	err := s.store.DeleteRuleSet(ctx, name)
	s.acc.rules.drop(name)
	if err != nil {
		return unavailable("delete rule set", notFound("rule set", name, err))
	}
	return nil
}

// ruleSet is the claim path's read of a rule set, from the cache; nil if
// there is no such set.
func (s *Service) ruleSet(ctx context.Context, name string) (*risk.RuleSet, error) {
	return s.acc.rules.get(name, s.clock(), func() (*risk.RuleSet, error) {
		rs, err := s.store.GetRuleSet(ctx, name)
		if errors.Is(err, coupon.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, unavailable("get rule set", err)
		}
		return rs, nil
	})
}
