package httpapi

import (
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString: the hand-written product-tags answer quotes the
// ids as asked; every valid UTF-8 string must come back unchanged through
// a JSON decoder.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "p1", "category:shoes", `a"b`, `back\slash`, "tab\there", "\x00\x1f", "<&>", "日本\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatalf("the prefix was overwritten: %q", b)
		}
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Fatalf("%q quoted as %s: %v", s, b[1:], err)
		}
		want := s
		var norm string
		if raw, err := json.Marshal(s); err == nil && json.Unmarshal(raw, &norm) == nil {
			want = norm // invalid UTF-8 becomes U+FFFD either way
		}
		if got != want {
			t.Fatalf("%q came back as %q", s, got)
		}
	})
}
