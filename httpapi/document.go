package httpapi

import (
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/coupon"
)

// document completes the OpenAPI description that huma builds from the
// handlers' types: the overview, the tags, the error codes, a description
// for every field whose Go type carries none, request and response examples
// for every operation, the problems each operation answers with, the events
// on the bus (as webhooks: messages coupond sends, not HTTP calls it
// serves), and the endpoints served outside huma (/metrics, /docs,
// /openapi.json). A test checks that nothing is left undocumented and that
// every example matches its schema.
func document(api huma.API) {
	oa := api.OpenAPI()
	oa.Info.Description = overview
	oa.Tags = []*huma.Tag{
		{Name: "batches", Description: "A batch is one campaign's coupons: its configuration, its codes and its status (draft → active ⇄ paused → ended)."},
		{Name: "claims", Description: "A claim binds a user to one code of a batch: the user's coupon. Claims are the flash-sale hot path."},
		{Name: "codes", Description: "Codes are the unique identifiers of issued coupons."},
		{Name: "operations", Description: "Health, readiness, metrics and run-time switches, for the people and systems that run coupond."},
		{Name: "events", Description: "Events coupond publishes to NATS JetStream after each state change (at least once, de-duplicated by id). They are listed as webhooks: messages coupond sends, not endpoints it serves."},
	}
	reg := oa.Components.Schemas
	if p := reg.Map()["Problem"]; p != nil {
		if c := p.Properties["code"]; c != nil {
			c.Description = "stable machine-readable code; the table in the API's description lists each code with its status"
			c.Examples = []any{coupon.CodeSoldOut}
		}
	}
	for name, fields := range fieldDocs {
		s := reg.Map()[name]
		if s == nil {
			continue
		}
		for field, doc := range fields {
			if p := s.Properties[field]; p != nil && p.Description == "" && p.Ref == "" {
				p.Description = doc
			}
		}
	}
	// The batch with counts flattens the batch: it shares its field docs.
	if body, batch := reg.Map()["BatchBody"], reg.Map()["Batch"]; body != nil && batch != nil {
		for name, p := range body.Properties {
			if b := batch.Properties[name]; b != nil && p.Description == "" && p.Ref == "" {
				p.Description = b.Description
			}
		}
	}
	for _, item := range oa.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op != nil {
				documentOperation(op)
			}
		}
	}
	documentEvents(oa, reg)
	documentRawEndpoints(oa)
	for name, doc := range schemaDocs {
		if s := reg.Map()[name]; s != nil && s.Description == "" {
			s.Description = doc
		}
	}
}

var overview = `coupond hands out coupons and red envelopes: operators define a **batch**, coupond generates its
**codes**, users **claim** them, and order systems redeem them. It stays exact under flash-sale load: never
more claims than a batch holds, never more than the per-user limit, never one code in two claims, and no
answer before the claim is durably stored.

**Authentication.** Every ` + "`/v1`" + ` call needs ` + "`Authorization: Bearer <token>`" + `: the bootstrap
token (COUPOND_ADMIN_TOKEN) or an API key's token (` + "`POST /v1/keys`" + `), or a request signed with an API key's
secret: ` + "`Authorization: CPD-HMAC-SHA256 Credential=<key id>, Timestamp=<unix seconds>, Nonce=<nonce>, Signature=<hex>`" + `,
HMAC-SHA256 over the method, path, query, timestamp, nonce and the body's SHA-256 (docs/access.md has the recipe
and a worked example). App keys must sign. Each operation lists the roles that may call it; a merchant key sees
its own merchant's batches, claims, codes and redemptions only.
` + "`/healthz`, `/readyz`, `/metrics`, `/docs` and `/openapi.json`" + ` need none.

**Conventions.** Money is integer minor units (cents), never a float. Times are RFC 3339, UTC. Ids are
26-character, time-ordered, Crockford base32. Lists are keyset-paginated: pass a page's ` + "`next_cursor`" + `
as ` + "`cursor`" + ` for the next page; the last page has none. Unknown body fields and query parameters are
refused.

**Retries.** A claim with an ` + "`Idempotency-Key`" + ` header can be retried safely: the same key, user and
batch return the first claim (with ` + "`Idempotent-Replayed: true`" + `) and never make a second one. A 503
answer (` + "`unavailable`" + ` or ` + "`overloaded`" + `) carries ` + "`Retry-After`" + ` in seconds: retry then,
with the same key.

**Tracing.** Every answer carries ` + "`X-Request-Id`" + ` (the caller's, if it sent a sane one); a W3C
` + "`traceparent`" + ` header joins the request to the caller's trace. Both appear on every log line of the
request.

**Errors.** Every error is an RFC 9457 problem document (` + "`application/problem+json`" + `) with a stable
` + "`code`" + `:

| code | status | meaning |
|---|---|---|
` + codeTable

