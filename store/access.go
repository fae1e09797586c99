package store

import (
	"context"
	"errors"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/risk"
)

// ErrKeyRevoked: a revoked API key cannot be rotated.
var ErrKeyRevoked = errors.New("store: the key is revoked")

// AccessStore is the part of the store that access control uses: API keys,
// black and white lists, risk rule sets, the record of refusals, and the
// devices of claims that count across user ids. It is embedded in Store.
type AccessStore interface {
	// CreateKey stores a new API key; an id that exists is refused with
	// coupon.ErrConflict.
	CreateKey(ctx context.Context, k *auth.Key) error
	// GetKey returns a key, revoked or not, or ErrNotFound.
	GetKey(ctx context.Context, id string) (*auth.Key, error)
	// ListKeys returns keys in id order, after f.Cursor.
	ListKeys(ctx context.Context, f KeyFilter) ([]*auth.Key, error)
	// RevokeKey revokes a key at `at` and returns it; revoking a revoked
	// key keeps its first revocation time. ErrNotFound if there is none.
	RevokeKey(ctx context.Context, id string, at time.Time) (*auth.Key, error)
	// RotateKey gives a key a new salt and secret hash, keeping the old ones
	// as the previous secret until p.PreviousExpiresAt (a zero time drops
	// the previous secret at once), atomically. ErrNotFound if there is no
	// such key; ErrKeyRevoked if it is revoked.
	RotateKey(ctx context.Context, p RotateKey) (*auth.Key, error)

	// PutListEntries adds entries to their lists, or updates the reason of
	// those there already, in one transaction that gives each a new
	// version, in order. It returns the highest version given.
	PutListEntries(ctx context.Context, entries []access.Entry, at time.Time) (version int64, err error)
	// RemoveListEntries removes entries (Scope, List, Kind, Value) from
	// their lists in one transaction, each removal a new version; entries
	// not there are ignored. It returns how many were removed and the
	// highest version given (0 when none).
	RemoveListEntries(ctx context.Context, entries []access.Entry, at time.Time) (removed int, version int64, err error)
	// ListEntries returns the entries of one list of one scope, ordered by
	// (kind, value), after the cursor.
	ListEntries(ctx context.Context, f ListEntryFilter) ([]access.Entry, error)
	// ListChanges returns up to limit (≤ 0: 1000; at most 10,000) changes
	// of every list with a version above after, in version order, removed
	// entries included: what a replica applies. Versions are given in
	// commit order (writers of lists take turns), so a reader that saw
	// version v never later finds a change below v it did not see.
	ListChanges(ctx context.Context, after int64, limit int) ([]access.Change, error)

	// PutRuleSet creates or replaces a risk rule set; a replaced set keeps
	// its CreatedAt.
	PutRuleSet(ctx context.Context, rs *risk.RuleSet) error
	// GetRuleSet returns a rule set, or ErrNotFound.
	GetRuleSet(ctx context.Context, name string) (*risk.RuleSet, error)
	// ListRuleSets returns every rule set by name.
	ListRuleSets(ctx context.Context) ([]*risk.RuleSet, error)
	// DeleteRuleSet deletes a rule set; ErrNotFound if there is none.
	DeleteRuleSet(ctx context.Context, name string) error

	// InsertRefusals records refusals (their ID is assigned).
	InsertRefusals(ctx context.Context, rs []access.Refusal) error
	// ListRefusals returns refusals newest first, after f.Cursor.
	ListRefusals(ctx context.Context, f RefusalFilter) ([]access.Refusal, error)

	// AddClaimDevices records the devices of claims of batches whose
	// per-user limit counts devices; a claim recorded already is ignored.
	AddClaimDevices(ctx context.Context, ds []ClaimDevice) error
	// IdentityCounts counts a batch's claims per identity: "phone:<phone>"
	// from the claims' phones, "device:<id>" from the recorded devices of
	// its claims. The engine's identity counts are loaded from it.
	IdentityCounts(ctx context.Context, batchID string) (map[string]int, error)
}

// KeyFilter selects keys for ListKeys.
type KeyFilter struct {
	Cursor string // list keys with an id above this one
	Limit  int    // ≤ 0: 100; at most 1000
}

// RotateKey is one rotation of an API key's secret.
type RotateKey struct {
	ID                string
	Salt              string
	SecretHash        string
	At                time.Time
	PreviousExpiresAt time.Time
}

// ListEntryFilter selects entries for ListEntries.
type ListEntryFilter struct {
	Scope      string
	List       access.List
	Kind       access.Kind // empty: any
	AfterKind  access.Kind // the keyset cursor: entries after (AfterKind, AfterValue)
	AfterValue string
	Limit      int // ≤ 0: 100; at most 1000
}

// RefusalFilter selects refusals for ListRefusals; empty fields select any.
type RefusalFilter struct {
	BatchID    string
	MerchantID string
	UserID     string
	Code       string
	Cursor     int64 // refusals with an id below this one; 0: from the newest
	Limit      int   // ≤ 0: 100; at most 1000
}

// ClaimDevice is the device of one claim.
type ClaimDevice struct {
	BatchID  string
	ClaimID  string
	DeviceID string
}
