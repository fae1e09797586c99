package rules_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/rules"
)

var now = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func item(id, product, merchant string, price, qty int64, cats ...string) coupon.CartItem {
	return coupon.CartItem{ID: id, ProductID: product, MerchantID: merchant, UnitPrice: price, Quantity: qty, CategoryIDs: cats}
}

func order(items []coupon.CartItem, shipping ...coupon.ShippingFee) rules.Order {
	return rules.Order{Cart: coupon.Cart{Items: items, Shipping: shipping}, Platform: "ios", Node: rules.DefaultNode, At: now}
}

// cp is a platform cash coupon worth amount, valid now, with rules.
func cp(id string, amount int64, mods ...func(*rules.Coupon)) rules.Coupon {
	c := rules.Coupon{
		ClaimID: id, BatchID: "b-" + id, Code: "CODE" + id, Type: coupon.TypeCash, Amount: amount,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.Add(time.Hour), Status: coupon.ClaimAvailable,
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

func merchant(m string) func(*rules.Coupon) { return func(c *rules.Coupon) { c.MerchantID = m } }
func batch(b string) func(*rules.Coupon)    { return func(c *rules.Coupon) { c.BatchID = b } }
func perOrder(n int) func(*rules.Coupon)    { return func(c *rules.Coupon) { c.MaxPerOrder = n } }
func threshold(spend int64) func(*rules.Coupon) {
	return func(c *rules.Coupon) { c.Type, c.MinSpend = coupon.TypeThreshold, spend }
}
func percent(p int) func(*rules.Coupon) {
	return func(c *rules.Coupon) { c.Type, c.PercentOff = coupon.TypePercent, p }
}
func shipping(c *rules.Coupon) { c.Type = coupon.TypeShipping }
func rule(useType, refType, refID string, value ...int64) func(*rules.Coupon) {
	return func(c *rules.Coupon) {
		r := coupon.Rule{UseType: useType, RefType: refType, RefID: refID}
		if len(value) > 0 {
			r.Value = value[0]
		}
		c.Rules = append(c.Rules, r)
	}
}

func lineAmounts(a rules.Applied) map[string]int64 {
	out := map[string]int64{}
	for _, l := range a.Lines {
		k := l.Item
		if l.Kind == coupon.LineShipping {
			k = "shipping:" + l.MerchantID
		}
		out[k] += l.Amount
	}
	return out
}

// TestDiscountTypes: every type's discount, its cap by the eligible value,
// the minimum spend, and the exact split over the lines.
func TestDiscountTypes(t *testing.T) {
	t.Parallel()
	two := []coupon.CartItem{item("a", "p1", "", 300, 2), item("b", "p2", "", 400, 1)} // 600 + 400
	for _, tc := range []struct {
		name     string
		order    rules.Order
		coupon   rules.Coupon
		discount int64
		lines    map[string]int64
		reason   string
	}{
		{"cash splits by value", order(two), cp("1", 500), 500, map[string]int64{"a": 300, "b": 200}, ""},
		{"cash never beyond the items", order(two), cp("1", 5000), 1000, map[string]int64{"a": 600, "b": 400}, ""},
		{"cash largest remainder", order([]coupon.CartItem{item("a", "p1", "", 1, 1), item("b", "p2", "", 1, 1), item("c", "p3", "", 1, 1)}),
			cp("1", 2), 2, map[string]int64{"a": 1, "b": 1}, ""},
		{"threshold reached", order(two), cp("1", 200, threshold(1000)), 200, map[string]int64{"a": 120, "b": 80}, ""},
		{"threshold missed", order(two), cp("1", 200, threshold(1001)), 0, nil, rules.ReasonMinSpend},
		{"percent under its cap", order(two), cp("1", 1000, percent(15)), 150, map[string]int64{"a": 90, "b": 60}, ""},
		{"percent capped", order(two), cp("1", 100, percent(15)), 100, map[string]int64{"a": 60, "b": 40}, ""},
		{"percent rounds down", order([]coupon.CartItem{item("a", "p1", "", 333, 1)}), cp("1", 1000, percent(15)), 49, map[string]int64{"a": 49}, ""},
		{"shipping covers the fee", order(two, coupon.ShippingFee{Amount: 600}), cp("1", 800, shipping), 600, map[string]int64{"shipping:": 600}, ""},
		{"shipping up to its amount", order(two, coupon.ShippingFee{Amount: 600}), cp("1", 500, shipping), 500, map[string]int64{"shipping:": 500}, ""},
		{"shipping without a fee", order(two), cp("1", 500, shipping), 0, nil, rules.ReasonNothing},
		{"free shipping over a minimum", order(two, coupon.ShippingFee{Amount: 600}), cp("1", 800, shipping, func(c *rules.Coupon) { c.MinSpend = 2000 }), 0, nil, rules.ReasonMinSpend},
		{"deduct order spans items and shipping", order(two, coupon.ShippingFee{Amount: 1000}), cp("1", 1500, rule("deduct", "deduction", "order")),
			1500, map[string]int64{"a": 450, "b": 300, "shipping:": 750}, ""},
		{"deduct shipping with a cash coupon", order(two, coupon.ShippingFee{Amount: 300}), cp("1", 500, rule("deduct", "deduction", "shipping")),
			300, map[string]int64{"shipping:": 300}, ""},
		{"free items give nothing", order([]coupon.CartItem{item("a", "p1", "", 0, 3)}), cp("1", 500), 0, nil, rules.ReasonNothing},
		{"merchant shipping only for its own shipment",
			order([]coupon.CartItem{item("a", "p1", "m1", 100, 1), item("b", "p2", "m2", 100, 1)},
				coupon.ShippingFee{MerchantID: "m1", Amount: 50}, coupon.ShippingFee{MerchantID: "m2", Amount: 70}),
			cp("1", 500, shipping, merchant("m2")), 70, map[string]int64{"shipping:m2": 70}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := rules.Evaluate(tc.order, []rules.Coupon{tc.coupon})[0]
			if tc.reason != "" {
				require.False(t, ev.Usable)
				require.Equal(t, tc.reason, ev.Reason.Code, ev.Reason.Message)
				return
			}
			require.True(t, ev.Usable, "%+v", ev.Reason)
			require.Equal(t, tc.discount, ev.Discount)
			r, err := rules.Apply(tc.order, []rules.Coupon{tc.coupon})
			require.NoError(t, err)
			require.Equal(t, tc.discount, r.Discount)
			require.Equal(t, tc.lines, lineAmounts(r.Coupons[0]))
			checkResult(t, tc.order, r)
		})
	}
}

// TestApplicability: status, validity, platform, node and scope.
func TestApplicability(t *testing.T) {
	t.Parallel()
	items := []coupon.CartItem{
		item("a", "p1", "m1", 100, 1, "phones", "electronics"),
		item("b", "p2", "m2", 200, 1, "books"),
		item("c", "p3", "m1", 400, 1, "cables", "electronics"),
	}
	for _, tc := range []struct {
		name     string
		order    func(*rules.Order)
		coupon   rules.Coupon
		discount int64 // alone, when usable
		reason   string
	}{
		{"locked", nil, cp("1", 50, func(c *rules.Coupon) { c.Status = coupon.ClaimLocked }), 0, rules.ReasonStatus},
		{"used", nil, cp("1", 50, func(c *rules.Coupon) { c.Status = coupon.ClaimUsed }), 0, rules.ReasonStatus},
		{"not yet valid", nil, cp("1", 50, func(c *rules.Coupon) { c.ValidFrom = now.Add(time.Second) }), 0, rules.ReasonNotYetValid},
		{"expired at valid_to", nil, cp("1", 50, func(c *rules.Coupon) { c.ValidTo = now }), 0, rules.ReasonExpired},
		{"platform allowed", nil, cp("1", 50, func(c *rules.Coupon) { c.UsagePlatforms = []string{"android", "ios"} }), 50, ""},
		{"platform refused", nil, cp("1", 50, func(c *rules.Coupon) { c.UsagePlatforms = []string{"android"} }), 0, rules.ReasonPlatform},
		{"node allowed", func(o *rules.Order) { o.Node = "payment" }, cp("1", 50, rule("node", "node", "payment")), 50, ""},
		{"node refused", nil, cp("1", 50, rule("node", "node", "payment")), 0, rules.ReasonNode},
		{"include product", nil, cp("1", 1000, rule("include", "product", "p2")), 200, ""},
		{"include category matches an ancestor", nil, cp("1", 1000, rule("include", "category", "electronics")), 500, ""},
		{"include category and merchant must both hold", nil,
			cp("1", 1000, rule("include", "category", "electronics"), rule("include", "merchant", "m2")), 0, rules.ReasonScope},
		{"two includes of one type: either", nil, cp("1", 1000, rule("include", "product", "p1"), rule("include", "product", "p2")), 300, ""},
		{"exclude category", nil, cp("1", 1000, rule("exclude", "category", "phones")), 600, ""},
		{"exclude wins over include", nil, cp("1", 1000, rule("include", "merchant", "m1"), rule("exclude", "product", "p3")), 100, ""},
		{"merchant batch covers its own items", nil, cp("1", 1000, merchant("m2")), 200, ""},
		{"merchant batch without its items", nil, cp("1", 1000, merchant("m9")), 0, rules.ReasonScope},
		{"minimum spend counts eligible items only", nil, cp("1", 50, threshold(300), merchant("m2")), 0, rules.ReasonMinSpend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := order(items)
			if tc.order != nil {
				tc.order(&o)
			}
			ev := rules.Evaluate(o, []rules.Coupon{tc.coupon})[0]
			if tc.reason != "" {
				require.False(t, ev.Usable)
				require.Equal(t, tc.reason, ev.Reason.Code, ev.Reason.Message)
				return
			}
			require.True(t, ev.Usable, "%+v", ev.Reason)
			require.Equal(t, tc.discount, ev.Discount)
		})
	}
}

