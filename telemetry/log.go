package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns the process's logger: JSON, or readable text when format
// is "text" or is "auto" and w is a terminal; at level (debug, info, warn,
// error). Every line logged with a request's context carries its request_id
// and, when there is a trace, its trace_id and span_id. Secrets never reach
// w: see Redact.
func NewLogger(format, level string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: Redact}
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewContextHandler(h))
}

// NewContextHandler wraps h so that a record logged with a context gets the
// request id and trace of that context.
func NewContextHandler(h slog.Handler) slog.Handler { return contextHandler{h} }

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		req := RequestFrom(ctx)
		sc := trace.SpanContextFromContext(ctx)
		if req != nil || sc.IsValid() {
			r = r.Clone() // the caller's record may share its attributes' storage
		}
		if req != nil {
			r.AddAttrs(slog.String("request_id", req.ID))
		}
		if sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// Redacted replaces a secret's value in the logs.
const Redacted = "[REDACTED]"

// Redact is a slog ReplaceAttr that keeps secrets and personal data out of
// the logs, whatever a caller passes:
//   - the value of a key that names a secret (token, secret, password,
//     authorization, cookie, api key, credential, signature) becomes
//     [REDACTED], in attributes and in the keys of maps and structs logged;
//   - the value of a key that names a phone number is masked but for its
//     last 4 digits;
//   - in every string (messages and error texts included), a bearer token,
//     a password in a URL, a secret in key=value or "key":"value" form and
//     anything shaped like a phone number (a '+' and 7 to 15 digits, or 11
//     to 15 digits in a row) are masked the same way.
func Redact(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
		return a
	}
	switch classify(a.Key) {
	case secretKey:
		return slog.String(a.Key, Redacted)
	case phoneKey:
		return slog.String(a.Key, MaskPhone(a.Value.Resolve().String()))
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s, changed := scrub(v.String()); changed {
			return slog.String(a.Key, s)
		}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case nil:
		case error:
			s, _ := scrub(x.Error())
			return slog.String(a.Key, s)
		case []byte:
			s, _ := scrub(string(x))
			return slog.String(a.Key, s)
		case fmt.Stringer:
			s, _ := scrub(x.String())
			return slog.String(a.Key, s)
		default:
			// A struct, map or slice: walk its JSON form, which is what the
			// handlers would write, and redact by key and by value.
			raw, err := json.Marshal(x)
			if err != nil {
				return slog.String(a.Key, "[unloggable value]")
			}
			var tree any
			if err := json.Unmarshal(raw, &tree); err != nil {
				return slog.String(a.Key, "[unloggable value]")
			}
			return slog.Any(a.Key, scrubTree(tree))
		}
	}
	return a
}

// MaskPhone masks every digit of a phone number but the last 4.
func MaskPhone(p string) string {
	digits := 0
	for i := 0; i < len(p); i++ {
		if p[i] >= '0' && p[i] <= '9' {
			digits++
		}
	}
	keep := min(4, digits)
	if digits <= 4 {
		keep = 0 // too short to be a number worth showing a part of
	}
	b := []byte(p)
	masked := 0
	for i := range b {
		if b[i] >= '0' && b[i] <= '9' {
			if masked < digits-keep {
				b[i] = '*'
			}
			masked++
		}
	}
	return string(b)
}

type keyClass int

const (
	plainKey keyClass = iota
	secretKey
	phoneKey
)

var (
	secretWords = []string{"token", "secret", "password", "passwd", "authorization", "cookie", "apikey", "credential", "signature", "privatekey"}
	phoneWords  = []string{"phone", "mobile", "msisdn"}
)

func classify(key string) keyClass {
	// Fold case and drop separators: "X-Api-Key" and "api_key" are "xapikey", "apikey".
	var buf [64]byte
	k := buf[:0]
	for i := 0; i < len(key) && len(k) < len(buf); i++ {
		c := key[i]
		switch {
		case c >= 'A' && c <= 'Z':
			k = append(k, c+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			k = append(k, c)
		}
	}
	s := string(k) // a short key's copy stays on the stack
	for _, w := range secretWords {
		if strings.Contains(s, w) {
			return secretKey
		}
	}
	for _, w := range phoneWords {
		if strings.Contains(s, w) {
			return phoneKey
		}
	}
	return plainKey
}

func scrubTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch classify(k) {
			case secretKey:
				x[k] = Redacted
			case phoneKey:
				x[k] = MaskPhone(fmt.Sprint(e))
			default:
				x[k] = scrubTree(e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = scrubTree(e)
		}
		return x
	case string:
		s, _ := scrub(x)
		return s
	default:
		return v
	}
}

var (
	bearerRE   = regexp.MustCompile(`(?i)(bearer|basic)\s+[^\s"',;]+`)
	userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^/\s@]*@`)
	kvSecretRE = regexp.MustCompile(`(?i)((?:[a-z_-]*(?:token|secret|password|passwd|pwd|api_?key|authorization)[a-z_-]*)\s*[=:]\s*)([^&\s"',;]+)`)
	jsonKeyRE  = regexp.MustCompile(`(?i)("[a-z_-]*(?:token|secret|password|passwd|authorization|api_?key)[a-z_-]*"\s*:\s*)"[^"]*"`)
	jsonPhone  = regexp.MustCompile(`(?i)("[a-z_-]*(?:phone|mobile)[a-z_-]*"\s*:\s*")([^"]*)"`)
)

// scrub masks secrets and phone numbers in free text. It costs a scan of s
// when there is nothing to mask.
func scrub(s string) (string, bool) {
	out := s
	has := func(sub string) bool { return containsFold(s, sub) }
	if strings.IndexByte(s, ' ') >= 0 && (has("bearer") || has("basic")) {
		out = bearerRE.ReplaceAllString(out, "$1 "+Redacted)
	}
	if strings.Contains(s, "://") {
		out = userinfoRE.ReplaceAllString(out, "$1:"+Redacted+"@")
	}
	if strings.ContainsAny(s, "=:") && (has("token") || has("secret") || has("pass") || has("pwd") || has("key") || has("authorization")) {
		out = jsonKeyRE.ReplaceAllString(out, `$1"`+Redacted+`"`)
		out = kvSecretRE.ReplaceAllString(out, "$1"+Redacted)
	}
	if strings.Contains(s, `"`) && (has("phone") || has("mobile")) {
		out = jsonPhone.ReplaceAllStringFunc(out, func(m string) string {
			sub := jsonPhone.FindStringSubmatch(m)
			return sub[1] + MaskPhone(sub[2]) + `"`
		})
	}
	out = maskPhoneRuns(out)
	return out, out != s
}

// maskPhoneRuns masks what looks like a phone number: '+' then 7 to 15
// digits, or 11 to 15 digits in a row (a mainland China mobile number has
// 11), not part of a longer word or number. Shorter runs are left alone, so
// that counts, ids and times stay readable.
func maskPhoneRuns(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		if !(c >= '0' && c <= '9') || (i > 0 && isWordByte(s[i-1])) {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n := j - i
		plus := i > 0 && s[i-1] == '+'
		bounded := j == len(s) || !isWordByte(s[j])
		if bounded && n <= 15 && (n >= 11 || (plus && n >= 7)) {
			if b == nil {
				b = []byte(s)
			}
			for k := i; k < j-4; k++ {
				b[k] = '*'
			}
		}
		i = j
	}
	if b == nil {
		return s
	}
	return string(b)
}

// containsFold reports whether s contains the lower-case ASCII word sub, in
// any case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.'
}
