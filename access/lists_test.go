package access_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/coupond/coupond/access"
)

func TestListsMatch(t *testing.T) {
	t.Parallel()
	l := access.NewLists()
	l.Apply([]access.Change{
		{Entry: access.Entry{Scope: "", List: access.Blacklist, Kind: access.KindDevice, Value: "farm-1"}, Version: 1},
		{Entry: access.Entry{Scope: "b1", List: access.Blacklist, Kind: access.KindIP, Value: "203.0.113.0/24"}, Version: 2},
		{Entry: access.Entry{Scope: "b1", List: access.Whitelist, Kind: access.KindPhone, Value: "+8613800000000"}, Version: 3},
		{Entry: access.Entry{Scope: "", List: access.Blacklist, Kind: access.KindIP, Value: "2001:db8::/32"}, Version: 4},
	})
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for _, tc := range []struct {
		scope string
		list  access.List
		ids   access.Identities
		kind  access.Kind
		ok    bool
	}{
		{"", access.Blacklist, access.Identities{UserID: "u", DeviceID: "farm-1"}, access.KindDevice, true},
		{"b1", access.Blacklist, access.Identities{UserID: "u", DeviceID: "farm-1"}, "", false}, // global, not the batch's
		{"b1", access.Blacklist, access.Identities{UserID: "u", IP: ip("203.0.113.200")}, access.KindIP, true},
		{"b1", access.Blacklist, access.Identities{UserID: "u", IP: ip("203.0.114.1")}, "", false},
		{"", access.Blacklist, access.Identities{UserID: "u", IP: ip("2001:db8:1::7")}, access.KindIP, true},
		{"b1", access.Whitelist, access.Identities{UserID: "u", Phone: "+8613800000000"}, access.KindPhone, true},
		{"b2", access.Whitelist, access.Identities{UserID: "u", Phone: "+8613800000000"}, "", false},
	} {
		kind, ok := l.Match(tc.scope, tc.list, tc.ids)
		if kind != tc.kind || ok != tc.ok {
			t.Errorf("Match(%q, %s, %+v) = %q %v, want %q %v", tc.scope, tc.list, tc.ids, kind, ok, tc.kind, tc.ok)
		}
	}
	// Removal is applied; an old change applied again changes nothing.
	l.Apply([]access.Change{{Entry: access.Entry{Scope: "", List: access.Blacklist, Kind: access.KindDevice, Value: "farm-1"}, Version: 5, Removed: true}})
	if _, ok := l.Match("", access.Blacklist, access.Identities{DeviceID: "farm-1"}); ok || l.Version() != 5 {
		t.Fatalf("removed entry still matches (version %d)", l.Version())
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind      access.Kind
		in, want  string
		wantError bool
	}{
		{access.KindPhone, "+86 (138) 0000-0000", "+8613800000000", false},
		{access.KindPhone, "12a45", "", true},
		{access.KindIP, "::ffff:203.0.113.9", "203.0.113.9", false},
		{access.KindIP, "203.0.113.77/24", "203.0.113.0/24", false},
		{access.KindIP, "203.0.113.77/32", "203.0.113.77", false},
		{access.KindIP, "not-an-ip", "", true},
		{access.KindUser, "a\x01b", "", true},
		{access.KindDevice, "dev-1", "dev-1", false},
	} {
		got, err := access.Normalize(tc.kind, tc.in)
		if got != tc.want || (err != nil) != tc.wantError {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q (error %v)", tc.kind, tc.in, got, err, tc.want, tc.wantError)
		}
	}
}

// BenchmarkListsMatch is the claim path's list check — global and batch
// blacklists, the global whitelist — against replicas of growing size: a
// lookup is a few hashes and map probes whatever the size.
func BenchmarkListsMatch(b *testing.B) {
	for _, n := range []int{0, 1_000, 1_000_000, 5_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			l := access.NewLists()
			changes := make([]access.Change, 0, 10_000)
			for i := range n {
				kind := []access.Kind{access.KindUser, access.KindPhone, access.KindDevice, access.KindIP}[i%4]
				v := fmt.Sprintf("listed-%d", i)
				if kind == access.KindIP {
					v = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
				}
				changes = append(changes, access.Change{Entry: access.Entry{List: access.Blacklist, Kind: kind, Value: v}, Version: int64(i + 1)})
				if len(changes) == cap(changes) {
					l.Apply(changes)
					changes = changes[:0]
				}
			}
			l.Apply(changes)
			l.Apply([]access.Change{{Entry: access.Entry{Scope: "b1", List: access.Blacklist, Kind: access.KindIP, Value: "203.0.113.0/24"}}})
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			ids := access.Identities{UserID: "bench-user", Phone: "+8613912345678", DeviceID: "dev-1", IP: netip.MustParseAddr("198.51.100.7")}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = l.Match("", access.Blacklist, ids)
					_, _ = l.Match("b1", access.Blacklist, ids)
					_, _ = l.Match("", access.Whitelist, ids)
				}
			})
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(max(n, 1)), "B/entry")
		})
	}
}