// TestCostBearers: the owner bears it by default; bear rules split each line
// exactly, "*" naming the line's own merchant.
func TestCostBearers(t *testing.T) {
	t.Parallel()
	o := order([]coupon.CartItem{item("a", "p1", "m1", 700, 1), item("b", "p2", "m2", 300, 1)})
	costs := func(c rules.Coupon) map[string]map[string]int64 {
		r, err := rules.Apply(o, []rules.Coupon{c})
		require.NoError(t, err)
		checkResult(t, o, r)
		out := map[string]map[string]int64{}
		for _, l := range r.Coupons[0].Lines {
			out[l.Item] = map[string]int64{}
			for _, c := range l.Costs {
				out[l.Item][c.Bearer+":"+c.MerchantID] = c.Amount
			}
		}
		return out
	}
	require.Equal(t, map[string]map[string]int64{"a": {"platform:": 70}, "b": {"platform:": 30}}, costs(cp("1", 100)))
	require.Equal(t, map[string]map[string]int64{"a": {"merchant:m1": 100}}, costs(cp("1", 100, merchant("m1"))))
	require.Equal(t, map[string]map[string]int64{
		"a": {"platform:": 21, "merchant:m1": 49},
		"b": {"platform:": 9, "merchant:m2": 21},
	}, costs(cp("1", 100, rule("bear", "platform", "", 3000), rule("bear", "merchant", "*", 7000))))
	// Shares short of 10,000 leave the rest to the owner.
	require.Equal(t, map[string]map[string]int64{
		"a": {"merchant:m1": 7, "platform:": 63},
		"b": {"merchant:m1": 3, "platform:": 27},
	}, costs(cp("1", 100, rule("bear", "merchant", "m1", 1000))))
	// An odd amount splits exactly.
	c := costs(cp("1", 3, rule("bear", "platform", "", 5000), rule("bear", "merchant", "*", 5000)))
	var sum int64
	for _, m := range c {
		for _, v := range m {
			sum += v
		}
	}
	require.EqualValues(t, 3, sum)
}

