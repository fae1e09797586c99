package coupon

import (
	"math/rand/v2"
	"testing"
)

// dealAll draws every amount of a batch in chunks, resuming each chunk from
// the running totals, as generation does across transactions and restarts.
func dealAll(spec AmountSpec, total int64, chunk int64) (sum int64, minSeen int64, count int64) {
	minSeen = -1
	var generated, generatedAmount int64
	for generated < total {
		a := NewAmounts(spec, total, generated, generatedAmount)
		for i := int64(0); i < chunk && generated < total; i++ {
			x := a.Next()
			sum += x
			generated++
			generatedAmount += x
			count++
			if minSeen < 0 || x < minSeen {
				minSeen = x
			}
		}
	}
	return sum, minSeen, count
}

func TestSplitBudgetSumsExactlyAcrossChunks(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		total := 1 + r.Int64N(3000)
		minAmt := 1 + r.Int64N(500)
		budget := total*minAmt + r.Int64N(total*1000+1)
		chunk := 1 + r.Int64N(total+5)
		spec := AmountSpec{Type: AmountSplit, Min: minAmt, Budget: budget}
		if err := spec.validateOnly(total); err != nil {
			t.Fatalf("generated an invalid spec %+v total %d: %v", spec, total, err)
		}
		sum, minSeen, count := dealAll(spec, total, chunk)
		if sum != budget || count != total || minSeen < minAmt {
			t.Fatalf("spec %+v total %d chunk %d: sum %d (want %d), count %d, smallest %d (min %d)",
				spec, total, chunk, sum, budget, count, minSeen, minAmt)
		}
	}
}

func FuzzSplitBudget(f *testing.F) {
	f.Add(int64(500), int64(1), int64(100_000), int64(37))
	f.Add(int64(1), int64(5), int64(5), int64(1))
	f.Add(int64(10), int64(100), int64(1000), int64(3))
	f.Fuzz(func(t *testing.T, total, minAmt, budget, chunk int64) {
		if total < 1 || total > 5000 || chunk < 1 {
			return
		}
		spec := AmountSpec{Type: AmountSplit, Min: minAmt, Budget: budget}
		if spec.validateOnly(total) != nil {
			return
		}
		sum, minSeen, count := dealAll(spec, total, chunk)
		if sum != budget || count != total || minSeen < minAmt {
			t.Fatalf("sum %d want %d, count %d want %d, smallest %d min %d", sum, budget, count, total, minSeen, minAmt)
		}
	})
}

func TestRandomAmountsStayInBounds(t *testing.T) {
	t.Parallel()
	a := NewAmounts(AmountSpec{Type: AmountRandom, Min: 100, Max: 103}, 10_000, 0, 0)
	seen := map[int64]int{}
	for i := 0; i < 10_000; i++ {
		x := a.Next()
		if x < 100 || x > 103 {
			t.Fatalf("amount %d outside [100, 103]", x)
		}
		seen[x]++
	}
	if len(seen) != 4 {
		t.Fatalf("amounts seen %v: want all of 100..103", seen)
	}
}

func TestAmountValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec  AmountSpec
		total int64
		field string
	}{
		{AmountSpec{Type: AmountFixed}, 10, "amount.value"},
		{AmountSpec{Type: AmountFixed, Value: MaxAmount + 1}, 10, "amount.value"},
		{AmountSpec{Type: AmountRandom, Min: 5, Max: 4}, 10, "amount.max"},
		{AmountSpec{Type: AmountSplit, Min: 10, Budget: 99}, 10, "amount.budget"},
		{AmountSpec{Type: AmountSplit, Min: 0, Budget: 99}, 10, "amount.min"},
		{AmountSpec{Type: "lottery"}, 10, "amount.type"},
		{AmountSpec{}, 10, "amount.type"},
	} {
		err := tc.spec.validateOnly(tc.total)
		if !hasField(err, tc.field) {
			t.Errorf("%+v: err %v does not name %s", tc.spec, err, tc.field)
		}
	}
}

func (a AmountSpec) validateOnly(total int64) error {
	var v Validation
	a.validate(&v, total)
	return v.Err()
}

func hasField(err error, field string) bool {
	e, ok := err.(*Error)
	if !ok || e.Code != CodeInvalid {
		return false
	}
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}
