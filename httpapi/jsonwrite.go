package httpapi

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/coupond/coupond/coupon"
)

// The hot read answers ("my coupons", product tags) are written by hand:
// encoding/json spends most of such a call reflecting over the structs and
// formatting each time through MarshalJSON and then compacting it. What is
// written is byte for byte what huma's encoder (encoding/json, HTML not
// escaped) writes for the same value; jsonwrite_test.go holds them to it.

// appendJSONString appends s as a JSON string, as encoding/json does with
// HTML escaping off: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029
// are escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, trailing zeros dropped).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendClaim appends c as encoding/json encodes a coupon.Claim.
func appendClaim(b []byte, c *coupon.Claim) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"batch_id":`...)
	b = appendJSONString(b, c.BatchID)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, c.Code)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, c.UserID)
	if c.Phone != "" {
		b = append(b, `,"phone":`...)
		b = appendJSONString(b, c.Phone)
	}
	if c.OpenID != "" {
		b = append(b, `,"open_id":`...)
		b = appendJSONString(b, c.OpenID)
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(c.Status))
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, c.Amount, 10)
	b = append(b, `,"valid_from":`...)
	b = appendJSONTime(b, c.ValidFrom)
	b = append(b, `,"valid_to":`...)
	b = appendJSONTime(b, c.ValidTo)
	b = append(b, `,"claimed_at":`...)
	b = appendJSONTime(b, c.ClaimedAt)
	b = append(b, `,"updated_at":`...)
	b = appendJSONTime(b, c.UpdatedAt)
	if c.Platform != "" {
		b = append(b, `,"platform":`...)
		b = appendJSONString(b, c.Platform)
	}
	if c.Channel != "" {
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, c.Channel)
	}
	b = append(b, `,"batch_name":`...)
	b = appendJSONString(b, c.BatchName)
	if c.MerchantID != "" {
		b = append(b, `,"merchant_id":`...)
		b = appendJSONString(b, c.MerchantID)
	}
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(c.Type))
	if c.MinSpend != 0 {
		b = append(b, `,"min_spend":`...)
		b = strconv.AppendInt(b, c.MinSpend, 10)
	}
	if c.PercentOff != 0 {
		b = append(b, `,"percent_off":`...)
		b = strconv.AppendInt(b, int64(c.PercentOff), 10)
	}
	if len(c.UsagePlatforms) > 0 {
		b = append(b, `,"usage_platforms":[`...)
		for i, p := range c.UsagePlatforms {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendClaimList appends l as huma's encoder writes a ClaimList: the
// JSON and a newline.
func appendClaimList(b []byte, l ClaimList) []byte {
	b = append(b, `{"items":[`...)
	for i, c := range l.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendClaim(b, c)
	}
	b = append(b, ']')
	if l.NextCursor != "" {
		b = append(b, `,"next_cursor":`...)
		b = appendJSONString(b, l.NextCursor)
	}
	return append(b, "}\n"...)
}