// TestStacking: the slots, stackable and exclusive rules, per-batch and
// per-order limits.
func TestStacking(t *testing.T) {
	t.Parallel()
	items := []coupon.CartItem{item("a", "p1", "m1", 5000, 1), item("b", "p2", "m2", 5000, 1)}
	o := order(items, coupon.ShippingFee{MerchantID: "m1", Amount: 500}, coupon.ShippingFee{Amount: 800})
	for _, tc := range []struct {
		name    string
		coupons []rules.Coupon
		reason  string // refusal of the combination, "" when allowed
	}{
		{"platform and merchant", []rules.Coupon{cp("1", 100), cp("2", 100, merchant("m1"))}, ""},
		{"two merchants", []rules.Coupon{cp("1", 100, merchant("m1")), cp("2", 100, merchant("m2"))}, ""},
		{"two platform coupons", []rules.Coupon{cp("1", 100), cp("2", 100)}, rules.ReasonStacking},
		{"two of one merchant", []rules.Coupon{cp("1", 100, merchant("m1")), cp("2", 100, merchant("m1"))}, rules.ReasonStacking},
		{"platform cash and platform shipping", []rules.Coupon{cp("1", 100), cp("2", 100, shipping)}, ""},
		{"two platform shipping coupons", []rules.Coupon{cp("1", 100, shipping), cp("2", 100, shipping)}, rules.ReasonStacking},
		{"stackable by type", []rules.Coupon{cp("1", 100, rule("stackable", "type", "percent")), cp("2", 100, percent(10))}, ""},
		{"stackable by type, other type", []rules.Coupon{cp("1", 100, rule("stackable", "type", "percent")), cp("2", 100)}, rules.ReasonStacking},
		{"stackable by batch, either side", []rules.Coupon{cp("1", 100), cp("2", 100, rule("stackable", "batch", "b-1"))}, ""},
		{"stackable by merchant", []rules.Coupon{cp("1", 100, merchant("m1"), rule("stackable", "merchant", "m1")), cp("2", 100, merchant("m1"))}, ""},
		{"stackable with any", []rules.Coupon{cp("1", 100, rule("stackable", "batch", "*")), cp("2", 100)}, ""},
		{"exclusive of any", []rules.Coupon{cp("1", 100, rule("exclusive", "batch", "*")), cp("2", 100, merchant("m1"))}, rules.ReasonStacking},
		{"exclusive by type across slots", []rules.Coupon{cp("1", 100, rule("exclusive", "type", "shipping")), cp("2", 100, shipping)}, rules.ReasonStacking},
		{"exclusive by batch, either side", []rules.Coupon{cp("1", 100, merchant("m1")), cp("2", 100, rule("exclusive", "batch", "b-1"))}, rules.ReasonStacking},
		{"exclusive by merchant", []rules.Coupon{cp("1", 100, rule("exclusive", "merchant", "m2")), cp("2", 100, merchant("m2"))}, rules.ReasonStacking},
		{"exclusive by merchant, other merchant", []rules.Coupon{cp("1", 100, rule("exclusive", "merchant", "m2")), cp("2", 100, merchant("m1"))}, ""},
		{"exclusive beats stackable", []rules.Coupon{cp("1", 100, rule("stackable", "batch", "*")), cp("2", 100, rule("exclusive", "type", "cash"))}, rules.ReasonStacking},
		{"one per batch by default", []rules.Coupon{cp("1", 100, batch("X")), cp("2", 100, batch("X"))}, rules.ReasonPerOrder},
		{"two of a batch allowing two", []rules.Coupon{cp("1", 100, batch("X"), perOrder(2)), cp("2", 100, batch("X"), perOrder(2))}, ""},
		{"three of a batch allowing two", []rules.Coupon{cp("1", 100, batch("X"), perOrder(2)), cp("2", 100, batch("X"), perOrder(2)), cp("3", 100, batch("X"), perOrder(2))}, rules.ReasonPerOrder},
		{"the same claim twice", []rules.Coupon{cp("1", 100), cp("1", 100)}, rules.ReasonDuplicate},
		{"too many coupons", []rules.Coupon{cp("1", 10, rule("stackable", "batch", "*")), cp("2", 10, rule("stackable", "batch", "*")),
			cp("3", 10, rule("stackable", "batch", "*")), cp("4", 10, rule("stackable", "batch", "*")), cp("5", 10, rule("stackable", "batch", "*")),
			cp("6", 10, rule("stackable", "batch", "*"))}, rules.ReasonTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := rules.Apply(o, tc.coupons)
			if tc.reason == "" {
				require.NoError(t, err)
				checkResult(t, o, r)
				return
			}
			var ref *rules.Refusal
			require.ErrorAs(t, err, &ref)
			require.Equal(t, tc.reason, ref.Reason.Code, ref.Reason.Message)
			if len(tc.coupons) == 2 && tc.reason != rules.ReasonDuplicate {
				// The pairwise check agrees, whichever comes first.
				if tc.reason == rules.ReasonStacking {
					require.NotNil(t, rules.Compatible(tc.coupons[0], tc.coupons[1]))
					require.NotNil(t, rules.Compatible(tc.coupons[1], tc.coupons[0]))
				}
			}
		})
	}
}

