package coupon

import (
	"strings"
	"testing"
	"time"
)

func validSpec() BatchSpec {
	return BatchSpec{
		Name: "Singles day", TotalQuantity: 500, PerUserLimit: 2,
		Validity: Validity{Days: 7}, Amount: AmountSpec{Type: AmountFixed, Value: 500},
	}
}

func TestValidSpecPasses(t *testing.T) {
	t.Parallel()
	s := validSpec()
	s.Normalize()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Type != TypeCash || s.CodeFormat.Length != DefaultCodeLength {
		t.Fatalf("defaults not filled: %+v", s)
	}
}

func TestValidationNamesFieldAndReason(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		field string
		edit  func(*BatchSpec)
	}{
		{"name", func(s *BatchSpec) { s.Name = "" }},
		{"name", func(s *BatchSpec) { s.Name = strings.Repeat("x", 201) }},
		{"total_quantity", func(s *BatchSpec) { s.TotalQuantity = 0 }},
		{"total_quantity", func(s *BatchSpec) { s.TotalQuantity = MaxTotalQuantity + 1 }},
		{"per_user_limit", func(s *BatchSpec) { s.PerUserLimit = -1 }},
		{"per_user_limit", func(s *BatchSpec) { s.PerUserLimit = 1001 }},
		{"claim_end", func(s *BatchSpec) { s.ClaimStart, s.ClaimEnd = now, now }},
		{"claim_platforms[0]", func(s *BatchSpec) { s.ClaimPlatforms = []string{"iOS!"} }},
		{"claim_platforms[1]", func(s *BatchSpec) { s.ClaimPlatforms = []string{"ios", "ios"} }},
		{"usage_platforms[0]", func(s *BatchSpec) { s.UsagePlatforms = []string{""} }},
		{"validity", func(s *BatchSpec) { s.Validity = Validity{} }},
		{"validity", func(s *BatchSpec) { s.Validity = Validity{Days: 3, End: now} }},
		{"validity.days", func(s *BatchSpec) { s.Validity = Validity{Days: 4000} }},
		{"validity.end", func(s *BatchSpec) { s.Validity = Validity{Start: now, End: now} }},
		{"validity.start", func(s *BatchSpec) { s.Validity = Validity{End: now} }},
		{"validity.end", func(s *BatchSpec) {
			s.ClaimStart = now.Add(48 * time.Hour)
			s.Validity = Validity{Start: now, End: now.Add(time.Hour)}
		}},
		{"type", func(s *BatchSpec) { s.Type = "bogo" }},
		{"min_spend", func(s *BatchSpec) { s.Type = TypeThreshold }},
		{"percent_off", func(s *BatchSpec) { s.Type = TypePercent }},
		{"percent_off", func(s *BatchSpec) { s.PercentOff = 10 }},
		{"merchant_id", func(s *BatchSpec) { s.MerchantID = "m\x00" }},
		{"code_format.length", func(s *BatchSpec) { s.CodeFormat.Length = 4 }},
		{"code_format.prefix", func(s *BatchSpec) { s.CodeFormat.Prefix = "OIL" }},
		{"rules[0].use_type", func(s *BatchSpec) { s.Rules = []Rule{{RefType: "product", RefID: "p1", UseType: "maybe"}} }},
		{"rules[0].ref_type", func(s *BatchSpec) { s.Rules = []Rule{{RefType: "batch", RefID: "p1", UseType: "include"}} }},
		{"rules[0].value", func(s *BatchSpec) { s.Rules = []Rule{{RefType: "merchant", RefID: "m1", UseType: "bear", Value: 0}} }},
		{"rules[0].ref_id", func(s *BatchSpec) { s.Rules = []Rule{{RefType: "type", RefID: "gold", UseType: "exclusive"}} }},
		{"amount.budget", func(s *BatchSpec) { s.Amount = AmountSpec{Type: AmountSplit, Min: 100, Budget: 100} }},
	} {
		s := validSpec()
		tc.edit(&s)
		s.Normalize()
		if err := s.Validate(); !hasField(err, tc.field) {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
}

func TestClaimableAt(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	b := &Batch{Status: StatusActive, BatchSpec: validSpec()}
	b.ClaimStart, b.ClaimEnd = start, start.Add(24*time.Hour)
	b.ClaimPlatforms = []string{"ios"}
	for _, tc := range []struct {
		at       time.Time
		platform string
		status   Status
		ok       bool
	}{
		{start, "ios", StatusActive, true},
		{start.Add(-time.Second), "ios", StatusActive, false},
		{start.Add(24 * time.Hour), "ios", StatusActive, false},
		{start, "web", StatusActive, false},
		{start, "ios", StatusPaused, false},
		{start, "ios", StatusDraft, false},
	} {
		b.Status = tc.status
		err := b.ClaimableAt(tc.at, tc.platform)
		if (err == nil) != tc.ok || (err != nil && ErrorCode(err) != CodeNotClaimable) {
			t.Errorf("%+v: err %v", tc, err)
		}
	}
}
