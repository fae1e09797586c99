// Package risk turns what is known of a claim — sliding-window counters the
// engine keeps per device and per IP across batches, the account's age, the
// presence of a device id — into a decision: allow, challenge (the claim
// must carry a solved SMS challenge) or deny. Rules are grouped in named
// rule sets that batches refer to; a rule set may also ask an external risk
// service (external.go). Evaluation is pure.
package risk

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Action is a rule's, or a decision's, verdict. Deny outweighs challenge,
// which outweighs allow.
type Action string

const (
	Allow     Action = "allow"
	Challenge Action = "challenge"
	Deny      Action = "deny"
)

func (a Action) weight() int {
	switch a {
	case Deny:
		return 2
	case Challenge:
		return 1
	}
	return 0
}

// Worse returns the heavier of a and b.
func Worse(a, b Action) Action {
	if b.weight() > a.weight() {
		return b
	}
	if a == "" {
		return Allow
	}
	return a
}

// Signal is what a rule looks at.
type Signal string

const (
	// DeviceUsers counts the distinct user ids seen claiming from the
	// claim's device within the window, this claim's user included.
	DeviceUsers Signal = "device_users"
	// IPUsers counts the distinct user ids seen claiming from the claim's IP.
	IPUsers Signal = "ip_users"
	// DeviceClaims counts the claim attempts from the device, across batches.
	DeviceClaims Signal = "device_claims"
	// IPClaims counts the claim attempts from the IP, across batches.
	IPClaims Signal = "ip_claims"
	// AccountAge is the age of the user's account, from the claim's
	// account_created_at; a claim that does not give it is as young as can be.
	AccountAge Signal = "account_age"
	// NoDevice fires when the claim names no device.
	NoDevice Signal = "no_device"
)

// Counter reports whether s is counted by the engine's sliding windows.
func (s Signal) Counter() bool {
	switch s {
	case DeviceUsers, IPUsers, DeviceClaims, IPClaims:
		return true
	}
	return false
}

// Limits of rule sets.
const (
	MaxRules  = 32
	MaxWindow = 7 * 24 * time.Hour
)

// Rule fires when its signal passes its threshold, with its action.
type Rule struct {
	Signal Signal `json:"signal" enum:"device_users,ip_users,device_claims,ip_claims,account_age,no_device" doc:"what the rule looks at"`
	// Window and Above apply to the counters.
	Window int `json:"window_seconds,omitempty" minimum:"0" maximum:"604800" doc:"counters: the sliding window in seconds"`
	Above  int `json:"above,omitempty" minimum:"0" maximum:"1000000" doc:"counters: fire when the count in the window is above this"`
	// Below applies to account_age.
	Below  int    `json:"below_seconds,omitempty" minimum:"0" maximum:"315360000" doc:"account_age: fire when the account is younger than this many seconds"`
	Action Action `json:"action" enum:"challenge,deny" doc:"challenge: the claim needs a solved SMS challenge; deny: refused risk_denied"`
}