// problemCodes are the codes of the API's problems, with their statuses.
var problemCodes = []struct {
	code    string
	status  int
	meaning string
}{
	{"bad_request", 400, "the request cannot be read: malformed JSON, a value of the wrong type, an unknown field or query parameter"},
	{"unauthorized", 401, "the bearer token or API key is missing, wrong, unknown or revoked"},
	{"bad_signature", 401, "a signed request's header is malformed, its timestamp is beyond the allowed clock skew, or its signature does not match; also an app key presented as a bearer token"},
	{"replayed", 401, "a signed request's nonce was seen before: sign every request with a fresh nonce"},
	{"forbidden", 403, "the credential's role may not do this"},
	{"blocked", 403, "the claim's user, phone, device or IP is on a blacklist (global or the batch's)"},
	{"not_whitelisted", 403, "the batch is whitelist-only and none of the claim's identities is on its whitelist"},
	{"sms_required", 403, "the batch, or its risk rules, ask for a solved SMS challenge (POST /v1/sms/challenges)"},
	{"sms_invalid", 403, "the SMS challenge is unknown, expired, used up, of another user or phone, or the code is wrong"},
	{"risk_denied", 403, "the batch's risk rules refuse the claim; the refusal is recorded (GET /v1/refusals)"},
	{"rate_limited", 429, "too many attempts per user, device, IP or batch, or SMS challenges per phone; retry after Retry-After seconds"},
	{"not_found", 404, "no such batch, claim, code, switch or endpoint"},
	{"method_not_allowed", 405, "the endpoint exists, not with this method; Allow lists the methods"},
	{"not_acceptable", 406, "the Accept header asks for a format the API does not serve"},
	{"sold_out", 409, "the batch has no code left"},
	{"not_usable", 409, "a coupon cannot be used on this order: its scope, validity, platform, checkout step, stacking or the order's limit forbid it"},
	{"limit_reached", 409, "the user already holds the batch's per-user limit"},
	{"not_claimable", 409, "the batch cannot be claimed now: its status, claim window or platforms forbid it"},
	{"not_usable", 409, "a coupon cannot be used for the order: locked by another order, used, expired, out of scope, or a combination the stacking rules forbid; errors names it and why"},
	{"conflict", 409, "the state does not allow the change, e.g. publishing a batch that is not a draft, or editing a draft that holds codes"},
	{"not_draft", 409, "the batch is no longer a draft: its configuration is fixed; make a new draft from it"},
	{"precondition_failed", 412, "If-Match names a version the batch is no longer at: someone edited it since; read it again"},
	{"in_progress", 409, "an earlier request with the same Idempotency-Key is still running; retry shortly"},
	{"too_large", 413, "the body is larger than the endpoint accepts (4 KiB for a claim, 512 KiB for a batch)"},
	{"unsupported_media_type", 415, "the body is not application/json"},
	{"invalid", 422, "a value is wrong; errors names each offending field"},
	{"internal", 500, "a bug: the X-Request-Id finds it in the logs"},
	{"overloaded", 503, "this instance serves as many claims at once as it may; retry after Retry-After seconds"},
	{"unavailable", 503, "a backend cannot serve now (engine down, store too slow, …); retry after Retry-After seconds"},
}

var codeTable = func() string {
	var b strings.Builder
	for _, c := range problemCodes {
		b.WriteString("| `" + c.code + "` | " + strconv.Itoa(c.status) + " | " + c.meaning + " |\n")
	}
	return b.String()
}()

