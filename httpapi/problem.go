package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/coupon"
)

// Problem is an RFC 9457 problem response with a stable, machine-readable
// Code. Every error of the API is one.
type Problem struct {
	Type     string              `json:"type,omitempty" doc:"a URI reference for the problem type; about:blank when absent"`
	Title    string              `json:"title" doc:"short summary of the problem type"`
	Status   int                 `json:"status" doc:"HTTP status code"`
	Detail   string              `json:"detail,omitempty" doc:"what went wrong this time"`
	Instance string              `json:"instance,omitempty"`
	Code     string              `json:"code" doc:"stable machine-readable code: invalid, bad_request, unauthorized, forbidden, bad_signature, replayed, not_found, sold_out, limit_reached, not_claimable, not_usable, blocked, not_whitelisted, rate_limited, sms_required, sms_invalid, risk_denied, conflict, not_draft, precondition_failed, in_progress, too_large, unsupported_media_type, unavailable, internal"`
	Errors   []*huma.ErrorDetail `json:"errors,omitempty" doc:"the offending inputs, one per entry"`

	cause error // of a 5xx: for the request's log line, never the client
	// retryAfter, in whole seconds, is sent as Retry-After (rate_limited).
	retryAfter int
}

// codeOverloaded answers a claim shed because too many are in flight.
const codeOverloaded = "overloaded"

func (p *Problem) Error() string  { return p.Detail }
func (p *Problem) GetStatus() int { return p.Status }

// ContentType makes JSON problems application/problem+json.
func (p *Problem) ContentType(ct string) string {
	if ct == "application/json" {
		return "application/problem+json"
	}
	return ct
}

// statusOf maps each domain error code to its HTTP status: the one table.
var statusOf = map[string]int{
	coupon.CodeInvalid:      http.StatusUnprocessableEntity,
	coupon.CodeNotFound:     http.StatusNotFound,
	coupon.CodeSoldOut:      http.StatusConflict,
	coupon.CodeLimitReached: http.StatusConflict,
	coupon.CodeNotClaimable: http.StatusConflict,
	coupon.CodeConflict:     http.StatusConflict,
	coupon.CodeNotDraft:     http.StatusConflict,
	coupon.CodeStale:        http.StatusPreconditionFailed,
	coupon.CodeInProgress:   http.StatusConflict,
	coupon.CodeNotUsable:    http.StatusConflict,
	coupon.CodeUnavailable:  http.StatusServiceUnavailable,
	coupon.CodeInternal:     http.StatusInternalServerError,

	// Refusals of access control and anti-fraud (package access).
	access.CodeUnauthorized:   http.StatusUnauthorized,
	access.CodeBadSignature:   http.StatusUnauthorized,
	access.CodeReplayed:       http.StatusUnauthorized,
	access.CodeForbidden:      http.StatusForbidden,
	access.CodeBlocked:        http.StatusForbidden,
	access.CodeNotWhitelisted: http.StatusForbidden,
	access.CodeRiskDenied:     http.StatusForbidden,
	access.CodeSMSRequired:    http.StatusForbidden,
	access.CodeSMSInvalid:     http.StatusForbidden,
	access.CodeRateLimited:    http.StatusTooManyRequests,
	codeTooLarge:              http.StatusRequestEntityTooLarge,
}

// codeTooLarge answers a body beyond a limit.
const codeTooLarge = "too_large"

// codeOf names the problems huma itself reports (parsing, schema
// validation, body limits) by their status.
var codeOf = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              coupon.CodeNotFound,
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusNotAcceptable:         "not_acceptable",
	http.StatusConflict:              coupon.CodeConflict,
	http.StatusPreconditionFailed:    coupon.CodeStale,
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusUnprocessableEntity:   coupon.CodeInvalid,
	http.StatusTooManyRequests:       access.CodeRateLimited,
	http.StatusServiceUnavailable:    coupon.CodeUnavailable,
	http.StatusInternalServerError:   coupon.CodeInternal,
}

func init() {
	// huma builds its own errors (malformed JSON, schema violations, body
	// too large) through this hook; make them our problems with a code.
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		p := &Problem{Status: status, Title: http.StatusText(status), Detail: msg, Code: codeOf[status]}
		if p.Code == "" {
			p.Code = "http_" + strconv.Itoa(status)
		}
		for _, e := range errs {
			if e == nil {
				continue
			}
			var d huma.ErrorDetailer
			if errors.As(e, &d) {
				detail := *d.ErrorDetail()
				switch detail.Value.(type) {
				case map[string]any, []any:
					// Never echo a whole body or object back: it may hold personal data.
					detail.Value = nil
				}
				if detail.Location == "body" {
					detail.Value = nil
				}
				// Name a missing field in its location, as for every other bad field.
				if name, ok := strings.CutPrefix(detail.Message, "expected required property "); ok {
					if name, ok = strings.CutSuffix(name, " to be present"); ok {
						detail.Location += "." + name
					}
				}
				p.Errors = append(p.Errors, &detail)
			} else {
				p.Errors = append(p.Errors, &huma.ErrorDetail{Message: e.Error()})
			}
		}
		return p
	}
}

// problem turns an error of the service into a problem response. location
// prefixes the field names of validation errors ("body", "query", "path").
func problem(err error, location string) *Problem {
	code := coupon.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	p := &Problem{Status: status, Title: http.StatusText(status), Code: code, Detail: err.Error()}
	var ce *coupon.Error
	if errors.As(err, &ce) {
		for _, f := range ce.Fields {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Message: f.Reason, Location: location + "." + f.Field})
		}
		if len(ce.Fields) > 0 {
			p.Detail = ce.Message
		}
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		p.retryAfter = max(int((ra.RetryAfter()+time.Second-1)/time.Second), 1)
	}
	switch code {
	case coupon.CodeInternal:
		p.Detail = "internal error" // the cause goes to the log, not the client
		p.cause = err
	case coupon.CodeUnavailable:
		p.Detail = coupon.ErrUnavailable.Message
		p.cause = err
	}
	return p
}
