// Package coupon holds the domain of coupond: batches, rules, codes and claims,
// their validation, the code format and the amount generators. It does no I/O.
package coupon

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes are stable, machine-readable and part of the public API: they
// appear as the `code` member of every problem response.
const (
	CodeInvalid      = "invalid"             // the request names a bad value
	CodeNotFound     = "not_found"           // the thing does not exist
	CodeSoldOut      = "sold_out"            // the batch has no code left
	CodeLimitReached = "limit_reached"       // the user holds the per-user limit
	CodeNotClaimable = "not_claimable"       // window, status or platform forbid the claim
	CodeConflict     = "conflict"            // the state does not allow the change
	CodeNotDraft     = "not_draft"           // the batch is no longer a draft: its configuration is fixed
	CodeStale        = "precondition_failed" // If-Match names a version the batch is no longer at
	CodeInProgress   = "in_progress"         // an earlier request with the same key is still running
	CodeUnavailable  = "unavailable"         // a backend cannot serve now; retrying may work
	CodeInternal     = "internal"
)

// Error is the one coded error of the domain. Handlers map Code to an HTTP
// status in one table; Fields name the offending inputs of a validation error.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
}

// FieldError names one bad input and why it is bad.
type FieldError struct {
	Field  string // JSON path of the field, e.g. "amount.min"
	Reason string
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteString(" ")
		b.WriteString(f.Reason)
	}
	return b.String()
}

// Sentinel errors. Wrap them with %w to add context; ErrorCode still finds the code.
var (
	ErrNotFound     = &Error{Code: CodeNotFound, Message: "not found"}
	ErrSoldOut      = &Error{Code: CodeSoldOut, Message: "the batch is sold out"}
	ErrLimitReached = &Error{Code: CodeLimitReached, Message: "the user already holds the per-user limit of this batch"}
	ErrNotClaimable = &Error{Code: CodeNotClaimable, Message: "the batch cannot be claimed now"}
	ErrConflict     = &Error{Code: CodeConflict, Message: "conflict"}
	ErrNotDraft     = &Error{Code: CodeNotDraft, Message: "only a draft batch can be edited"}
	ErrStale        = &Error{Code: CodeStale, Message: "the batch changed since the version given in If-Match"}
	ErrInProgress   = &Error{Code: CodeInProgress, Message: "an earlier request with this idempotency key is still in progress; retry shortly"}
	ErrUnavailable  = &Error{Code: CodeUnavailable, Message: "service temporarily unavailable"}
)

// Errorf returns a coded error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for nil
// and CodeInternal for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Validation collects field errors; Err returns nil when there are none.
type Validation struct {
	fields []FieldError
}

// Add records that field is bad for reason.
func (v *Validation) Add(field, reason string) {
	v.fields = append(v.fields, FieldError{Field: field, Reason: reason})
}

// Addf records a formatted reason.
func (v *Validation) Addf(field, format string, args ...any) {
	v.Add(field, fmt.Sprintf(format, args...))
}

// Err returns the collected errors as one invalid-input *Error, or nil.
func (v *Validation) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalid, Message: "invalid input", Fields: v.fields}
}