// schemaDocs describe the schemas, as noun phrases ("Batch is …").
var schemaDocs = map[string]string{
	"Batch":              "one campaign's coupons: its configuration, status and generated counts",
	"BatchBody":          "a batch with its live counts",
	"BatchList":          "one page of batches",
	"BatchSpec":          "what defines a batch: how it is claimed, what its coupons are worth and how they are used",
	"AmountSpec":         "how much each code of a batch is worth",
	"Validity":           "how long a claimed coupon can be used: days from the claim, or an absolute window",
	"CodeFormat":         "the look of a batch's generated codes",
	"Generation":         "how a batch's internal codes are generated: all at publication, or in chunks as the pool runs low",
	"Rule":               "one redemption rule of a batch: scope, combination, cost share, usage node or deduction",
	"Claim":              "a user's coupon: the binding of a user to one code of a batch, with the batch's attributes copied in",
	"ClaimBody":          "a request for a coupon of a batch for a user",
	"ClaimList":          "one page of a user's claims",
	"Code":               "one issued coupon code with its status",
	"Problem":            "an RFC 9457 problem document: every error of the API is one, served as application/problem+json",
	"ErrorDetail":        "one offending input of a request",
	"Readiness":          "the answer of /readyz",
	"ReadyCheck":         "one dependency's state in /readyz",
	"HealthBody":         "the answer of /healthz",
	"SwitchBody":         "a run-time switch of non-essential work",
	"SwitchList":         "the run-time switches",
	"SetSwitchBody":      "a request to turn a switch on or off",
	"ClaimCreatedEvent":  "the message of claim.created on the bus",
	"BatchEvent":         "the message of batch.published, batch.paused, batch.resumed and batch.ended on the bus",
	"BatchUpdatedEvent":  "the message of batch.updated on the bus",
	"BatchUpdated":       "the data of batch.updated",
	"ClaimCreated":       "the data of claim.created",
	"BatchStatusChanged": "the data of a batch's status events",
	"RedemptionOptions":  "how a batch's coupons are redeemed",
}

// fieldDocs describe the fields whose Go types carry no description.
var fieldDocs = map[string]map[string]string{
	"Batch": {
		"id":              "the batch's id",
		"status":          "draft (being set up), active (open for claims), paused (claims stopped), ended (for good)",
		"generated_count": "codes generated so far; the total once a full batch is published",
		"created_at":      "when the batch was created",
		"updated_at":      "when the batch last changed",
		"version":         "the configuration's version: 1 at creation, one more at each edit of the draft; send it as If-Match (\"3\") with an edit",
	},
	"BatchList": {"items": "the page's batches, newest first"},
	"ClaimList": {"items": "the page's claims, soonest to expire first"},
	"Claim": {
		"id":              "the claim's id",
		"batch_id":        "the batch the coupon comes from",
		"code":            "the coupon's code, as the user enters it at checkout",
		"user_id":         "the user who holds the coupon",
		"phone":           "the user's phone number, as given with the claim",
		"open_id":         "the user's OpenID, as given with the claim",
		"status":          "available, locked (reserved by an order), used, expired (available past valid_to) or refunded",
		"amount":          "the coupon's value, minor units (for percent coupons: the cap)",
		"valid_from":      "when the coupon becomes usable",
		"valid_to":        "when the coupon stops being usable (exclusive)",
		"claimed_at":      "when the claim was made",
		"updated_at":      "when the claim last changed",
		"channel":         "the batch's distribution channel",
		"batch_name":      "the batch's name, copied so that a list needs no join",
		"merchant_id":     "the batch's merchant; empty for a platform batch",
		"type":            "the batch's type: cash, threshold, percent or shipping",
		"min_spend":       "smallest order total the coupon applies to, minor units",
		"percent_off":     "percent taken off (percent coupons)",
		"usage_platforms": "platforms the coupon may be redeemed on; empty: any",
	},
	"Code": {
		"code":       "the code, canonical form",
		"batch_id":   "the batch the code belongs to",
		"seq":        "the code's place in its batch's generation order, from 1",
		"amount":     "the code's value, minor units (fixed at generation, also for random amounts)",
		"tags":       "custom key/value tags",
		"created_at": "when the code was generated or imported",
		"status":     "unclaimed, or the status of the claim that holds it",
		"claim_id":   "the claim that holds the code, if any",
		"issued_at":  "when the code was claimed, if it was",
	},
	"CodeFormat": {
		"prefix": "letters and digits every generated code starts with",
		"length": "characters of a generated code after the prefix, the check character included",
	},
	"Rule": {
		"ref_type": "what the rule refers to: product, category, merchant, batch, type, platform, node or deduction",
		"ref_id":   "the id of what the rule refers to",
		"use_type": "include, exclude (scope), exclusive, stackable (combination), bear (cost share), node (usage node), deduct (deduction method)",
	},
	"Problem": {"instance": "a URI reference for this occurrence of the problem"},
	"ClaimCreatedEvent": {
		"id":           "the outbox id: also the Nats-Msg-Id, by which JetStream and consumers drop duplicates",
		"type":         "claim.created",
		"aggregate_id": "the claim's id",
		"occurred_at":  "when the claim was made",
		"data":         "the claim",
	},
	"BatchEvent": {
		"id":           "the outbox id: also the Nats-Msg-Id, by which JetStream and consumers drop duplicates",
		"type":         "batch.published, batch.paused, batch.resumed or batch.ended",
		"aggregate_id": "the batch's id",
		"occurred_at":  "when the status changed",
		"data":         "the status change",
	},
	"ClaimCreated": {
		"claim_id":    "the claim's id",
		"batch_id":    "the batch the coupon comes from",
		"merchant_id": "the batch's merchant; absent for a platform batch",
		"user_id":     "the user who claimed",
		"code":        "the claimed code",
		"amount":      "the coupon's value, minor units",
		"platform":    "the platform the claim came from",
		"channel":     "the batch's distribution channel",
		"valid_from":  "when the coupon becomes usable",
		"valid_to":    "when it stops being usable (exclusive)",
		"claimed_at":  "when the claim was made",
	},
	"BatchUpdatedEvent": {
		"id":           "the outbox id: also the Nats-Msg-Id, by which JetStream and consumers drop duplicates",
		"type":         "batch.updated",
		"aggregate_id": "the batch's id",
		"occurred_at":  "when the draft was edited",
		"data":         "the edit",
	},
	"BatchUpdated": {
		"batch_id":    "the batch's id",
		"merchant_id": "the batch's merchant after the edit; absent for a platform batch",
		"version":     "the batch's version after the edit",
		"at":          "when the draft was edited",
	},
	"BatchStatusChanged": {
		"batch_id":        "the batch's id",
		"merchant_id":     "the batch's merchant; absent for a platform batch",
		"status":          "the new status",
		"from_status":     "the status before",
		"total_quantity":  "codes in the batch",
		"generated_count": "codes generated so far",
		"at":              "when the status changed",
	},
}

