package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/coupond/coupond/store"
)

var _ store.Auditor = (*Store)(nil)

// Audit runs store.AuditChecks in one read transaction, so every check
// sees the same state.
func (s *Store) Audit(ctx context.Context, p store.AuditParams) ([]store.Violation, error) {
	var out []store.Violation
	err := s.readTx(ctx, "audit", func(tx *sql.Tx) error {
		for _, c := range store.AuditChecks {
			args := []any{p.AuditLimit()}
			if c.Cutoff {
				args = []any{micros(p.Now.Add(-p.Grace)), p.AuditLimit()}
			}
			rows, err := tx.QueryContext(ctx, c.Query, args...)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Invariant, err)
			}
			err = eachRow(rows, func() error {
				v, err := c.Row(rows)
				v.Invariant = c.Invariant
				out = append(out, v)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", c.Invariant, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("audit", err)
	}
	return out, nil
}
