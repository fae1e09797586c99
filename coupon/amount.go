package coupon

import (
	crand "crypto/rand"
	"math/rand/v2"
)

// AmountType says how the amounts of a batch's codes are chosen.
type AmountType string

const (
	AmountFixed  AmountType = "fixed"  // every code is worth Value
	AmountRandom AmountType = "random" // uniform in [Min, Max]
	AmountSplit  AmountType = "split"  // Budget split at random over the total quantity, each ≥ Min
)

// Bounds of amounts, in minor units. They keep every sum far from overflow.
const (
	MaxAmount = 10_000_000_000     // one code
	MaxBudget = 10_000_000_000_000 // a split budget
)

// AmountSpec is the amount attribute of a batch. For a percent-off batch the
// amount is the cap of the discount; for free shipping, the most of the
// shipping fee it covers.
type AmountSpec struct {
	Type   AmountType `json:"type" enum:"fixed,random,split" doc:"fixed: every code is worth value; random: uniform in [min, max]; split: budget split at random over total_quantity codes, each at least min, summing to budget exactly"`
	Value  int64      `json:"value,omitempty" minimum:"0" doc:"fixed amount, minor units"`
	Min    int64      `json:"min,omitempty" minimum:"0" doc:"smallest amount (random, split), minor units"`
	Max    int64      `json:"max,omitempty" minimum:"0" doc:"largest amount (random), minor units"`
	Budget int64      `json:"budget,omitempty" minimum:"0" doc:"total to split (split), minor units"`
}

func (a AmountSpec) validate(v *Validation, total int64) {
	inRange := func(field string, x int64) {
		if x < 1 || x > MaxAmount {
			v.Addf(field, "must be between 1 and %d", int64(MaxAmount))
		}
	}
	switch a.Type {
	case AmountFixed:
		inRange("amount.value", a.Value)
	case AmountRandom:
		inRange("amount.min", a.Min)
		inRange("amount.max", a.Max)
		if a.Max < a.Min {
			v.Add("amount.max", "must not be less than amount.min")
		}
	case AmountSplit:
		inRange("amount.min", a.Min)
		if a.Budget < 1 || a.Budget > MaxBudget {
			v.Addf("amount.budget", "must be between 1 and %d", int64(MaxBudget))
		} else if total > 0 && a.Min > 0 && a.Budget/total < a.Min {
			v.Addf("amount.budget", "must be at least amount.min × total_quantity (%d)", a.Min*total)
		} else if total > 0 && a.Budget/total > MaxAmount {
			v.Add("amount.budget", "gives codes worth more than the largest amount")
		}
	case "":
		v.Add("amount.type", "is required")
	default:
		v.Add("amount.type", "must be one of fixed, random, split")
	}
}

// Amounts deals the amounts of a batch's codes in generation order. It can
// resume where an earlier generation stopped, so a split budget stays exact
// across chunks: every split amount is ≥ Min and the total over the whole
// batch is Budget exactly.
type Amounts struct {
	spec            AmountSpec
	remainingCount  int64
	remainingBudget int64
	rng             *rand.Rand
}

// NewAmounts resumes the amounts of a batch of total codes of which generated
// codes worth generatedAmount in all have been dealt already.
func NewAmounts(spec AmountSpec, total, generated, generatedAmount int64) *Amounts {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &Amounts{
		spec:            spec,
		remainingCount:  total - generated,
		remainingBudget: spec.Budget - generatedAmount,
		rng:             rand.New(rand.NewChaCha8(seed)),
	}
}

// Next returns the amount of the next code. It must be called at most
// total − generated times.
func (a *Amounts) Next() int64 {
	switch a.spec.Type {
	case AmountRandom:
		return a.spec.Min + a.rng.Int64N(a.spec.Max-a.spec.Min+1)
	case AmountSplit:
		return a.nextSplit()
	default:
		return a.spec.Value
	}
}

// nextSplit is the "double average" method: each code gets Min plus a
// uniform share of at most twice the average of what is left above the
// minimums; the last code takes the remainder. Twice the average of n ≥ 2
// shares never exceeds the whole, so no later code can fall below Min.
func (a *Amounts) nextSplit() int64 {
	n := a.remainingCount
	if n <= 0 {
		return 0
	}
	var amount int64
	if n == 1 {
		amount = a.remainingBudget
	} else {
		extra := a.remainingBudget - n*a.spec.Min
		amount = a.spec.Min + a.rng.Int64N(2*extra/n+1)
	}
	a.remainingCount--
	a.remainingBudget -= amount
	return amount
}