// Examples. The ids are well-formed: a test runs every example through its
// schema.
const (
	exBatchID = "01JD5Q6W3ZK8M2V4N7R9T1X3Y5"
	exClaimID = "01JD5Q9B2C4D6E8F0G1H3J5K7M"
	exCode    = "D11-7K3M9Q2X4WZ"
	exTime    = "2026-11-11T00:00:03Z"
)

func exBatchSpec() map[string]any {
	return map[string]any{
		"name":            "Double 11: 5.00 off",
		"merchant_id":     "m-1024",
		"type":            "cash",
		"total_quantity":  100000,
		"per_user_limit":  2,
		"claim_start":     "2026-11-11T00:00:00Z",
		"claim_end":       "2026-11-12T00:00:00Z",
		"claim_platforms": []any{"ios", "android"},
		"channel":         "homepage-banner",
		"ad_copy":         "5.00 off any order over 50.00",
		"validity":        map[string]any{"days": 7},
		"amount":          map[string]any{"type": "fixed", "value": 500},
		"code_format":     map[string]any{"prefix": "D11", "length": 12},
	}
}

func exBatch(status string) map[string]any {
	b := exBatchSpec()
	b["id"] = exBatchID
	b["status"] = status
	b["generated_count"], b["generated_amount"] = 0, 0
	if status != "draft" {
		b["generated_count"], b["generated_amount"] = 100000, 50000000
	}
	b["created_at"], b["updated_at"] = "2026-11-01T08:00:00Z", "2026-11-10T23:59:00Z"
	b["version"] = 1
	return b
}