// TestSequentialApplication: merchants' coupons apply first, and a
// platform coupon sees what they left.
func TestSequentialApplication(t *testing.T) {
	t.Parallel()
	o := order([]coupon.CartItem{item("a", "p1", "m1", 1000, 1)})
	platform := cp("P", 1000, percent(10))
	shop := cp("S", 200, merchant("m1"))
	r, err := rules.Apply(o, []rules.Coupon{platform, shop}) // given in either order
	require.NoError(t, err)
	require.Equal(t, []string{"S", "P"}, r.ClaimIDs())
	require.EqualValues(t, 280, r.Discount, "200 off, then 10% of the 800 left")
	checkResult(t, o, r)

	// A platform threshold the shop coupon takes the items below.
	o = order([]coupon.CartItem{item("a", "p1", "m1", 105, 1)})
	thr := cp("P", 20, threshold(100))
	_, err = rules.Apply(o, []rules.Coupon{thr})
	require.NoError(t, err, "alone it applies")
	_, err = rules.Apply(o, []rules.Coupon{thr, cp("S", 10, merchant("m1"))})
	var ref *rules.Refusal
	require.ErrorAs(t, err, &ref)
	require.Equal(t, "P", ref.ClaimID)
	require.Equal(t, rules.ReasonMinSpend, ref.Reason.Code)

	// Two stacked coupons never take an item below zero.
	o = order([]coupon.CartItem{item("a", "p1", "", 300, 1)})
	r, err = rules.Apply(o, []rules.Coupon{cp("1", 200, rule("stackable", "batch", "*")), cp("2", 200)})
	require.NoError(t, err)
	require.EqualValues(t, 300, r.Discount)
	require.EqualValues(t, []int64{200, 100}, []int64{r.Coupons[0].Discount, r.Coupons[1].Discount})
	_, err = rules.Apply(o, []rules.Coupon{cp("1", 300, rule("stackable", "batch", "*")), cp("2", 200)})
	require.ErrorAs(t, err, &ref)
	require.Equal(t, rules.ReasonNothing, ref.Reason.Code, "nothing is left for the second")
}

func TestSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		total   int64
		weights []int64
		want    []int64
	}{
		{10, []int64{1, 1, 1}, []int64{4, 3, 3}},
		{100, []int64{0, 0}, []int64{0, 0}},
		{0, []int64{5, 5}, []int64{0, 0}},
		{7, []int64{7}, []int64{7}},
		{5, []int64{3, 3, 3}, []int64{2, 2, 1}},
		{1, []int64{0, 2, 1}, []int64{0, 1, 0}},
	} {
		require.Equal(t, tc.want, rules.Split(tc.total, tc.weights), "split %d over %v", tc.total, tc.weights)
	}
	// Large values do not overflow.
	big := []int64{coupon.MaxAmount * coupon.MaxItemQuantity, coupon.MaxAmount*coupon.MaxItemQuantity - 1, 3}
	got := rules.Split(big[0], big)
	var sum int64
	for i, s := range got {
		require.GreaterOrEqual(t, s, int64(0))
		require.LessOrEqual(t, s, big[i])
		sum += s
	}
	require.Equal(t, big[0], sum)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + rng.IntN(8)
		ws := make([]int64, n)
		var w int64
		for i := range ws {
			ws[i] = rng.Int64N(1000)
			w += ws[i]
		}
		total := rng.Int64N(w + 1)
		shares := rules.Split(total, ws)
		var s int64
		for i, x := range shares {
			require.LessOrEqual(t, x, ws[i])
			// Largest remainder: within one unit of the exact share.
			exact := float64(total) * float64(ws[i]) / float64(max(w, 1))
			require.Less(t, math.Abs(float64(x)-exact), 1.0)
			s += x
		}
		if w > 0 {
			require.Equal(t, total, s)
		}
	}
}

