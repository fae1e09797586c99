package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Auditor checks, over a store's own rows, the invariants of DESIGN.md that
// the store's constraints already enforce, and the promises that workers
// keep (the outbox is published, reservations are resolved): `coupond audit`
// runs it against a live deployment, so a constraint dropped by hand or a
// worker that stopped is found rather than assumed. Both stores implement
// it; it is not part of Store because nothing on a request path uses it.
//
// Every check reads whole tables (of the primary, in one read-only
// transaction, so all see one state): run it off-peak.
type Auditor interface {
	Audit(ctx context.Context, p AuditParams) ([]Violation, error)
}

// AuditParams bound an audit.
type AuditParams struct {
	// Now is the audit's time; work due before Now-Grace and not done is a
	// violation (unpublished events, reservations past their timeout).
	Now   time.Time
	Grace time.Duration
	// Limit is the most violations reported per invariant (≤ 0: 100).
	Limit int
}

// Invariants the audit checks. The store reports the first seven; package
// audit adds the engine's.
const (
	InvariantOverTotal          = "over_total"           // a batch has more claims than its total quantity
	InvariantOverUserLimit      = "over_user_limit"      // a user has more claims of a batch than its per-user limit
	InvariantCodeTwice          = "code_twice"           // one code is in two claims
	InvariantCodeNotInBatch     = "code_not_in_batch"    // a claim's code is not one of its batch's codes
	InvariantGeneratedOverTotal = "generated_over_total" // a batch has more codes than its total quantity
	InvariantOutboxUnpublished  = "outbox_unpublished"   // an event was not published within the grace
	InvariantReservationOverdue = "reservation_overdue"  // a reservation is past its timeout, unresolved and not on the review list
)

// Violation is one breach of an invariant, with the ids involved.
type Violation struct {
	Invariant string   `json:"invariant"`
	BatchID   string   `json:"batch_id,omitempty"`
	IDs       []string `json:"ids"` // claim ids, codes, user ids, event or redemption ids: Detail says which
	Detail    string   `json:"detail"`
}

// AuditLimit is p.Limit with its default.
func (p AuditParams) AuditLimit() int {
	if p.Limit <= 0 {
		return 100
	}
	return p.Limit
}

// Scanner is a row of either store's driver.
type Scanner interface{ Scan(dest ...any) error }

// AuditCheck is one check of Audit in the SQL both stores share. Its query
// takes, in order, the cutoff (when Cutoff is set: the store's own time
// encoding of Now-Grace) and the limit, as `?` placeholders (PostgreSQL
// numbers them). Row makes a violation of one result row.
type AuditCheck struct {
	Invariant string
	Query     string
	Cutoff    bool
	Row       func(Scanner) (Violation, error)
}

// AuditChecks are the checks of Auditor, in the order they are reported.
// The claim checks read claims_all, the hot and the archived claims
// (migration 00008): a code may not be in one claim of each.
var AuditChecks = []AuditCheck{
	{InvariantOverTotal, `SELECT b.id, b.total_quantity, COUNT(*) FROM claims_all c JOIN batches b ON b.id = c.batch_id
		GROUP BY b.id, b.total_quantity HAVING COUNT(*) > b.total_quantity ORDER BY b.id LIMIT ?`, false, countOver("claims")},
	{InvariantOverUserLimit, `SELECT c.batch_id, c.user_id, COUNT(*), b.per_user_limit FROM claims_all c JOIN batches b ON b.id = c.batch_id
		GROUP BY c.batch_id, c.user_id, b.per_user_limit HAVING COUNT(*) > b.per_user_limit ORDER BY c.batch_id, c.user_id LIMIT ?`, false,
		func(r Scanner) (Violation, error) {
			var v Violation
			var user string
			var n, limit int64
			err := r.Scan(&v.BatchID, &user, &n, &limit)
			v.IDs, v.Detail = []string{user}, fmt.Sprintf("user %s holds %d claims, per-user limit %d", user, n, limit)
			return v, err
		}},
	{InvariantCodeTwice, `SELECT MIN(batch_id), code, COUNT(*) FROM claims_all GROUP BY code HAVING COUNT(*) > 1 ORDER BY code LIMIT ?`, false,
		func(r Scanner) (Violation, error) {
			var v Violation
			var code string
			var n int64
			err := r.Scan(&v.BatchID, &code, &n)
			v.IDs, v.Detail = []string{code}, fmt.Sprintf("code %s is in %d claims", code, n)
			return v, err
		}},
	{InvariantCodeNotInBatch, `SELECT c.batch_id, c.id, c.code FROM claims_all c
		LEFT JOIN codes k ON k.batch_id = c.batch_id AND k.code = c.code WHERE k.code IS NULL ORDER BY c.id LIMIT ?`, false,
		func(r Scanner) (Violation, error) {
			var v Violation
			var id, code string
			err := r.Scan(&v.BatchID, &id, &code)
			v.IDs, v.Detail = []string{id}, fmt.Sprintf("claim %s holds code %s, which is not a code of its batch", id, code)
			return v, err
		}},
	{InvariantGeneratedOverTotal, `SELECT b.id, b.total_quantity, COUNT(*) FROM codes k JOIN batches b ON b.id = k.batch_id
		GROUP BY b.id, b.total_quantity HAVING COUNT(*) > b.total_quantity ORDER BY b.id LIMIT ?`, false, countOver("codes")},
	{InvariantOutboxUnpublished, `SELECT id, type, aggregate_id FROM outbox
		WHERE published_at IS NULL AND created_at < ? ORDER BY id LIMIT ?`, true,
		func(r Scanner) (Violation, error) {
			var v Violation
			var id int64
			var typ, aggregate string
			err := r.Scan(&id, &typ, &aggregate)
			v.IDs = []string{strconv.FormatInt(id, 10)}
			v.Detail = fmt.Sprintf("event %d (%s of %s) is not published within the grace", id, typ, aggregate)
			return v, err
		}},
	{InvariantReservationOverdue, `SELECT id, order_id FROM redemptions
		WHERE status = 'reserved' AND review_reason IS NULL AND expires_at < ? ORDER BY id LIMIT ?`, true,
		func(r Scanner) (Violation, error) {
			var v Violation
			var id, order string
			err := r.Scan(&id, &order)
			v.IDs, v.Detail = []string{id}, fmt.Sprintf("redemption %s of order %s is still reserved past its timeout and the grace", id, order)
			return v, err
		}},
}

func countOver(what string) func(Scanner) (Violation, error) {
	return func(r Scanner) (Violation, error) {
		var v Violation
		var total, n int64
		err := r.Scan(&v.BatchID, &total, &n)
		v.IDs, v.Detail = []string{v.BatchID}, fmt.Sprintf("%d %s, total quantity %d", n, what, total)
		return v, err
	}
}
