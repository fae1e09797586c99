package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Scheme names coupond's request signatures in the Authorization header:
//
//	Authorization: CPD-HMAC-SHA256 Credential=<key id>, Timestamp=<unix seconds>, Nonce=<nonce>, Signature=<hex>
//
// The signature is HMAC-SHA256, keyed with the key's secret, of the string
// to sign: these lines joined by "\n" —
//
//	CPD-HMAC-SHA256
//	<method, upper case>
//	<path as sent, percent-encoded>
//	<raw query as sent, without '?'; empty line when none>
//	<timestamp>
//	<nonce>
//	<SHA-256 of the body in lower-case hex; that of the empty string for no body>
//
// A signature is good for MaxSkew either side of the server's clock, and
// its nonce only once: the server remembers nonces for twice the skew.
const Scheme = "CPD-HMAC-SHA256"

// Signature is a parsed Authorization header of the Scheme.
type Signature struct {
	KeyID     string
	Timestamp int64 // Unix seconds
	Nonce     string
	Signature []byte // 32 bytes
}

// Errors of parsing and checking a signature; each is a bad_signature.
var (
	ErrMalformed = errors.New("malformed signature header")
	ErrStale     = errors.New("signature timestamp outside the allowed clock skew")
	ErrMismatch  = errors.New("signature does not match the request")
)

// Limits of a signature's parts.
const (
	MinNonceLength = 16
	MaxNonceLength = 64
	// MaxAuthorizationLength bounds the header the parser reads.
	MaxAuthorizationLength = 512
)

// IsSigned reports whether an Authorization header value uses the Scheme.
func IsSigned(h string) bool {
	return len(h) > len(Scheme) && strings.EqualFold(h[:len(Scheme)], Scheme) && h[len(Scheme)] == ' '
}

// ParseAuthorization parses an Authorization header of the Scheme. Every
// parameter must appear exactly once; unknown ones are refused, so that a
// client that thinks it signed something more learns it did not.
func ParseAuthorization(h string) (Signature, error) {
	var s Signature
	if len(h) > MaxAuthorizationLength || !IsSigned(h) {
		return s, ErrMalformed
	}
	var seen [4]bool
	for part := range strings.SplitSeq(h[len(Scheme)+1:], ",") {
		name, value, ok := strings.Cut(strings.Trim(part, " "), "=")
		if !ok {
			return Signature{}, ErrMalformed
		}
		var i int
		switch name {
		case "Credential":
			i = 0
			if !ValidKeyID(value) {
				return Signature{}, ErrMalformed
			}
			s.KeyID = value
		case "Timestamp":
			i = 1
			ts, err := strconv.ParseInt(value, 10, 64)
			if err != nil || ts <= 0 || len(value) > 12 || value[0] == '+' || value[0] == '0' {
				return Signature{}, ErrMalformed
			}
			s.Timestamp = ts
		case "Nonce":
			i = 2
			if !ValidNonce(value) {
				return Signature{}, ErrMalformed
			}
			s.Nonce = value
		case "Signature":
			i = 3
			raw, err := hex.DecodeString(value)
			if err != nil || len(raw) != sha256.Size {
				return Signature{}, ErrMalformed
			}
			s.Signature = raw
		default:
			return Signature{}, ErrMalformed
		}
		if seen[i] {
			return Signature{}, ErrMalformed
		}
		seen[i] = true
	}
	if seen != [4]bool{true, true, true, true} {
		return Signature{}, ErrMalformed
	}
	return s, nil
}

// String is the Authorization header value of s.
func (s Signature) String() string {
	return Scheme + " Credential=" + s.KeyID + ", Timestamp=" + strconv.FormatInt(s.Timestamp, 10) +
		", Nonce=" + s.Nonce + ", Signature=" + hex.EncodeToString(s.Signature)
}

// ValidNonce reports whether s can be a nonce: 16 to 64 characters of
// A-Z, a-z, 0-9, '-' and '_'.
func ValidNonce(s string) bool {
	if len(s) < MinNonceLength || len(s) > MaxNonceLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Request is what a signature covers.
type Request struct {
	Method   string
	Path     string // percent-encoded, as sent
	RawQuery string
	BodyHash [sha256.Size]byte
}

// StringToSign is the text a signature of r with timestamp and nonce signs.
func StringToSign(r Request, timestamp int64, nonce string) []byte {
	b := make([]byte, 0, 160+len(r.Path)+len(r.RawQuery))
	b = append(b, Scheme...)
	b = append(b, '\n')
	b = append(b, strings.ToUpper(r.Method)...)
	b = append(b, '\n')
	b = append(b, r.Path...)
	b = append(b, '\n')
	b = append(b, r.RawQuery...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, timestamp, 10)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	return hex.AppendEncode(b, r.BodyHash[:])
}

// Sign returns the signature of r by the key's secret.
func Sign(keyID, secret string, r Request, timestamp int64, nonce string) Signature {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(StringToSign(r, timestamp, nonce))
	return Signature{KeyID: keyID, Timestamp: timestamp, Nonce: nonce, Signature: m.Sum(nil)}
}

// Verify checks s against r and the key's secret at now: ErrStale if its
// timestamp is more than skew away from now, ErrMismatch if it signs
// something else. It does not check the nonce: that takes shared state.
func Verify(s Signature, secret string, r Request, now time.Time, skew time.Duration) error {
	if d := now.Sub(time.Unix(s.Timestamp, 0)); d > skew || d < -skew {
		return ErrStale
	}
	want := Sign(s.KeyID, secret, r, s.Timestamp, s.Nonce)
	if !hmac.Equal(want.Signature, s.Signature) {
		return ErrMismatch
	}
	return nil
}
