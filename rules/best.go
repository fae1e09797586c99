package rules

import (
	"cmp"
	"slices"
	"time"
)

// Best finds the combination of coupons that takes the most off the order
// while respecting every stacking rule and per-order limit; nil when no
// coupon applies. Of equal discounts it prefers fewer coupons, then the
// coupons that expire sooner (then the smaller claim ids), so the answer is
// one and the same for the same input.
//
// It is a depth-first search over the coupons that apply alone (the
// MaxCandidates of them that take off the most), pruned two ways. A coupon
// never takes off more in a combination than alone, since the coupons before
// it only lower what it comes off, so a branch whose discount plus the
// remaining candidates' discounts alone cannot beat the best found is cut.
// And a combination that Apply refuses stays refused with more coupons
// (lower values only fail more minimum spends), so its supersets are not
// tried.
func Best(o Order, cs []Coupon) *Result {
	type candidate struct {
		c     *Coupon
		alone int64
	}
	var cands []candidate
	for i, e := range Evaluate(o, cs) {
		if e.Usable {
			cands = append(cands, candidate{&cs[i], e.Discount})
		}
	}
	if len(cands) == 0 {
		return nil
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.alone, a.alone), compareKeys(keyOf(a.c), keyOf(b.c)))
	})
	if len(cands) > MaxCandidates {
		cands = cands[:MaxCandidates]
	}
	n := len(cands)
	compiledCands := make([]*compiled, n)
	for i := range cands {
		compiledCands[i] = compile(cands[i].c)
	}
	compat := make([][]bool, n)
	for i := range compat {
		compat[i] = make([]bool, n)
		for j := range n {
			compat[i][j] = i != j && compatible(compiledCands[i], compiledCands[j]) == nil
		}
	}
	var worth int64 // the most any combination can take off
	st := newState(&o.Cart)
	for _, v := range append(st.items, st.shipping...) {
		worth += v
	}

	var (
		best     *Result
		bestKeys []key
		chosen   []int
		picked   []Coupon
	)
	var search func(from int, cur *Result)
	search = func(from int, cur *Result) {
		if cur != nil {
			keys := make([]key, len(chosen))
			for i, j := range chosen {
				keys[i] = keyOf(cands[j].c)
			}
			slices.SortFunc(keys, compareKeys)
			if best == nil || better(cur, keys, best, bestKeys) {
				best, bestKeys = cur, keys
			}
		}
		if len(chosen) == o.maxCoupons() {
			return
		}
		var have int64
		if cur != nil {
			have = cur.Discount
		}
		for j := from; j < n; j++ {
			if best != nil {
				bound := have
				for k := j; k < n; k++ {
					if fits(compat, chosen, k) {
						bound += cands[k].alone
					}
				}
				if min(bound, worth) < best.Discount {
					return
				}
			}
			if !fits(compat, chosen, j) {
				continue
			}
			picked = append(picked, *cands[j].c)
			r, err := Apply(o, picked)
			if err == nil {
				chosen = append(chosen, j)
				search(j+1, r)
				chosen = chosen[:len(chosen)-1]
			}
			picked = picked[:len(picked)-1]
		}
	}
	search(0, nil)
	return best
}

// fits reports whether candidate j is compatible with every chosen one.
func fits(compat [][]bool, chosen []int, j int) bool {
	for _, i := range chosen {
		if !compat[i][j] {
			return false
		}
	}
	return true
}

// key orders coupons for the tie-break: sooner expiry first, then claim id.
type key struct {
	validTo time.Time
	claimID string
}

func keyOf(c *Coupon) key { return key{c.ValidTo, c.ClaimID} }

func compareKeys(a, b key) int {
	return cmp.Or(a.validTo.Compare(b.validTo), cmp.Compare(a.claimID, b.claimID))
}

// better reports whether combination a (with its sorted keys) beats b: a
// larger discount, then fewer coupons, then sooner-expiring coupons.
func better(a *Result, ak []key, b *Result, bk []key) bool {
	if a.Discount != b.Discount {
		return a.Discount > b.Discount
	}
	if len(ak) != len(bk) {
		return len(ak) < len(bk)
	}
	return slices.CompareFunc(ak, bk, compareKeys) < 0
}

// Better reports whether combination a beats combination b by Best's
// order; coupons names the claims of both. It lets tests compare Best with
// an exhaustive search.
func Better(a, b *Result, coupons []Coupon) bool {
	byID := make(map[string]*Coupon, len(coupons))
	for i := range coupons {
		byID[coupons[i].ClaimID] = &coupons[i]
	}
	keys := func(r *Result) []key {
		ks := make([]key, len(r.Coupons))
		for i, c := range r.Coupons {
			ks[i] = keyOf(byID[c.ClaimID])
		}
		slices.SortFunc(ks, compareKeys)
		return ks
	}
	return better(a, keys(a), b, keys(b))
}
