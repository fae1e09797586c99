package coupon

import (
	"crypto/rand"
	"strings"
	"time"
)

// crockford is Crockford's base32 alphabet: digits and letters without I, L,
// O and U, so that codes read aloud or typed by hand are hard to confuse.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = int8(i)
	}
	return t
}()

// Limits of the code format.
const (
	MinCodeLength     = 8  // 40 random bits
	MaxCodeLength     = 24 // 120 random bits
	DefaultCodeLength = 12 // 60 random bits
	MaxCodePrefix     = 8
	MaxCodeChars      = MaxCodePrefix + MaxCodeLength + 1
)

// CodeFormat says how internal codes of a batch look: Prefix, then Length
// random Crockford digits, then one check character.
type CodeFormat struct {
	Prefix string `json:"prefix,omitempty"`
	Length int    `json:"length,omitempty"`
}

func (f CodeFormat) validate(v *Validation, field string) {
	if f.Length != 0 && (f.Length < MinCodeLength || f.Length > MaxCodeLength) {
		v.Addf(field+".length", "must be between %d and %d", MinCodeLength, MaxCodeLength)
	}
	if len(f.Prefix) > MaxCodePrefix {
		v.Addf(field+".prefix", "must be at most %d characters", MaxCodePrefix)
	}
	for i := 0; i < len(f.Prefix); i++ {
		if crockfordValue[f.Prefix[i]] < 0 {
			v.Add(field+".prefix", "must use only the characters 0-9 and A-Z without I, L, O and U")
			break
		}
	}
}

// NewCode returns a fresh crypto-random code in format f.
func NewCode(f CodeFormat) string {
	n := f.Length
	if n == 0 {
		n = DefaultCodeLength
	}
	buf := make([]byte, len(f.Prefix)+n+1)
	copy(buf, f.Prefix)
	body := buf[len(f.Prefix) : len(f.Prefix)+n]
	_, _ = rand.Read(body) // crypto/rand.Read never fails
	for i, b := range body {
		body[i] = crockford[b&31] // 256 is a multiple of 32: no modulo bias
	}
	buf[len(buf)-1] = checkChar(buf[:len(buf)-1])
	return string(buf)
}

// ParseCode normalises a code as a person may type it (lower case, hyphens,
// spaces, I or L for 1, O for 0) and verifies its check character, so that
// a mistyped code is refused without a store lookup.
func ParseCode(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fieldError("code", "is required")
	}
	if len(s) > 2*MaxCodeChars {
		return "", fieldError("code", "is too long")
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == ' ':
			continue
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		switch c {
		case 'I', 'L':
			c = '1'
		case 'O':
			c = '0'
		}
		if crockfordValue[c] < 0 {
			return "", fieldError("code", "contains a character that is not in the code alphabet")
		}
		out = append(out, c)
	}
	if len(out) < 2 || len(out) > MaxCodeChars {
		return "", fieldError("code", "has the wrong length")
	}
	if checkChar(out[:len(out)-1]) != out[len(out)-1] {
		return "", fieldError("code", "does not match its check character (mistyped?)")
	}
	return string(out), nil
}

// checkChar computes the check character of a canonical code body with the
// Damm algorithm over GF(32): the quasigroup x∘y = 2·x + y is totally
// anti-symmetric, so the check catches every single-character error and
// every swap of two adjacent characters (Luhn mod 32 misses some swaps, 0
// and Z for one).
func checkChar(body []byte) byte {
	var interim byte
	for _, c := range body {
		interim = gf32Double(interim) ^ byte(crockfordValue[c])
	}
	return crockford[gf32Double(interim)]
}

// gf32Double multiplies by x in GF(2⁵) modulo x⁵ + x² + 1.
func gf32Double(v byte) byte {
	v <<= 1
	if v&0x20 != 0 {
		v ^= 0x25
	}
	return v
}

func fieldError(field, reason string) *Error {
	return &Error{Code: CodeInvalid, Message: "invalid input", Fields: []FieldError{{Field: field, Reason: reason}}}
}

// Code is one issued coupon identifier of a batch.
type Code struct {
	Code      string            `json:"code"`
	BatchID   string            `json:"batch_id"`
	Seq       int64             `json:"seq"` // 1-based position in the batch's generation order
	Amount    int64             `json:"amount"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	// Derived from the claim holding the code, if any.
	Status   CodeStatus `json:"status"`
	ClaimID  string     `json:"claim_id,omitempty"`
	IssuedAt *time.Time `json:"issued_at,omitempty"`
}

// CodeStatus is where a code is in its life.
type CodeStatus string

const (
	CodeUnclaimed CodeStatus = "unclaimed" // generated, in or headed for the pool
	CodeClaimed   CodeStatus = "claimed"   // bound to a claim; the claim's status tells the rest
)
