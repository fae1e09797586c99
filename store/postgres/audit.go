package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/store"
)

var _ store.Auditor = (*Store)(nil)

// Audit runs store.AuditChecks on the primary in one repeatable-read
// transaction, so every check sees the same state.
func (s *Store) Audit(ctx context.Context, p store.AuditParams) ([]store.Violation, error) {
	var out []store.Violation
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := inTx(ctx, s.primary, opts, "audit", func(tx pgx.Tx) error {
		for _, c := range store.AuditChecks {
			args := []any{p.AuditLimit()}
			if c.Cutoff {
				args = []any{p.Now.Add(-p.Grace), p.AuditLimit()}
			}
			rows, err := tx.Query(ctx, numbered(c.Query), args...)
			if err != nil {
				return wrap("audit: "+c.Invariant, err)
			}
			for rows.Next() {
				v, err := c.Row(rows)
				if err != nil {
					rows.Close()
					return wrap("audit: "+c.Invariant, err)
				}
				v.Invariant = c.Invariant
				out = append(out, v)
			}
			if err := rows.Err(); err != nil {
				return wrap("audit: "+c.Invariant, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

// numbered turns the `?` placeholders of a shared query into $1, $2, …
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