// TestBestMatchesBruteForce is the property test of the optimiser: on random
// carts and coupons, Best picks exactly the combination that an exhaustive
// search over every subset picks.
func TestBestMatchesBruteForce(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(20310506, 7))
	nonEmpty := 0
	for iter := range 1500 {
		o, cs := randomOrder(rng)
		want := bruteForce(o, cs)
		got := rules.Best(o, cs)
		if want == nil {
			require.Nil(t, got, "iteration %d: no combination applies, Best found %v", iter, got)
			continue
		}
		nonEmpty++
		require.NotNil(t, got, "iteration %d: Best found nothing, brute force %v (%d)", iter, want.ClaimIDs(), want.Discount)
		require.Equal(t, want.Discount, got.Discount, "iteration %d: discount; want %v got %v", iter, want.ClaimIDs(), got.ClaimIDs())
		require.ElementsMatch(t, want.ClaimIDs(), got.ClaimIDs(), "iteration %d", iter)
		again, err := rules.Apply(o, pick(cs, got.ClaimIDs()))
		require.NoError(t, err)
		require.Equal(t, got, again, "Best's answer is Apply's")
		checkResult(t, o, got)
	}
	require.Greater(t, nonEmpty, 1000, "the generator makes usable coupons")
}

func pick(cs []rules.Coupon, ids []string) []rules.Coupon {
	var out []rules.Coupon
	for _, id := range ids {
		for _, c := range cs {
			if c.ClaimID == id {
				out = append(out, c)
			}
		}
	}
	return out
}

func bruteForce(o rules.Order, cs []rules.Coupon) *rules.Result {
	var best *rules.Result
	for mask := 1; mask < 1<<len(cs); mask++ {
		var sub []rules.Coupon
		for i := range cs {
			if mask&(1<<i) != 0 {
				sub = append(sub, cs[i])
			}
		}
		r, err := rules.Apply(o, sub)
		if err != nil {
			continue
		}
		if best == nil || rules.Better(r, best, cs) {
			best = r
		}
	}
	return best
}