// exEditedSpec is exBatchSpec edited: a new name and amount, and rules.
func exEditedSpec() map[string]any {
	b := exBatchSpec()
	b["name"] = "Double 11: 8.00 off"
	b["amount"] = map[string]any{"type": "fixed", "value": 800}
	b["rules"] = []any{
		map[string]any{"ref_type": "category", "ref_id": "shoes", "use_type": "include"},
		map[string]any{"ref_type": "merchant", "ref_id": "m-1024", "use_type": "bear", "value": 10000},
		map[string]any{"ref_type": "node", "ref_id": "payment", "use_type": "node"},
	}
	return b
}

func exEditedBatch() map[string]any {
	b := exBatchBody("draft", 0, 0)
	for k, v := range exEditedSpec() {
		b[k] = v
	}
	b["version"] = 2
	return b
}

func exBatchBody(status string, claimed, pool int) map[string]any {
	b := exBatch(status)
	b["claimed_count"] = claimed
	b["remaining_count"] = 100000 - claimed
	b["pool_depth"] = pool
	b["loaded_seq"] = 100000
	if status == "draft" {
		b["loaded_seq"] = 0
	}
	return b
}

func exClaim() map[string]any {
	return map[string]any{
		"id": exClaimID, "batch_id": exBatchID, "code": exCode, "user_id": "alice",
		"status": "available", "amount": 500, "valid_from": exTime, "valid_to": "2026-11-18T00:00:03Z",
		"claimed_at": exTime, "updated_at": exTime, "platform": "ios", "channel": "homepage-banner",
		"batch_name": "Double 11: 5.00 off", "merchant_id": "m-1024", "type": "cash",
	}
}

func exProblem(status int, code, detail string) map[string]any {
	return map[string]any{"title": http.StatusText(status), "status": status, "code": code, "detail": detail}
}

// opDocs are each operation's examples and the problems it answers with.
var opDocs = map[string]struct {
	request  any
	response any
	problems []map[string]any
}{
	"create-batch": {
		request:  exBatchSpec(),
		response: exBatchBody("draft", 0, 0),
		problems: []map[string]any{
			exProblem(400, "bad_request", "validation failed"),
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "body.amount.value", "message": "must be at least 1"}}},
			exProblem(413, "too_large", "request body is too large"),
		},
	},
	"update-batch": {
		request:  exEditedSpec(),
		response: exEditedBatch(),
		problems: []map[string]any{
			exProblem(400, "bad_request", "validation failed"),
			exProblem(404, "not_found", "batch "+exBatchID+": not found"),
			exProblem(409, "not_draft", "batch "+exBatchID+" is active: "+coupon.ErrNotDraft.Message),
			exProblem(409, "conflict", "batch "+exBatchID+" holds codes already (its publication has started, or codes were imported), so its configuration is fixed: end it and make a new draft from it: conflict"),
			exProblem(412, "precondition_failed", "batch "+exBatchID+" is at version 3, not 2: "+coupon.ErrStale.Message),
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "body.min_spend", "message": "is required for a threshold batch"}}},
			exProblem(413, "too_large", "request body is too large"),
		},
	},
	"list-batches": {
		response: map[string]any{"items": []any{exBatch("active")}, "next_cursor": exBatchID},
		problems: []map[string]any{
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "query.cursor", "message": "is not a cursor this API returned"}}},
		},
	},
	"get-batch": {
		response: exBatchBody("active", 41873, 58127),
		problems: []map[string]any{exProblem(404, "not_found", "batch "+exBatchID+": not found")},
	},
	"publish-batch": {
		response: exBatchBody("active", 0, 100000),
		problems: []map[string]any{
			exProblem(404, "not_found", "batch "+exBatchID+": not found"),
			exProblem(409, "conflict", "batch "+exBatchID+" is active: only a draft can be published"),
		},
	},
	"pause-batch": {
		response: exBatchBody("paused", 41873, 58127),
		problems: []map[string]any{exProblem(409, "conflict", "batch "+exBatchID+" is draft: only an active batch can be paused")},
	},
	"resume-batch": {
		response: exBatchBody("active", 41873, 58127),
		problems: []map[string]any{exProblem(409, "conflict", "batch "+exBatchID+" is active: only a paused batch can be resumed")},
	},
	"end-batch": {
		response: exBatchBody("ended", 41873, 58127),
		problems: []map[string]any{exProblem(409, "conflict", "batch "+exBatchID+" has ended already")},
	},
	"claim": {
		request:  map[string]any{"user_id": "alice", "phone": "+8613800000000", "platform": "ios"},
		response: exClaim(),
		problems: []map[string]any{
			exProblem(404, "not_found", "batch "+exBatchID+": not found"),
			exProblem(409, "sold_out", coupon.ErrSoldOut.Message),
			exProblem(409, "limit_reached", coupon.ErrLimitReached.Message),
			exProblem(409, "not_claimable", "the batch's claim window has not opened"),
			exProblem(409, "in_progress", coupon.ErrInProgress.Message),
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "body.phone", "message": "must be 5 to 20 digits, optionally after a '+'"}}},
			exProblem(503, "unavailable", coupon.ErrUnavailable.Message),
			exProblem(503, "overloaded", "too many claims in flight on this instance; retry after 1s"),
		},
	},
	"list-user-claims": {
		response: map[string]any{"items": []any{exClaim()}, "next_cursor": "MTc2MzQyNDAwMzAwMDAwMC4wMUpENVE5QjJDNEQ2RThGMEcxSDNKNUs3TQ"},
	},
	"get-claim": {
		response: exClaim(),
		problems: []map[string]any{exProblem(404, "not_found", "claim "+exClaimID+": not found")},
	},
	"get-code": {
		response: map[string]any{
			"code": exCode, "batch_id": exBatchID, "seq": 1234, "amount": 500, "created_at": "2026-11-10T23:58:00Z",
			"status": "available", "claim_id": exClaimID, "issued_at": exTime,
		},
		problems: []map[string]any{
			{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "path.code", "message": "check character does not match: a character is mistyped"}}},
			exProblem(404, "not_found", "code "+exCode+": not found"),
		},
	},
	"healthz": {response: map[string]any{"status": "ok"}},
	"readyz": {response: map[string]any{"status": "degraded", "checks": []any{
		map[string]any{"name": "shutdown", "ok": true, "required": true},
		map[string]any{"name": "store", "ok": true, "required": true},
		map[string]any{"name": "migrations", "ok": true, "required": true},
		map[string]any{"name": "engine", "ok": false, "required": false, "error": "engine: service temporarily unavailable (circuit breaker open)"},
		map[string]any{"name": "bus", "ok": true, "required": false},
	}}},
	"list-switches": {response: map[string]any{"items": []any{
		map[string]any{"name": "batch_metrics", "description": "per-batch metrics and outbox lag read from the engine and the store at every scrape", "enabled": true},
		map[string]any{"name": "access_log", "description": "one log line per HTTP request", "enabled": false},
	}}},
	"set-switch": {
		request:  map[string]any{"enabled": false},
		response: map[string]any{"name": "batch_metrics", "description": "per-batch metrics and outbox lag read from the engine and the store at every scrape", "enabled": false},
		problems: []map[string]any{exProblem(404, "not_found", `no switch named "stats2"`)},
	},
}

