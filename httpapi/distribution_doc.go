package httpapi

// The documentation of passive distribution: partner code imports, grants
// and bulk grant jobs.
func init() {
	for name, doc := range map[string]string{
		"GrantBody":       "a coupon the business grants to a user",
		"ImportResult":    "what an import did: lines read, codes added, lines found imported already, lines refused",
		"ImportLineError": "one refused line of an import",
		"JobView":         "a bulk grant job and its progress",
		"JobFailure":      "a user a job could not grant the batch to",
	} {
		schemaDocs[name] = doc
	}
	const exJobID = "01JD5QE2F4G6H8J0K2M4N6P8Q0"
	job := func(status string, done, failed int) map[string]any {
		j := map[string]any{"id": exJobID, "kind": "grant", "batch_id": exBatchID, "channel": "grant_job", "status": status,
			"total": 120000, "done": done, "failed": failed, "remaining": 120000 - done - failed,
			"created_at": exTime, "updated_at": exTime, "failures": []any{}}
		if failed > 0 {
			j["failures"] = []any{map[string]any{"line": 17, "user_id": "bob", "code": "limit_reached", "reason": "the user holds the per-user limit of coupons of this batch"}}
		}
		return j
	}
	claim := exClaim()
	claim["channel"] = "crm"
	for id, d := range map[string]struct {
		request  any
		response any
		problems []map[string]any
	}{
		"import-codes": {
			response: map[string]any{"batch_id": exBatchID, "lines": 1001, "imported": 997, "existing": 0, "rejected": 3, "generated_count": 997,
				"errors": []any{
					map[string]any{"line": 5, "code": "blank", "reason": "the line is blank"},
					map[string]any{"line": 9, "code": "duplicate", "reason": "duplicate of line 3"},
					map[string]any{"line": 12, "code": "malformed", "reason": `amount "-5" must be a whole number of minor units between 1 and 10000000000000`},
				}},
			problems: []map[string]any{
				exProblem(404, "not_found", "batch "+exBatchID+": not found"),
				exProblem(409, "conflict", "batch "+exBatchID+" generates its own codes; import into a batch with source external"),
			},
		},
		"grant": {
			request:  map[string]any{"user_id": "alice", "channel": "crm"},
			response: claim,
			problems: []map[string]any{
				exProblem(404, "not_found", "batch "+exBatchID+": not found"),
				exProblem(409, "sold_out", "the batch has no code left"),
				exProblem(409, "limit_reached", "the user holds the per-user limit of coupons of this batch"),
				{"title": "Unprocessable Entity", "status": 422, "code": "invalid", "detail": "invalid input",
					"errors": []any{map[string]any{"location": "body.Idempotency-Key", "message": "is required for a grant"}}},
			},
		},
		"create-grant-job": {
			response: job("pending", 0, 0),
			problems: []map[string]any{
				exProblem(404, "not_found", "batch "+exBatchID+": not found"),
				exProblem(409, "conflict", "batch "+exBatchID+" has ended"),
			},
		},
		"get-job": {
			response: job("pending", 64000, 1),
			problems: []map[string]any{exProblem(404, "not_found", "job "+exJobID+": not found")},
		},
	} {
		opDocs[id] = d
	}
}