func randomOrder(rng *rand.Rand) (rules.Order, []rules.Coupon) {
	merchants := []string{"", "m1", "m2", "m3"}
	cats := []string{"c1", "c2", "c3"}
	var items []coupon.CartItem
	for i := range 1 + rng.IntN(5) {
		items = append(items, item(fmt.Sprint("i", i), fmt.Sprint("p", rng.IntN(6)), merchants[rng.IntN(4)],
			rng.Int64N(3000), 1+rng.Int64N(3), cats[rng.IntN(3)]))
	}
	var ship []coupon.ShippingFee
	for _, m := range merchants {
		if rng.IntN(3) == 0 {
			ship = append(ship, coupon.ShippingFee{MerchantID: m, Amount: rng.Int64N(800)})
		}
	}
	o := order(items, ship...)
	o.MaxCoupons = 2 + rng.IntN(4)
	types := []coupon.Type{coupon.TypeCash, coupon.TypeThreshold, coupon.TypePercent, coupon.TypeShipping}
	var cs []rules.Coupon
	for i := range 1 + rng.IntN(9) {
		c := cp(fmt.Sprintf("c%02d", i), 1+rng.Int64N(2500))
		c.BatchID = fmt.Sprint("b", rng.IntN(5))
		c.MerchantID = merchants[rng.IntN(4)]
		c.Type = types[rng.IntN(4)]
		c.ValidTo = now.Add(time.Duration(1+rng.IntN(4)) * time.Hour)
		c.MaxPerOrder = 1 + rng.IntN(2)
		switch c.Type {
		case coupon.TypeThreshold:
			c.MinSpend = 1 + rng.Int64N(4000)
		case coupon.TypePercent:
			c.PercentOff = 1 + rng.IntN(99)
		}
		if rng.IntN(4) == 0 {
			c.MinSpend = rng.Int64N(3000)
		}
		for range rng.IntN(3) {
			switch rng.IntN(7) {
			case 0:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "stackable", RefType: "type", RefID: string(types[rng.IntN(4)])})
			case 1:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "stackable", RefType: "batch", RefID: "*"})
			case 2:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "exclusive", RefType: "batch", RefID: fmt.Sprint("b", rng.IntN(5))})
			case 3:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "exclusive", RefType: "type", RefID: string(types[rng.IntN(4)])})
			case 4:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "include", RefType: "category", RefID: cats[rng.IntN(3)]})
			case 5:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "deduct", RefType: "deduction", RefID: []string{"items", "shipping", "order"}[rng.IntN(3)]})
			case 6:
				c.Rules = append(c.Rules, coupon.Rule{UseType: "stackable", RefType: "merchant", RefID: merchants[1+rng.IntN(3)]})
			}
		}
		cs = append(cs, c)
	}
	return o, cs
}

// checkResult checks the invariants of a computed combination: each
// coupon's lines sum to its discount, each line's costs sum to the line, no
// line is negative, and no cart line is discounted beyond its value.
func checkResult(t *testing.T, o rules.Order, r *rules.Result) {
	t.Helper()
	used := map[string]int64{}
	var total int64
	for _, a := range r.Coupons {
		var sum int64
		require.Positive(t, a.Discount)
		for _, l := range a.Lines {
			require.Positive(t, l.Amount)
			var costs int64
			for _, c := range l.Costs {
				require.Positive(t, c.Amount)
				require.True(t, slices.Contains([]string{coupon.BearerPlatform, coupon.BearerMerchant}, c.Bearer))
				costs += c.Amount
			}
			require.Equal(t, l.Amount, costs, "costs of a line sum to it")
			sum += l.Amount
			k := l.Item
			if l.Kind == coupon.LineShipping {
				k = "shipping:" + l.MerchantID
			}
			used[k] += l.Amount
		}
		require.Equal(t, a.Discount, sum, "lines of coupon %s sum to its discount", a.ClaimID)
		total += a.Discount
	}
	require.Equal(t, r.Discount, total)
	for _, it := range o.Cart.Items {
		require.LessOrEqual(t, used[it.ID], it.Value(), "item %s discounted beyond its value", it.ID)
	}
	for _, s := range o.Cart.Shipping {
		require.LessOrEqual(t, used["shipping:"+s.MerchantID], s.Amount)
	}
}

// FuzzApply: whatever the cart and coupons, a combination Apply accepts
// never discounts a line below zero and its lines and costs sum exactly.
func FuzzApply(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(20310506), uint64(7))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		rng := rand.New(rand.NewPCG(a, b))
		o, cs := randomOrder(rng)
		if r, err := rules.Apply(o, cs); err == nil {
			checkResult(t, o, r)
		}
		if best := rules.Best(o, cs); best != nil {
			checkResult(t, o, best)
		}
	})
}
