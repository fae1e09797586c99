package httpapi

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/coupon"
)

// humaJSON is what huma's default encoder writes for v.
func humaJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzAppendJSONString: a string is quoted byte for byte as encoding/json
// quotes it with HTML escaping off (huma's encoder), invalid UTF-8 included.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "p1", "category:shoes", `a"b`, `back\slash`, "tab\there", "\x00\x1f\x7f", "<&>",
		"日本\u2028\u2029", "\b\f\n\r", "bad\xff\xfe utf8", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatalf("the prefix was overwritten: %q", b)
		}
		want := bytes.TrimSuffix(humaJSON(t, s), []byte("\n"))
		if !bytes.Equal(b[1:], want) {
			t.Fatalf("%q quoted as %s, encoding/json writes %s", s, b[1:], want)
		}
	})
}

// TestAppendClaimListIsEncodingJSON: "my coupons" written by hand is the
// same bytes as huma's encoder writes for the same ClaimList, over claims
// with every optional field present or absent, odd strings and times in
// several zones and precisions.
func TestAppendClaimListIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "a", "u-42", `quote"d`, "back\\slash", "line\nbreak", "\x00ctl\x1f", "<b>&amp;</b>", "日本語",
		"\u2028sep\u2029", "bad\xffutf8", strings.Repeat("x", 300)}
	str := func() string { return strs[r.IntN(len(strs))] }
	opt := func() string {
		if r.IntN(2) == 0 {
			return ""
		}
		return str()
	}
	zones := []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("NST", -(3*3600 + 1800))}
	tm := func() time.Time {
		t := time.Unix(r.Int64N(4_000_000_000), 0).In(zones[r.IntN(len(zones))])
		switch r.IntN(4) {
		case 1:
			t = t.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
		case 2:
			t = t.Add(time.Duration(r.IntN(1_000_000)) * time.Microsecond)
		case 3:
			t = t.Add(time.Duration(r.IntN(1_000_000_000)))
		}
		return t
	}
	num := func() int64 {
		if r.IntN(3) == 0 {
			return 0
		}
		return r.Int64N(2_000_000) - 1_000_000
	}
	for range 500 {
		l := ClaimList{Items: []*coupon.Claim{}}
		for range r.IntN(5) {
			c := &coupon.Claim{ID: str(), BatchID: str(), Code: str(), UserID: str(), Phone: opt(), OpenID: opt(),
				Status: coupon.ClaimStatus(str()), Amount: num(), ValidFrom: tm(), ValidTo: tm(), ClaimedAt: tm(), UpdatedAt: tm(),
				Platform: opt(), Channel: opt(), BatchName: str(), MerchantID: opt(), Type: coupon.Type(str()),
				MinSpend: num(), PercentOff: int(num() % 100), UserSeq: 3, UserLimit: 5, IdempotencyKey: "not written"}
			switch r.IntN(3) {
			case 1:
				c.UsagePlatforms = []string{}
			case 2:
				c.UsagePlatforms = []string{str(), str()}
			}
			l.Items = append(l.Items, c)
		}
		l.NextCursor = opt()
		want := humaJSON(t, l)
		if got := appendClaimList(nil, l); !bytes.Equal(got, want) {
			t.Fatalf("hand-written:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

func BenchmarkAppendClaimList(b *testing.B) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)
	c := &coupon.Claim{ID: "06F7Q9V6J5W3T8K2M4N1P0R9SA", BatchID: "06F7Q9T2B8C4D6E0F1G3H5J7KB", Code: "7KQ2M9XH4TPCW",
		UserID: "lg-1", Status: coupon.ClaimAvailable, Amount: 500, ValidFrom: at, ValidTo: at.AddDate(0, 1, 0), ClaimedAt: at,
		UpdatedAt: at, Platform: "ios", BatchName: "loadgen", Type: "cash"}
	l := ClaimList{Items: []*coupon.Claim{c, c, c}}
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendClaimList(make([]byte, 0, 64+400*len(l.Items)), l)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(l)
		}
	})
}