// RuleSet is a named group of rules, stored and managed through the API.
type RuleSet struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules" maxItems:"32"`
	// External asks the external risk service too, when one is configured.
	External  bool      `json:"external,omitempty" doc:"also ask the external risk service (COUPOND_RISK_URL) and take the heavier verdict"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate names the bad fields of a rule set.
func (rs *RuleSet) Validate() error {
	var v coupon.Validation
	if !coupon.ValidRuleSetName(rs.Name) {
		v.Add("name", "must be 1 to 64 characters of a-z, 0-9, '-' and '_'")
	}
	if len(rs.Rules) > MaxRules {
		v.Addf("rules", "must hold at most %d rules", MaxRules)
	}
	for i, r := range rs.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.Signal.Counter():
			if r.Window < 1 || time.Duration(r.Window)*time.Second > MaxWindow {
				v.Addf(f+".window_seconds", "must be between 1 and %d", int(MaxWindow/time.Second))
			}
			if r.Above < 0 {
				v.Add(f+".above", "must not be negative")
			}
			if r.Below != 0 {
				v.Add(f+".below_seconds", "applies to account_age only")
			}
		case r.Signal == AccountAge:
			if r.Below < 1 {
				v.Add(f+".below_seconds", "must be at least 1")
			}
			if r.Window != 0 || r.Above != 0 {
				v.Add(f, "window_seconds and above apply to the counters only")
			}
		case r.Signal == NoDevice:
			if r.Window != 0 || r.Above != 0 || r.Below != 0 {
				v.Add(f, "no_device takes no threshold")
			}
		default:
			v.Add(f+".signal", "must be one of device_users, ip_users, device_claims, ip_claims, account_age, no_device")
		}
		if r.Action != Challenge && r.Action != Deny {
			v.Add(f+".action", "must be challenge or deny")
		}
	}
	return v.Err()
}

// Window is one sliding window a rule set needs counted.
type Window struct {
	Signal Signal
	Window time.Duration
}

// Windows lists the distinct counter windows of the rule set's rules whose
// identity the claim has (a device's counters need a device id, an IP's an
// IP), in a stable order.
func (rs *RuleSet) Windows(hasDevice, hasIP bool) []Window {
	var out []Window
	for _, r := range rs.Rules {
		if !r.Signal.Counter() || !has(r.Signal, hasDevice, hasIP) {
			continue
		}
		w := Window{Signal: r.Signal, Window: time.Duration(r.Window) * time.Second}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// Horizon is the longest window of the rule set: how long the engine must
// remember events for it.
func (rs *RuleSet) Horizon() time.Duration {
	var h time.Duration
	for _, r := range rs.Rules {
		h = max(h, time.Duration(r.Window)*time.Second)
	}
	return h
}

func has(s Signal, hasDevice, hasIP bool) bool {
	switch s {
	case DeviceUsers, DeviceClaims:
		return hasDevice
	case IPUsers, IPClaims:
		return hasIP
	}
	return true
}

// Facts are what is known of a claim when its rules are evaluated.
type Facts struct {
	// Counts holds the count of each window of Windows.
	Counts    map[Window]int64
	HasDevice bool
	HasIP     bool
	// AccountAge is the account's age; negative when the claim did not say.
	AccountAge time.Duration
}

// Decision is the outcome of evaluating a claim.
type Decision struct {
	Action  Action
	Reasons []string // the rules that fired, in words
}

// Reason joins the reasons for a refusal's detail.
func (d Decision) Reason() string { return strings.Join(d.Reasons, "; ") }

// Evaluate applies the rule set to the facts: the heaviest action of the
// rules that fire, allow when none does. A counter rule whose identity the
// claim lacks does not fire (pair it with no_device to treat a missing
// device as suspicious).
func (rs *RuleSet) Evaluate(f Facts) Decision {
	d := Decision{Action: Allow}
	for _, r := range rs.Rules {
		// The reason is written only for a rule that fires: most claims
		// fire none, and this runs on every claim.
		var why func() string
		switch {
		case r.Signal.Counter():
			if !has(r.Signal, f.HasDevice, f.HasIP) {
				continue
			}
			n := f.Counts[Window{Signal: r.Signal, Window: time.Duration(r.Window) * time.Second}]
			if n > int64(r.Above) {
				why = func() string { return fmt.Sprintf("%s over %ds is %d, above %d", r.Signal, r.Window, n, r.Above) }
			}
		case r.Signal == AccountAge:
			if f.AccountAge < time.Duration(r.Below)*time.Second {
				why = func() string {
					if f.AccountAge < 0 {
						return fmt.Sprintf("account age unknown, below %ds", r.Below)
					}
					return fmt.Sprintf("account age %ds, below %ds", int64(f.AccountAge/time.Second), r.Below)
				}
			}
		case r.Signal == NoDevice:
			if !f.HasDevice {
				why = func() string { return "the claim names no device" }
			}
		}
		if why != nil {
			d.Action = Worse(d.Action, r.Action)
			d.Reasons = append(d.Reasons, why()+" ("+string(r.Action)+")")
		}
	}
	return d
}
