package coupon

import (
	"strings"
	"testing"
	"time"
)

func TestNewCodeParsesBack(t *testing.T) {
	t.Parallel()
	for _, f := range []CodeFormat{{}, {Prefix: "SAVE", Length: 8}, {Length: 24}} {
		seen := map[string]bool{}
		for i := 0; i < 2000; i++ {
			c := NewCode(f)
			wantLen := len(f.Prefix) + max(f.Length, DefaultCodeLength*boolInt(f.Length == 0)) + 1
			if len(c) != wantLen || !strings.HasPrefix(c, f.Prefix) {
				t.Fatalf("code %q: want %d characters starting %q", c, wantLen, f.Prefix)
			}
			got, err := ParseCode(c)
			if err != nil || got != c {
				t.Fatalf("ParseCode(%q) = %q, %v", c, got, err)
			}
			if seen[c] {
				t.Fatalf("code %q drawn twice", c)
			}
			seen[c] = true
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestParseCodeNormalisesWhatPeopleType(t *testing.T) {
	t.Parallel()
	c := NewCode(CodeFormat{Length: 12})
	typed := strings.ToLower(c[:4]) + "-" + c[4:8] + " " + c[8:]
	typed = strings.NewReplacer("1", "l", "0", "o").Replace(typed)
	got, err := ParseCode(typed)
	if err != nil || got != c {
		t.Fatalf("ParseCode(%q) = %q, %v; want %q", typed, got, err, c)
	}
}

func TestCheckCharacterCatchesTyposAndSwaps(t *testing.T) {
	t.Parallel()
	for i := 0; i < 300; i++ {
		c := NewCode(CodeFormat{Length: 10})
		for pos := 0; pos < len(c); pos++ {
			for _, r := range crockford {
				if byte(r) == c[pos] {
					continue
				}
				typo := c[:pos] + string(r) + c[pos+1:]
				if _, err := ParseCode(typo); err == nil {
					t.Fatalf("single-character error %q → %q accepted", c, typo)
				}
			}
			if pos+1 < len(c) && c[pos] != c[pos+1] {
				swapped := c[:pos] + string(c[pos+1]) + string(c[pos]) + c[pos+2:]
				if _, err := ParseCode(swapped); err == nil {
					t.Fatalf("transposition %q → %q accepted", c, swapped)
				}
			}
		}
	}
}

func TestParseCodeRefusesJunk(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", " ", "U", "A", "!!!!", strings.Repeat("0", 200), "ÄBC"} {
		if _, err := ParseCode(s); ErrorCode(err) != CodeInvalid {
			t.Errorf("ParseCode(%q) = %v, want an invalid error", s, err)
		}
	}
}

func FuzzParseCode(f *testing.F) {
	f.Add(NewCode(CodeFormat{}))
	f.Add("sale-1234-abcd")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCode(s)
		if err != nil {
			return
		}
		// Whatever parses is canonical and parses to itself.
		again, err := ParseCode(c)
		if err != nil || again != c {
			t.Fatalf("ParseCode(%q) = %q, but ParseCode(%q) = %q, %v", s, c, c, again, err)
		}
		if checkChar([]byte(c[:len(c)-1])) != c[len(c)-1] {
			t.Fatalf("%q accepted with a wrong check character", c)
		}
	})
}

func TestIDsAreTimeOrderedAndValid(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewID(base.Add(time.Duration(i) * time.Millisecond))
		if !ValidID(id) {
			t.Fatalf("NewID gave invalid %q", id)
		}
		if id <= prev {
			t.Fatalf("%q not after %q", id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "x", strings.Repeat("Z", 26), strings.Repeat("0", 25) + "U"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}
