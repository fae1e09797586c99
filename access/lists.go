package access

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// List is a black or white list.
type List string

const (
	Blacklist List = "blacklist"
	Whitelist List = "whitelist"
)

// Kind is the kind of identity a list entry names.
type Kind string

const (
	KindUser   Kind = "user"
	KindPhone  Kind = "phone"
	KindDevice Kind = "device"
	// KindIP entries are an address or a CIDR prefix (203.0.113.0/24).
	KindIP Kind = "ip"
)

// GlobalScope is the scope of the lists every batch honours; a batch's own
// lists have its id as scope.
const GlobalScope = ""

// MaxValueBytes bounds a list entry's value.
const MaxValueBytes = 128

// Entry is one identity on a list, global or of one batch.
type Entry struct {
	Scope     string    `json:"-"`
	List      List      `json:"-"`
	Kind      Kind      `json:"kind" enum:"user,phone,device,ip" doc:"what value names"`
	Value     string    `json:"value" doc:"the user id, phone number, device id, or IP address or CIDR prefix"`
	Reason    string    `json:"reason,omitempty" doc:"why the entry is there, for operators"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Change is an entry's state at a version: what the replicas apply in
// version order. Removed entries stay in the store as tombstones so that a
// replica learns of their removal.
type Change struct {
	Entry
	Version int64
	Removed bool
}

// ValidList reports whether l is a list.
func ValidList(l List) bool { return l == Blacklist || l == Whitelist }

// Normalize returns value in the canonical form entries and lookups share:
// a phone keeps its digits and leading '+', an IP address its canonical text
// (an IPv4-mapped IPv6 address as IPv4), a prefix its masked form; user and
// device ids are taken as given. The error says what is wrong with value.
func Normalize(kind Kind, value string) (string, error) {
	switch {
	case value == "":
		return "", errNoValue
	case len(value) > MaxValueBytes:
		return "", errors.New("must be at most 128 bytes")
	}
	switch kind {
	case KindUser, KindDevice:
		if !utf8.ValidString(value) {
			return "", errors.New("must be valid UTF-8")
		}
		for _, r := range value {
			if r < 0x20 || r == 0x7f {
				return "", errors.New("must not contain control characters")
			}
		}
		return value, nil
	case KindPhone:
		p := NormalizePhone(value)
		if p == "" {
			return "", errors.New("must be 5 to 20 digits, optionally after a '+'")
		}
		return p, nil
	case KindIP:
		if strings.Contains(value, "/") {
			pfx, err := netip.ParsePrefix(value)
			if err != nil {
				return "", errors.New("must be an IP address or a CIDR prefix")
			}
			addr := pfx.Addr()
			bits := pfx.Bits()
			if addr.Is4In6() && bits >= 96 {
				addr, bits = addr.Unmap(), bits-96
			}
			pfx = netip.PrefixFrom(addr.WithZone(""), bits).Masked()
			if pfx.Bits() == pfx.Addr().BitLen() {
				return pfx.Addr().String(), nil
			}
			return pfx.String(), nil
		}
		addr, err := netip.ParseAddr(value)
		if err != nil {
			return "", errors.New("must be an IP address or a CIDR prefix")
		}
		return addr.Unmap().WithZone("").String(), nil
	}
	return "", errors.New("kind must be user, phone, device or ip")
}

// NormalizePhone keeps a phone number's digits and its leading '+', after
// dropping spaces, hyphens, dots and parentheses; "" if what is left is not
// 5 to 20 digits.
func NormalizePhone(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' && b.Len() == 0:
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return ""
		}
	}
	s := b.String()
	digits := strings.TrimPrefix(s, "+")
	if len(digits) < 5 || len(digits) > 20 {
		return ""
	}
	return s
}

// Identities are the identities of one claim that lists can name; empty
// ones (and an invalid IP) are not looked up.
type Identities struct {
	UserID   string
	Phone    string // normalized
	DeviceID string
	IP       netip.Addr
}

// Lists is the in-process replica of every black and white list, which the
// claim path reads without a round trip to any backend: it holds a 64-bit
// hash of each entry (scope, list, kind, value) in one set, 30 to 40 bytes
// an entry with the map's slack (measured by BenchmarkListsMatch), so ten
// million entries take a few hundred megabytes, and a lookup costs a hash
// and a map probe whatever the size. Two different entries share a
// hash with probability 2⁻⁶⁴ per pair: a lookup errs (an unlisted identity
// found listed) with probability below n·2⁻⁶⁴, about 5·10⁻¹³ for ten million
// entries.
//
// IP prefixes are found by looking up the address masked to each prefix
// length the scope's list holds, so a lookup costs one probe per length in
// use. Replicas are filled with Apply from the store's changes in version
// order; the service keeps each instance's replica a moment behind the store.
type Lists struct {
	seed maphash.Seed

	mu      sync.RWMutex
	set     map[uint64]struct{}
	lengths map[scopeKey]*prefixLengths // IP prefixes per (scope, list), by length
	byScope map[scopeKey]int            // entries per (scope, list)
	version int64
}

type scopeKey struct {
	scope string
	list  List
}

// prefixLengths counts a list's IP prefixes by length.
type prefixLengths struct {
	v4 [33]int
	v6 [129]int
}

func (p *prefixLengths) count(v6 bool, bits int) *int {
	if v6 {
		return &p.v6[bits]
	}
	return &p.v4[bits]
}

// NewLists returns an empty replica.
func NewLists() *Lists {
	return &Lists{
		seed:    maphash.MakeSeed(),
		set:     make(map[uint64]struct{}),
		lengths: make(map[scopeKey]*prefixLengths),
		byScope: make(map[scopeKey]int),
	}
}

// Version is the highest version applied.
func (l *Lists) Version() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.version
}

// Len is the number of entries held.
func (l *Lists) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.set)
}

// Apply applies changes in order. A change of a version at or below the
// replica's is applied again, which is harmless: adding is idempotent, and
// so is removing.
func (l *Lists) Apply(changes []Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range changes {
		h := l.hash(c.Scope, c.List, c.Kind, c.Value)
		_, held := l.set[h]
		sk := scopeKey{c.Scope, c.List}
		delta := 0
		switch {
		case c.Removed && held:
			delete(l.set, h)
			delta = -1
		case !c.Removed && !held:
			l.set[h] = struct{}{}
			delta = 1
		}
		if delta != 0 {
			l.byScope[sk] += delta
			if l.byScope[sk] == 0 {
				delete(l.byScope, sk)
			}
			if c.Kind == KindIP && strings.Contains(c.Value, "/") {
				if pfx, err := netip.ParsePrefix(c.Value); err == nil {
					pl := l.lengths[sk]
					if pl == nil {
						pl = &prefixLengths{}
						l.lengths[sk] = pl
					}
					*pl.count(pfx.Addr().Is6(), pfx.Bits()) += delta
				}
			}
		}
		l.version = max(l.version, c.Version)
	}
}

// Has reports whether a list of scope holds an identity of kind with the
// normalized value (for an IP: the address itself, not its prefixes).
func (l *Lists) Has(scope string, list List, kind Kind, value string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.set[l.hash(scope, list, kind, value)]
	return ok
}

// Match returns the kind of the first of ids that a list of scope holds,
// looking at the user, phone, device and IP (with its prefixes) in that
// order; ok is false when it holds none.
func (l *Lists) Match(scope string, list List, ids Identities) (kind Kind, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.byScope[scopeKey{scope, list}] == 0 {
		return "", false // the common case: the batch has no list of its own
	}
	for _, c := range [...]struct {
		kind  Kind
		value string
	}{{KindUser, ids.UserID}, {KindPhone, ids.Phone}, {KindDevice, ids.DeviceID}} {
		if c.value == "" {
			continue
		}
		if _, ok := l.set[l.hash(scope, list, c.kind, c.value)]; ok {
			return c.kind, true
		}
	}
	if ids.IP.IsValid() && l.hasIP(scope, list, ids.IP) {
		return KindIP, true
	}
	return "", false
}

// hasIP looks an address up, and its prefixes of the lengths the list holds.
func (l *Lists) hasIP(scope string, list List, addr netip.Addr) bool {
	if _, ok := l.set[l.hash(scope, list, KindIP, addr.String())]; ok {
		return true
	}
	pl := l.lengths[scopeKey{scope, list}]
	if pl == nil {
		return false
	}
	for bits := range addr.BitLen() {
		if *pl.count(addr.Is6(), bits) == 0 {
			continue
		}
		pfx, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		if _, ok := l.set[l.hash(scope, list, KindIP, pfx.String())]; ok {
			return true
		}
	}
	return false
}

func (l *Lists) hash(scope string, list List, kind Kind, value string) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	h.WriteString(string(list))
	h.WriteByte(0)
	h.WriteString(string(kind))
	h.WriteByte(0)
	h.WriteString(value)
	return h.Sum64()
}
