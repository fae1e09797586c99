// Package access holds the vocabulary of coupond's access control and
// anti-fraud checks: the problem codes of their refusals, black and white
// list entries with the in-process replica the claim path reads (Lists),
// and the record of refusals operators look at.
package access

import (
	"errors"
	"fmt"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Problem codes of refusals. Each is mapped to an HTTP status in
// httpapi/problem.go.
const (
	CodeForbidden      = "forbidden"       // the credential may not do this
	CodeBadSignature   = "bad_signature"   // a signed request whose signature, timestamp or header is wrong
	CodeReplayed       = "replayed"        // a signed request whose nonce was seen before
	CodeBlocked        = "blocked"         // an identity of the claim is on a blacklist
	CodeNotWhitelisted = "not_whitelisted" // the batch admits whitelisted identities only
	CodeRateLimited    = "rate_limited"    // too many attempts; retry after the time given
	CodeSMSRequired    = "sms_required"    // the claim needs a solved SMS challenge
	CodeSMSInvalid     = "sms_invalid"     // the SMS challenge is unknown, expired, exhausted or the code is wrong
	CodeRiskDenied     = "risk_denied"     // the risk rules refuse the claim
	CodeUnauthorized   = "unauthorized"    // no credential, or one nobody knows
)

// Sentinel errors of the refusals; wrap them with %w for context.
var (
	ErrBadSignature   = &coupon.Error{Code: CodeBadSignature, Message: "bad request signature"}
	ErrReplayed       = &coupon.Error{Code: CodeReplayed, Message: "this signed request was seen before: sign every request with a fresh nonce"}
	ErrBlocked        = &coupon.Error{Code: CodeBlocked, Message: "the claim comes from a blocked identity"}
	ErrNotWhitelisted = &coupon.Error{Code: CodeNotWhitelisted, Message: "the batch admits whitelisted identities only"}
	ErrRateLimited    = &coupon.Error{Code: CodeRateLimited, Message: "too many attempts"}
	ErrSMSRequired    = &coupon.Error{Code: CodeSMSRequired, Message: "the claim needs a solved SMS challenge: create one with POST /v1/sms/challenges and send its id and code"}
	ErrSMSInvalid     = &coupon.Error{Code: CodeSMSInvalid, Message: "the SMS challenge is unknown, expired or used up, or the code is wrong"}
	ErrRiskDenied     = &coupon.Error{Code: CodeRiskDenied, Message: "the claim was refused by the risk rules"}
	ErrUnauthorized   = &coupon.Error{Code: CodeUnauthorized, Message: "missing or wrong credentials"}
	ErrForbidden      = &coupon.Error{Code: CodeForbidden, Message: "the credential may not do this"}
)

// RateLimitedError is a rate_limited refusal with the time after which a
// retry may be admitted (the API's Retry-After).
type RateLimitedError struct {
	What  string // which limit refused: "user", "device", "ip", "batch", "sms"
	After time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many attempts (%s limit): retry after %s", e.What, e.After.Round(time.Millisecond))
}

// Unwrap makes the error a rate_limited one.
func (e *RateLimitedError) Unwrap() error { return ErrRateLimited }

// RetryAfter is how long the caller should wait.
func (e *RateLimitedError) RetryAfter() time.Duration { return e.After }

// IsRefusal reports whether err is one of this package's refusals.
func IsRefusal(err error) bool {
	switch coupon.ErrorCode(err) {
	case CodeBadSignature, CodeReplayed, CodeBlocked, CodeNotWhitelisted, CodeRateLimited,
		CodeSMSRequired, CodeSMSInvalid, CodeRiskDenied:
		return true
	}
	return false
}

// Refusal is one refused request, recorded for operators.
type Refusal struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Code       string    `json:"code" doc:"the problem code the request got"`
	Reason     string    `json:"reason" doc:"why, in words: the list, limit or rule that refused"`
	BatchID    string    `json:"batch_id,omitempty"`
	MerchantID string    `json:"merchant_id,omitempty"`
	UserID     string    `json:"user_id,omitempty"`
	Phone      string    `json:"phone,omitempty" doc:"masked but for its last 4 digits"`
	DeviceID   string    `json:"device_id,omitempty"`
	IP         string    `json:"ip,omitempty"`
	KeyID      string    `json:"key_id,omitempty" doc:"the API key of the request"`
}

// errNoValue is returned by Normalize for an empty value.
var errNoValue = errors.New("is required")
