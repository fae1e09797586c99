package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/risk"
	"github.com/coupond/coupond/service"
)

// RiskRule is one rule of a risk rule set (risk.Rule; named apart from a
// batch's redemption rules in the API's schemas).
type RiskRule risk.Rule

// RuleSetBody is the content of a risk rule set.
type RuleSetBody struct {
	Rules    []RiskRule `json:"rules" maxItems:"32" doc:"each fires on its signal's threshold with its action; the heaviest action of those that fire wins (deny over challenge)"`
	External bool       `json:"external,omitempty" doc:"also ask the external risk service (COUPOND_RISK_URL) and take the heavier verdict"`
}

// RiskRuleSet is a stored risk rule set.
type RiskRuleSet struct {
	Name string `json:"name"`
	RuleSetBody
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RuleSetList is every rule set.
type RuleSetList struct {
	Items []RiskRuleSet `json:"items"`
}

func ruleSetBody(rs *risk.RuleSet) RiskRuleSet {
	out := RiskRuleSet{Name: rs.Name, RuleSetBody: RuleSetBody{Rules: make([]RiskRule, len(rs.Rules)), External: rs.External},
		CreatedAt: rs.CreatedAt, UpdatedAt: rs.UpdatedAt}
	for i, r := range rs.Rules {
		out.Rules[i] = RiskRule(r)
	}
	return out
}

// RefusalList is one page of refusals.
type RefusalList struct {
	Items      []access.Refusal `json:"items"`
	NextCursor string           `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

type ruleSetInput struct {
	Name string `path:"name" maxLength:"64" doc:"1 to 64 of a-z, 0-9, '-' and '_'"`
}

func (h *handlers) registerRisk(api huma.API) {
	tags := []string{"risk"}
	huma.Register(api, huma.Operation{
		OperationID: "put-risk-rule-set", Method: http.MethodPut, Path: "/v1/risk/rule-sets/{name}", Tags: tags,
		Summary: "Create or replace a risk rule set",
		Description: "Batches name a rule set in protection.risk_rules. Signals: device_users, ip_users (distinct user ids seen " +
			"claiming from the device or IP within window_seconds, across batches), device_claims, ip_claims (claim attempts), " +
			"account_age (below_seconds; from the claim's account_created_at, unknown counting as new), no_device. Actions: " +
			"challenge (the claim needs a solved SMS challenge: sms_required) and deny (risk_denied). Identities on the global " +
			"whitelist are exempt. The instance that takes the call applies it at once, the others within a few seconds.",
		MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct {
		Name string `path:"name" maxLength:"64" doc:"1 to 64 of a-z, 0-9, '-' and '_'"` // not embedded: huma reads no parameters of embedded unexported structs
		Body RuleSetBody
	}) (*struct{ Body RiskRuleSet }, error) {
		rules := make([]risk.Rule, len(in.Body.Rules))
		for i, r := range in.Body.Rules {
			rules[i] = risk.Rule(r)
		}
		rs, err := h.svc.PutRuleSet(ctx, risk.RuleSet{Name: in.Name, Rules: rules, External: in.Body.External})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body RiskRuleSet }{ruleSetBody(rs)}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "list-risk-rule-sets", Method: http.MethodGet, Path: "/v1/risk/rule-sets", Tags: tags,
		Summary: "List the risk rule sets",
	}, func(ctx context.Context, _ *struct{}) (*struct{ Body RuleSetList }, error) {
		rss, err := h.svc.ListRuleSets(ctx)
		if err != nil {
			return nil, problem(err, "query")
		}
		out := RuleSetList{Items: make([]RiskRuleSet, len(rss))}
		for i, rs := range rss {
			out.Items[i] = ruleSetBody(rs)
		}
		return &struct{ Body RuleSetList }{out}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "get-risk-rule-set", Method: http.MethodGet, Path: "/v1/risk/rule-sets/{name}", Tags: tags,
		Summary: "Get a risk rule set",
	}, func(ctx context.Context, in *ruleSetInput) (*struct{ Body RiskRuleSet }, error) {
		rs, err := h.svc.GetRuleSet(ctx, in.Name)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body RiskRuleSet }{ruleSetBody(rs)}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "delete-risk-rule-set", Method: http.MethodDelete, Path: "/v1/risk/rule-sets/{name}", Tags: tags,
		Summary:       "Delete a risk rule set",
		Description:   "Batches that name it are judged by no rules afterwards (a warning is logged at their claims).",
		DefaultStatus: http.StatusNoContent,
	}, func(ctx context.Context, in *ruleSetInput) (*struct{}, error) {
		if err := h.svc.DeleteRuleSet(ctx, in.Name); err != nil {
			return nil, problem(err, "path")
		}
		return nil, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "list-refusals", Method: http.MethodGet, Path: "/v1/refusals", Tags: tags,
		Summary: "List refused requests",
		Description: "Every anti-fraud refusal — blocked, not_whitelisted, rate_limited, sms_required, sms_invalid, risk_denied, " +
			"bad_signature, replayed — with its reason, newest first; keyset-paginated. A merchant sees its own batches' refusals. " +
			"Refusals are recorded asynchronously (a moment late), and dropped when a flood outruns the store (counted in " +
			"coupond_refusals_dropped_total).",
	}, func(ctx context.Context, in *struct {
		BatchID string `query:"batch_id" maxLength:"64" doc:"only this batch's"`
		UserID  string `query:"user_id" maxLength:"128" doc:"only this user's"`
		Code    string `query:"code" enum:"blocked,not_whitelisted,rate_limited,sms_required,sms_invalid,risk_denied,bad_signature,replayed" doc:"only refusals with this code"`
		Limit   int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor  string `query:"cursor" maxLength:"32" doc:"next_cursor of the previous page"`
	}) (*struct{ Body RefusalList }, error) {
		rs, next, err := h.svc.Refusals(ctx, service.RefusalQuery{BatchID: in.BatchID, UserID: in.UserID, Code: in.Code,
			Cursor: in.Cursor, Limit: in.Limit})
		if err != nil {
			return nil, problem(err, "query")
		}
		if rs == nil {
			rs = []access.Refusal{}
		}
		return &struct{ Body RefusalList }{RefusalList{Items: rs, NextCursor: next}}, nil
	})
}

// registerAccess registers the operations of access control and anti-fraud.
func (h *handlers) registerAccess(api huma.API) {
	h.registerKeys(api)
	h.registerLists(api)
	h.registerSMS(api)
	h.registerRisk(api)
}