// commonProblems are answered by every /v1 operation.
var commonProblems = []map[string]any{
	exProblem(401, "unauthorized", "missing or wrong bearer token"),
	exProblem(503, "unavailable", coupon.ErrUnavailable.Message),
}

// opDescriptions describe the operations whose registration carries none.
var opDescriptions = map[string]string{
	"get-batch": "The batch with its live counts: claims made, codes remaining, and codes ready in the engine's pool.",
	"get-claim": "One claim, with its status as of now: an available coupon past valid_to reads as expired.",
}

// paramDocs describe the parameters whose registration carries none.
var paramDocs = map[string]string{
	"limit":   "most items on the page",
	"id":      "the id",
	"code":    "the code, as a person typed it",
	"user_id": "the user whose coupons to list",
}

func documentOperation(op *huma.Operation) {
	if op.Description == "" {
		op.Description = opDescriptions[op.OperationID]
	}
	for _, p := range op.Parameters {
		if p.Description == "" {
			p.Description = paramDocs[p.Name]
			if p.Schema != nil && p.Schema.Description == "" {
				p.Schema.Description = p.Description
			}
		}
	}
	d, known := opDocs[op.OperationID]
	if !known {
		return
	}
	if d.request != nil && op.RequestBody != nil {
		if mt := op.RequestBody.Content["application/json"]; mt != nil {
			mt.Examples = map[string]*huma.Example{"example": {Value: d.request}}
		}
	}
	for status, r := range op.Responses {
		if !strings.HasPrefix(status, "2") || d.response == nil {
			continue
		}
		if mt := r.Content["application/json"]; mt != nil {
			mt.Examples = map[string]*huma.Example{"example": {Value: d.response}}
		}
	}
	problems := slices.Clone(d.problems)
	if strings.HasPrefix(op.Path, "/v1/") {
		problems = append(problems, commonProblems...)
	}
	byStatus := map[string]map[string]*huma.Example{}
	for _, p := range problems {
		status := strconv.Itoa(p["status"].(int))
		if byStatus[status] == nil {
			byStatus[status] = map[string]*huma.Example{}
		}
		code := p["code"].(string)
		if _, dup := byStatus[status][code]; !dup {
			byStatus[status][code] = &huma.Example{Summary: code, Value: p}
		}
	}
	if op.Responses == nil {
		op.Responses = map[string]*huma.Response{}
	}
	for _, status := range slices.Sorted(maps.Keys(byStatus)) {
		examples := byStatus[status]
		codes := slices.Sorted(maps.Keys(examples))
		r := op.Responses[status]
		if r == nil {
			n, _ := strconv.Atoi(status)
			r = &huma.Response{Description: http.StatusText(n) + ": " + strings.Join(codes, ", ")}
			op.Responses[status] = r
		}
		if r.Content == nil {
			r.Content = map[string]*huma.MediaType{}
		}
		mt := r.Content["application/problem+json"]
		if mt == nil {
			mt = &huma.MediaType{Schema: &huma.Schema{Ref: "#/components/schemas/Problem"}}
			r.Content["application/problem+json"] = mt
		}
		mt.Examples = examples
		if status == "503" {
			r.Headers = map[string]*huma.Param{"Retry-After": {
				Description: "seconds to wait before retrying", Schema: &huma.Schema{Type: "integer"}, Example: 1,
			}}
		}
	}
}

