package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
)

// maxRowsPerInsert bounds a multi-row INSERT: 256 claims bind 5,888
// variables, far below SQLite's limit of 32,766, and one statement per size
// up to it stays cheap to keep. A larger group is written in chunks.
const maxRowsPerInsert = 256

// stmtCache holds a multi-row statement per row count, 1 to
// maxRowsPerInsert, each prepared on the writer when a group of that size
// first comes.
//
// Lookups take no lock. A goroutine inside a write transaction holds the
// writer's only connection and may look a statement up while another waits
// for that connection to prepare one; a mutex held across the prepare would
// deadlock the two.
type stmtCache struct {
	query func(rows int) string
	stmts [maxRowsPerInsert]atomic.Pointer[sql.Stmt]
}

// prepare returns the statement for rows, preparing it on db if need be.
// Preparing waits for the writer's connection: never call it inside a
// write transaction.
func (c *stmtCache) prepare(ctx context.Context, db *sql.DB, rows int) (*sql.Stmt, error) {
	p := &c.stmts[rows-1]
	if st := p.Load(); st != nil {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, c.query(rows))
	if err != nil {
		return nil, err
	}
	if !p.CompareAndSwap(nil, st) {
		// Another goroutine prepared it in the meantime.
		_ = st.Close()
		return p.Load(), nil
	}
	return st, nil
}

// get returns the statement for rows if it is prepared already, or nil.
// It is safe inside a transaction.
func (c *stmtCache) get(rows int) *sql.Stmt {
	return c.stmts[rows-1].Load()
}

func (c *stmtCache) close() error {
	var errs []error
	for i := range c.stmts {
		if st := c.stmts[i].Swap(nil); st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// valuesSQL returns prefix, then rows groups of cols placeholders, then
// suffix: the text of a multi-row INSERT.
func valuesSQL(prefix string, cols, rows int, suffix string) string {
	row := "(" + placeholders(cols) + ")"
	var b strings.Builder
	b.Grow(len(prefix) + rows*(len(row)+2) + len(suffix))
	b.WriteString(prefix)
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	b.WriteString(suffix)
	return b.String()
}
