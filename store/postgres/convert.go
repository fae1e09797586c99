package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
)

// SQLSTATE codes the store tells apart.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
	checkViolation      = "23514"
	serializationFailed = "40001"
	deadlockDetected    = "40P01"
)

// wrap adds context to an error of the driver. A failure to reach the
// database or of the database itself (connection lost, server shutting
// down, out of connections or disk, a read-only server after a failover)
// also wraps coupon.ErrUnavailable, so that the API answers 503 rather
// than 500.
func wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, coupon.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),                            // insufficient resources: connections, disk, memory
			strings.HasPrefix(pe.Code, "57P"),                           // shutdown, crash, cannot connect now
			pe.Code == "25006",                                          // read-only transaction: a standby, after a failover
			pe.Code == serializationFailed, pe.Code == deadlockDetected: // transient; a retry succeeds
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// pgError returns the server's error, or nil if err is not one.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// rowProblem reports whether err is the server refusing the data of a row
// (an integrity constraint, class 23, or bad data such as a NUL byte, an
// invalid JSON payload or a number out of range, class 22), rather than a
// failure of the connection or the transaction.
func rowProblem(err error) bool {
	pe := pgError(err)
	return pe != nil && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// retryable reports whether a statement that failed with err wrote nothing
// and may simply be run again.
func retryable(err error) bool {
	pe := pgError(err)
	return pe != nil && (pe.Code == serializationFailed || pe.Code == deadlockDetected)
}

// utc returns a time read from the database in UTC.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func fromNullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return utc(t.Time)
}

// list stores a string list as a text[], empty rather than NULL.
func list(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

func fromList(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	return xs
}

// arrayLiteral writes xs as the text of a PostgreSQL array, for a column of
// lists passed to unnest as one text element per row (unnest flattens an
// array of arrays). Every element is quoted, so commas, braces, spaces and
// the word NULL stay data.
func arrayLiteral(xs []string) string {
	if len(xs) == 0 {
		return "{}"
	}
	var b strings.Builder
	n := 2
	for _, x := range xs {
		n += len(x) + 3
	}
	b.Grow(n)
	b.WriteByte('{')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(x); j++ {
			if c := x[j]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(x[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// tagsArg stores a code's tags as jsonb, NULL when there are none.
func tagsArg(tags map[string]string) any {
	if len(tags) == 0 {
		return nil
	}
	return tags
}

func fromTags(tags map[string]string) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	return tags
}

// payloadArg is an event payload as the text of a json column; an empty
// payload is JSON null.
func payloadArg(p json.RawMessage) string {
	if len(p) == 0 {
		return "null"
	}
	return string(p)
}
