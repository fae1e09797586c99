// Package telemetry is what coupond tells its operators: structured logs
// that carry each request's id and trace id and never a secret, OpenTelemetry
// traces exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (a no-op
// tracer otherwise), and Prometheus metrics in a registry of their own.
package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"sync/atomic"
)

// Request is what the logs know of the HTTP request a context serves. The
// API's middleware puts one in every request's context; the log handler adds
// its ID to every line logged with that context.
type Request struct {
	ID string
	// Outcome is the stable code of the answer, set as the API answers:
	// "ok", "created", "replayed", or a problem's code such as "sold_out".
	Outcome string
	// Err is the cause of a 5xx answer, which the client never sees; the
	// request's log line carries it.
	Err error
}

type requestKey struct{}

// WithRequest returns ctx carrying r.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFrom returns the request ctx serves, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// Request ids are a random per-process prefix and a counter: unique across
// instances without a random read per request.
var (
	idPrefix = func() string {
		b := make([]byte, 5)
		_, _ = rand.Read(b)
		return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	}()
	idCounter atomic.Uint64
)

// NewRequestID returns a new request id, e.g. "C5H66P35-1k".
func NewRequestID() string {
	var buf [32]byte
	b := append(buf[:0], idPrefix...)
	b = append(b, '-')
	return string(strconv.AppendUint(b, idCounter.Add(1), 36))
}

// ValidRequestID reports whether an id a client sent (X-Request-Id) is safe
// to adopt and log: 1 to 64 letters, digits, '-', '_', '.' or ':'.
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}