// ClaimCreatedEvent is the message of claim.created, as the docs show it.
type ClaimCreatedEvent struct {
	ID          int64            `json:"id"`
	Type        string           `json:"type" enum:"claim.created"`
	AggregateID string           `json:"aggregate_id"`
	OccurredAt  time.Time        `json:"occurred_at"`
	Data        bus.ClaimCreated `json:"data"`
}

// BatchUpdatedEvent is the message of batch.updated, as the docs show it.
type BatchUpdatedEvent struct {
	ID          int64            `json:"id"`
	Type        string           `json:"type" enum:"batch.updated"`
	AggregateID string           `json:"aggregate_id"`
	OccurredAt  time.Time        `json:"occurred_at"`
	Data        bus.BatchUpdated `json:"data"`
}

// BatchEvent is the message of the batch status events, as the docs show it.
type BatchEvent struct {
	ID          int64                  `json:"id"`
	Type        string                 `json:"type" enum:"batch.published,batch.paused,batch.resumed,batch.ended"`
	AggregateID string                 `json:"aggregate_id"`
	OccurredAt  time.Time              `json:"occurred_at"`
	Data        bus.BatchStatusChanged `json:"data"`
}

func documentEvents(oa *huma.OpenAPI, reg huma.Registry) {
	claimRef := reg.Schema(reflect.TypeFor[ClaimCreatedEvent](), true, "")
	batchRef := reg.Schema(reflect.TypeFor[BatchEvent](), true, "")
	updatedRef := reg.Schema(reflect.TypeFor[BatchUpdatedEvent](), true, "")
	for name, fields := range fieldDocs {
		if s := reg.Map()[name]; s != nil {
			for field, doc := range fields {
				if p := s.Properties[field]; p != nil && p.Description == "" {
					p.Description = doc
				}
			}
		}
	}
	claimData := map[string]any{
		"claim_id": exClaimID, "batch_id": exBatchID, "merchant_id": "m-1024", "user_id": "alice", "code": exCode,
		"amount": 500, "platform": "ios", "channel": "homepage-banner",
		"valid_from": exTime, "valid_to": "2026-11-18T00:00:03Z", "claimed_at": exTime,
	}
	batchData := map[string]any{
		"batch_id": exBatchID, "merchant_id": "m-1024", "status": "active", "from_status": "draft",
		"total_quantity": 100000, "generated_count": 100000, "at": "2026-11-10T23:59:00Z",
	}
	event := func(typ, aggregate string, data map[string]any) map[string]any {
		return map[string]any{"id": 1042, "type": typ, "aggregate_id": aggregate, "occurred_at": data["claimed_at"], "data": data}
	}
	claimEx := event(bus.TypeClaimCreated, exClaimID, claimData)
	batchEx := event(bus.TypeBatchPublished, exBatchID, batchData)
	batchEx["occurred_at"] = batchData["at"]
	if oa.Webhooks == nil {
		oa.Webhooks = map[string]*huma.PathItem{}
	}
	msg := func(typ, desc string, schema *huma.Schema, example any) *huma.PathItem {
		return &huma.PathItem{Post: &huma.Operation{
			OperationID: "event-" + strings.ReplaceAll(typ, ".", "-"),
			Summary:     typ,
			Description: desc + " Published on the NATS subject `coupond." + typ + "` (the prefix is COUPOND_NATS_SUBJECT_PREFIX) of the " +
				"JetStream stream COUPOND, with the header `Nats-Msg-Id` set to the event's id and, when the cause was traced, " +
				"a W3C `traceparent` header: start the consumer's span from it to continue the cause's trace. Delivery is at " +
				"least once: drop an event whose id you have handled.",
			Tags: []string{"events"},
			RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
				"application/json": {Schema: schema, Examples: map[string]*huma.Example{"example": {Value: example}}},
			}},
			Responses: map[string]*huma.Response{"200": {Description: "the consumer acknowledges the message (JetStream ack)"}},
		}}
	}
	oa.Webhooks[bus.TypeClaimCreated] = msg(bus.TypeClaimCreated, "A user claimed a coupon; the claim is durably stored.", claimRef, claimEx)
	for _, typ := range []string{bus.TypeBatchPublished, bus.TypeBatchPaused, bus.TypeBatchResumed, bus.TypeBatchEnded} {
		ex := maps.Clone(batchEx)
		ex["type"] = typ
		oa.Webhooks[typ] = msg(typ, "A batch changed status ("+strings.TrimPrefix(typ, "batch.")+").", batchRef, ex)
	}
	updatedData := map[string]any{"batch_id": exBatchID, "merchant_id": "m-1024", "version": 2, "at": "2026-11-01T09:30:00Z"}
	updatedEx := event(bus.TypeBatchUpdated, exBatchID, updatedData)
	updatedEx["occurred_at"] = updatedData["at"]
	oa.Webhooks[bus.TypeBatchUpdated] = msg(bus.TypeBatchUpdated,
		"A draft batch was edited (PATCH /v1/batches/{id}); read the batch for its new configuration.", updatedRef, updatedEx)
}

