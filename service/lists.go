package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// ListEntryInput is one entry to add to a list, or remove from it.
type ListEntryInput struct {
	Kind   access.Kind
	Value  string
	Reason string
}

// MaxListEntriesPerCall bounds the entries one call adds or removes: a list
// of millions is loaded in calls of this many.
const MaxListEntriesPerCall = 10_000

// ListRef names a list: the global one (BatchID empty) or a batch's.
type ListRef struct {
	BatchID string
	List    access.List
}

// AddListEntries adds entries to a list (updating the reason of those
// there already) and returns how many it was given. This instance applies
// them at once; the others within a sync interval.
func (s *Service) AddListEntries(ctx context.Context, ref ListRef, in []ListEntryInput) (int, error) {
	scope, err := s.listScope(ctx, ref)
	if err != nil {
		return 0, err
	}
	entries, err := listEntries(scope, ref.List, in, true)
	if err != nil {
		return 0, err
	}
	if _, err := s.store.PutListEntries(ctx, entries, s.clock()); err != nil {
		return 0, unavailable("put list entries", err)
	}
	s.syncAfterWrite(ctx)
	return len(entries), nil
}

// RemoveListEntries removes entries from a list and returns how many were
// on it.
func (s *Service) RemoveListEntries(ctx context.Context, ref ListRef, in []ListEntryInput) (int, error) {
	scope, err := s.listScope(ctx, ref)
	if err != nil {
		return 0, err
	}
	entries, err := listEntries(scope, ref.List, in, false)
	if err != nil {
		return 0, err
	}
	n, _, err := s.store.RemoveListEntries(ctx, entries, s.clock())
	if err != nil {
		return 0, unavailable("remove list entries", err)
	}
	s.syncAfterWrite(ctx)
	return n, nil
}

// ListEntryQuery selects the entries of a list.
type ListEntryQuery struct {
	ListRef
	Kind   access.Kind // empty: any
	Cursor string
	Limit  int
}

// ListEntries lists a list's entries by kind and value, with the cursor of
// the next page.
func (s *Service) ListEntries(ctx context.Context, q ListEntryQuery) ([]access.Entry, string, error) {
	scope, err := s.listScope(ctx, q.ListRef)
	if err != nil {
		return nil, "", err
	}
	var v coupon.Validation
	limit := clampLimit(&v, q.Limit)
	if q.Kind != "" && !validKind(q.Kind) {
		v.Add("kind", "must be user, phone, device or ip")
	}
	afterKind, afterValue, ok := decodeEntryCursor(q.Cursor)
	if !ok {
		v.Add("cursor", "is not a cursor this API returned")
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	es, err := s.store.ListEntries(ctx, store.ListEntryFilter{Scope: scope, List: q.List, Kind: q.Kind,
		AfterKind: afterKind, AfterValue: afterValue, Limit: limit + 1})
	if err != nil {
		return nil, "", unavailable("list entries", err)
	}
	next := ""
	if len(es) > limit {
		es = es[:limit]
		next = encodeEntryCursor(es[limit-1].Kind, es[limit-1].Value)
	}
	return es, next, nil
}

// SyncLists brings this instance's replica of the lists up to the store:
// every change since the last sync, in pages. The lists worker calls it
// every interval; a start-up calls it before serving.
func (s *Service) SyncLists(ctx context.Context) error {
	a := s.acc
	a.listSync.Lock()
	defer a.listSync.Unlock()
	for {
		cs, err := s.store.ListChanges(ctx, a.lists.Version(), 10_000)
		if err != nil {
			return unavailable("list changes", err)
		}
		a.lists.Apply(cs)
		if len(cs) < 10_000 {
			return nil
		}
	}
}

// ListEntriesHeld is the number of entries this instance's replica holds.
func (s *Service) ListEntriesHeld() int { return s.acc.lists.Len() }

// syncAfterWrite applies a write of this instance's at once, so that the
// caller's next claim sees it; a failure leaves it to the next sync.
func (s *Service) syncAfterWrite(ctx context.Context) {
	if err := s.SyncLists(context.WithoutCancel(ctx)); err != nil {
		s.log.WarnContext(ctx, "list sync after a change failed; the next sync applies it", "err", err)
	}
}

// listScope checks a list reference and returns its scope. A batch's lists
// are managed by whoever manages the batch (a merchant its own batches'
// lists, others get not_found); the global lists by everyone but merchants.
func (s *Service) listScope(ctx context.Context, ref ListRef) (string, error) {
	if !access.ValidList(ref.List) {
		return "", fmt.Errorf("list %q: %w", ref.List, coupon.ErrNotFound)
	}
	if ref.BatchID == "" {
		if _, scoped := auth.MerchantScope(ctx); scoped {
			return "", fmt.Errorf("a merchant manages its batches' lists only: %w", access.ErrForbidden)
		}
		return access.GlobalScope, nil
	}
	if _, err := s.GetBatch(ctx, ref.BatchID); err != nil {
		return "", err
	}
	return ref.BatchID, nil
}

// listEntries validates and normalizes entries.
func listEntries(scope string, list access.List, in []ListEntryInput, reasons bool) ([]access.Entry, error) {
	var v coupon.Validation
	switch {
	case len(in) == 0:
		v.Add("entries", "must hold at least one entry")
	case len(in) > MaxListEntriesPerCall:
		v.Addf("entries", "must hold at most %d entries", MaxListEntriesPerCall)
	}
	out := make([]access.Entry, 0, len(in))
	bad := 0
	for i, e := range in {
		if bad == 20 {
			break // enough to show what is wrong
		}
		f := fmt.Sprintf("entries[%d]", i)
		if !validKind(e.Kind) {
			v.Add(f+".kind", "must be user, phone, device or ip")
			bad++
			continue
		}
		value, err := access.Normalize(e.Kind, e.Value)
		if err != nil {
			v.Add(f+".value", err.Error())
			bad++
			continue
		}
		if reasons && len(e.Reason) > 500 {
			v.Add(f+".reason", "must be at most 500 bytes")
			bad++
		}
		out = append(out, access.Entry{Scope: scope, List: list, Kind: e.Kind, Value: value, Reason: e.Reason})
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func validKind(k access.Kind) bool {
	switch k {
	case access.KindUser, access.KindPhone, access.KindDevice, access.KindIP:
		return true
	}
	return false
}

func encodeEntryCursor(kind access.Kind, value string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(kind) + "\x00" + value))
}

func decodeEntryCursor(c string) (access.Kind, string, bool) {
	if c == "" {
		return "", "", true
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", "", false
	}
	kind, value, ok := strings.Cut(string(raw), "\x00")
	if !ok || !validKind(access.Kind(kind)) {
		return "", "", false
	}
	return access.Kind(kind), value, true
}
