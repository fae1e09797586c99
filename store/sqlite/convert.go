package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/coupon"
)

// Times are stored as INTEGER microseconds since the Unix epoch; every time
// read back is UTC. The zero time of a NOT NULL column survives the round
// trip (its microseconds map back to the zero time); nullable columns store
// it as NULL.

func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// encodeList stores a string list as a JSON array, NULL when empty. Lists are
// platform names, plain ASCII, so the common case is built by hand: this runs
// once per claim on the hot path.
func encodeList(xs []string) any {
	if len(xs) == 0 {
		return nil
	}
	n := 2
	for _, x := range xs {
		if !plainJSON(x) {
			b, _ := json.Marshal(xs) // a []string always marshals
			return string(b)
		}
		n += len(x) + 3
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('[')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(x)
		b.WriteByte('"')
	}
	b.WriteByte(']')
	return b.String()
}

// plainJSON reports whether s needs no escaping inside a JSON string.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func decodeList(col string, s sql.NullString) ([]string, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var xs []string
	if err := json.Unmarshal([]byte(s.String), &xs); err != nil {
		return nil, fmt.Errorf("sqlite: column %s holds bad JSON: %w", col, err)
	}
	if len(xs) == 0 {
		return nil, nil
	}
	return xs, nil
}

func encodeTags(tags map[string]string) (any, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return nil, fmt.Errorf("sqlite: encode tags: %w", err)
	}
	return string(b), nil
}

func decodeTags(s sql.NullString) (map[string]string, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var tags map[string]string
	if err := json.Unmarshal([]byte(s.String), &tags); err != nil {
		return nil, fmt.Errorf("sqlite: column tags holds bad JSON: %w", err)
	}
	if len(tags) == 0 {
		return nil, nil
	}
	return tags, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// wrap adds context to an error of the driver. A failure of the database
// file itself (busy past the timeout, I/O, full disk) also wraps
// coupon.ErrUnavailable, so that the API answers 503 rather than 500.
func wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOMEM:
			return fmt.Errorf("sqlite: %s: %w: %w", op, coupon.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// constraint returns the extended result code and message of a constraint
// failure, or ok false for any other error.
func constraint(err error) (code int, msg string, ok bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_CONSTRAINT {
		return 0, "", false
	}
	return se.Code(), se.Error(), true
}