// documentRawEndpoints describes the endpoints served outside huma. They
// carry x-coupond-client: false, so the Go client leaves them out.
func documentRawEndpoints(oa *huma.OpenAPI) {
	raw := func(id, summary, desc, ct string, example any) *huma.PathItem {
		return &huma.PathItem{Get: &huma.Operation{
			OperationID: id, Summary: summary, Description: desc, Tags: []string{"operations"},
			Security:   []map[string][]string{},
			Extensions: map[string]any{"x-coupond-client": false},
			Responses: map[string]*huma.Response{"200": {Description: "OK", Content: map[string]*huma.MediaType{
				ct: {Schema: &huma.Schema{Type: "string"}, Example: example},
			}}},
		}}
	}
	oa.Paths["/metrics"] = raw("metrics", "Prometheus metrics",
		"The metrics in the Prometheus text format, all named coupond_… (plus go_… and process_…): requests and "+
			"latency by route, claims by outcome, engine pool depth per batch, outbox lag, reconciler backlog, "+
			"backend errors and breaker states, cache hits. docs/operations.md lists them. No authentication: keep "+
			"it off the public ingress.", "text/plain",
		"# HELP coupond_claims_total Claim requests by outcome\n# TYPE coupond_claims_total counter\ncoupond_claims_total{code=\"created\"} 41873\n")
	oa.Paths["/docs"] = raw("docs", "This API's documentation", "A page that renders /openapi.json with files embedded in the binary: it works offline.", "text/html", "<!doctype html>…")
	oa.Paths["/openapi.json"] = raw("openapi", "This API's OpenAPI 3.1 description", "The document this page renders (also at /openapi.yaml).", "application/json", "{\"openapi\":\"3.1.0\",…}")
}
