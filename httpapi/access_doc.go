package httpapi

import "github.com/coupond/coupond/access"

// The documentation of the access-control and anti-fraud operations:
// schema and field descriptions and each operation's examples and
// problems, added to the tables document uses.
func init() {
	for name, doc := range map[string]string{
		"NewKeyBody":      "a request for an API key",
		"KeyBody":         "an API key, without its secret",
		"IssuedKeyBody":   "an API key with its secret, shown once",
		"RotateKeyBody":   "a rotation of an API key's secret",
		"KeyList":         "one page of API keys",
		"ListEntriesBody": "entries to add to a black or white list, or to remove from it",
		"ListEntryBody":   "one identity on a list",
		"ListChangeBody":  "what a change of a list did",
		"Entry":           "one identity on a black or white list",
		"EntryList":       "one page of a list's entries",
		"ChallengeBody":   "a request for an SMS challenge",
		"ChallengeView":   "an SMS challenge sent",
		"RiskRule":        "one risk rule: a signal, its threshold and the action when it fires",
		"RuleSetBody":     "the rules of a risk rule set",
		"RiskRuleSet":     "a named risk rule set that batches refer to",
		"RuleSetList":     "every risk rule set",
		"Refusal":         "one refused request, recorded for operators",
		"RefusalList":     "one page of refused requests",
		"Protection":      "the anti-fraud checks of a batch's claims",
		"RateLimits":      "a batch's rate limits of claim attempts",
		"RateLimit":       "a rate limit: rate events per period on average, burst at once",
	} {
		schemaDocs[name] = doc
	}
	key := map[string]string{
		"id": "the key's id, also its Credential in signatures", "name": "what the key is for",
		"role": "what the key may do", "created_at": "when the key was made", "rotated_at": "when its secret last changed",
	}
	fieldDocs["KeyBody"] = key
	fieldDocs["IssuedKeyBody"] = key
	fieldDocs["KeyList"] = map[string]string{"items": "the page's keys, in creation order"}
	fieldDocs["EntryList"] = map[string]string{"items": "the page's entries, by kind then value"}
	fieldDocs["Entry"] = map[string]string{"created_at": "when the entry was added", "updated_at": "when it last changed"}
	fieldDocs["ChallengeView"] = map[string]string{"batch_id": "the batch the challenge is for"}
	fieldDocs["RiskRuleSet"] = map[string]string{"name": "the rule set's name", "created_at": "when it was made",
		"updated_at": "when it last changed"}
	fieldDocs["RuleSetList"] = map[string]string{"items": "every rule set, by name"}
	fieldDocs["RefusalList"] = map[string]string{"items": "the page's refusals, newest first"}
	fieldDocs["Refusal"] = map[string]string{"id": "the refusal's id", "at": "when the request was refused",
		"batch_id": "the batch claimed", "merchant_id": "the batch's merchant", "user_id": "the claiming user",
		"device_id": "the claim's device", "ip": "the claim's IP address"}

	const exKeyID = "01JD5R2F8H4K6M8P0Q2S4U6W8Y"
	exKey := map[string]any{"id": exKeyID, "name": "mobile backend", "role": "app", "created_at": exTime}
	issued := map[string]any{"id": exKeyID, "name": "mobile backend", "role": "app", "created_at": exTime,
		"secret": "rH3n0mVQx9yT1cW5zK7pB2dF4gJ6lN8sA0eU3iO5uY9", "token": exKeyID + ".rH3n0mVQx9yT1cW5zK7pB2dF4gJ6lN8sA0eU3iO5uY9"}
	keyNotFound := exProblem(404, "not_found", "key "+exKeyID+": not found")
	entries := map[string]any{"entries": []any{
		map[string]any{"kind": "device", "value": "a1b2c3d4-farm-07", "reason": "device farm, case 4411"},
		map[string]any{"kind": "ip", "value": "203.0.113.0/24", "reason": "scripted traffic"},
	}}
	entryList := map[string]any{"items": []any{map[string]any{"kind": "ip", "value": "203.0.113.0/24", "reason": "scripted traffic",
		"created_at": exTime, "updated_at": exTime}}}
	badEntry := map[string]any{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
		"errors": []any{map[string]any{"location": "body.entries[1].value", "message": "must be an IP address or a CIDR prefix"}}}
	ruleSet := map[string]any{"rules": []any{
		map[string]any{"signal": "device_users", "window_seconds": 86400, "above": 3, "action": "deny"},
		map[string]any{"signal": "ip_users", "window_seconds": 3600, "above": 20, "action": "challenge"},
		map[string]any{"signal": "account_age", "below_seconds": 86400, "action": "challenge"},
	}, "external": false}
	storedRuleSet := map[string]any{"name": "flash-sale", "rules": ruleSet["rules"], "created_at": exTime, "updated_at": exTime}
	refusal := map[string]any{"id": 9123, "at": exTime, "code": "risk_denied", "reason": "device_users over 86400s is 5, above 3 (deny)",
		"batch_id": exBatchID, "merchant_id": "m-1024", "user_id": "mallory", "phone": "*******0000", "device_id": "a1b2c3d4-farm-07",
		"ip": "203.0.113.9", "key_id": exKeyID}

	for id, d := range map[string]struct {
		request  any
		response any
		problems []map[string]any
	}{
		"create-key": {request: map[string]any{"name": "mobile backend", "role": "app"}, response: issued,
			problems: []map[string]any{{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
				"errors": []any{map[string]any{"location": "body.merchant_id", "message": "is required"}}}}},
		"list-keys":  {response: map[string]any{"items": []any{exKey}}},
		"get-key":    {response: exKey, problems: []map[string]any{keyNotFound}},
		"revoke-key": {response: map[string]any{"id": exKeyID, "name": "mobile backend", "role": "app", "created_at": exTime, "revoked_at": exTime}, problems: []map[string]any{keyNotFound}},
		"rotate-key": {request: map[string]any{"grace_seconds": 3600}, response: issued, problems: []map[string]any{keyNotFound,
			exProblem(409, "conflict", "key "+exKeyID+" is revoked and cannot be rotated")}},

		"add-list-entries":          {request: entries, response: map[string]any{"added": 2}, problems: []map[string]any{badEntry}},
		"add-batch-list-entries":    {request: entries, response: map[string]any{"added": 2}, problems: []map[string]any{badEntry, exProblem(404, "not_found", "batch "+exBatchID+": not found")}},
		"remove-list-entries":       {request: entries, response: map[string]any{"removed": 1}},
		"remove-batch-list-entries": {request: entries, response: map[string]any{"removed": 1}},
		"list-list-entries":         {response: entryList},
		"list-batch-list-entries":   {response: entryList},

		"create-sms-challenge": {request: map[string]any{"batch_id": exBatchID, "user_id": "alice", "phone": "+8613800000000"},
			response: map[string]any{"id": "9f86d081884c7d659a2feaa0c55ad015", "batch_id": exBatchID,
				"expires_at": "2026-11-11T00:05:03Z", "resend_after": "2026-11-11T00:01:03Z"},
			problems: []map[string]any{exProblem(429, access.CodeRateLimited, "too many attempts (sms resend limit): retry after 41s"),
				exProblem(403, access.CodeBlocked, "the phone is blacklisted")}},

		"put-risk-rule-set":    {request: ruleSet, response: storedRuleSet},
		"get-risk-rule-set":    {response: storedRuleSet, problems: []map[string]any{exProblem(404, "not_found", "rule set flash-sale: not found")}},
		"list-risk-rule-sets":  {response: map[string]any{"items": []any{storedRuleSet}}},
		"delete-risk-rule-set": {problems: []map[string]any{exProblem(404, "not_found", "rule set flash-sale: not found")}},
		"list-refusals":        {response: map[string]any{"items": []any{refusal}, "next_cursor": "9123"}},
	} {
		opDocs[id] = d
	}

	claim := opDocs["claim"]
	claim.request = map[string]any{"user_id": "alice", "phone": "+8613800000000", "platform": "ios",
		"device_id": "8c1f0e2a-ios", "ip": "198.51.100.23", "account_created_at": "2026-03-01T10:00:00Z"}
	claim.problems = append(claim.problems,
		exProblem(401, access.CodeBadSignature, "timestamp 1794355203 is more than 5m0s from the server's clock 1794355803: bad request signature"),
		exProblem(401, access.CodeReplayed, access.ErrReplayed.Message),
		exProblem(403, access.CodeBlocked, "the claim's device is on the global blacklist: the claim comes from a blocked identity"),
		exProblem(403, access.CodeNotWhitelisted, access.ErrNotWhitelisted.Message),
		exProblem(403, access.CodeSMSRequired, "the batch requires one: "+access.ErrSMSRequired.Message),
		exProblem(403, access.CodeSMSInvalid, "wrong code, 4 attempts left: "+access.ErrSMSInvalid.Message),
		exProblem(403, access.CodeRiskDenied, "device_users over 86400s is 5, above 3 (deny): "+access.ErrRiskDenied.Message),
		exProblem(429, access.CodeRateLimited, "too many attempts (user limit): retry after 500ms"),
	)
	opDocs["claim"] = claim
}
