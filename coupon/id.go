package coupon

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// NewID returns a 26-character, time-ordered, random identifier in Crockford
// base32 (the ULID layout: 48 bits of milliseconds, 80 random bits). Sorting
// IDs as strings sorts them by creation time, which keyset pagination relies on.
func NewID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails
	var out [26]byte
	// 128 bits as 26 base32 digits, most significant first (the first digit holds 3 bits).
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ValidID reports whether s has the shape of an ID made by NewID.
func ValidID(s string) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if crockfordValue[s[i]] < 0 {
			return false
		}
	}
	return true
}
