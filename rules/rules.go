// Package rules is coupond's redemption rule engine. Given an order (a cart,
// the platform, the checkout step) and a user's coupons, it says which
// coupons apply and why the others do not, what each takes off, which
// combinations the stacking rules allow, and splits every discount over the
// cart's lines exactly, with the cost bearer of each line. It does no I/O:
// the service hands it the claims and their batches' rule rows.
//
// # Reading the rule rows
//
//	include/exclude product|category|merchant   scope. An item is eligible when it matches no exclude
//	                                            rule and, for each ref type that has include rules, one
//	                                            of them. A merchant's batch covers only its own items.
//	node node <id>                              checkout steps the coupon may be applied at; none: any
//	deduct deduction items|shipping|order       what the discount comes off: the eligible items (the
//	                                            default), the eligible shipping fees (the default of a
//	                                            shipping coupon), or both
//	bear platform|merchant <id|*>, value bp     cost shares in basis points; "*" is each line's own
//	                                            merchant. What the shares leave to 10,000 is borne by the
//	                                            batch's owner (its merchant, or the platform).
//	exclusive batch|merchant|type <id|*>        never combined with those coupons ("*": with any)
//	stackable batch|merchant|type <id|*>        may share a slot with those coupons
//
// # Stacking
//
// Each coupon sits in a slot: its owner (the platform, or one merchant) and
// whether it is a shipping coupon. By default an order uses at most one
// coupon per slot: one platform coupon, one per merchant, and one free
// shipping coupon of each. Two coupons of one slot combine when either says
// it is stackable with the other; an exclusive rule on either side forbids a
// combination whatever the slots. Coupons of one batch combine up to the
// batch's max_per_order, and an order uses at most Order.MaxCoupons coupons.
//
// # Computing a combination
//
// Coupons apply one after the other, merchants' coupons first, then the
// platform's (then by batch and claim id), each to what the coupons before
// it left of the lines' values. A coupon's minimum spend is measured on the
// eligible items left to it. Its discount is its amount (cash, threshold,
// shipping) or its percentage of the base rounded down and capped by its
// amount (percent), and never more than the base: no line ever goes below
// zero and no coupon gives more than its eligible lines are worth. The
// discount is split over the base's lines in proportion to their values by
// the largest-remainder method, so the lines sum to it exactly; each line's
// discount is split over its cost bearers the same way.
package rules

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Defaults.
const (
	DefaultNode       = "order"
	DefaultMaxCoupons = 5
	// MaxCandidates bounds the coupons Best searches among: the usable ones
	// that take off the most alone.
	MaxCandidates = 24
)

// Deduction methods.
const (
	DeductItems    = "items"
	DeductShipping = "shipping"
	DeductOrder    = "order"
)

// Coupon is one claim as the rule engine sees it: the claim's own terms and
// its batch's rules.
type Coupon struct {
	ClaimID        string
	BatchID        string
	Code           string
	MerchantID     string // the batch's merchant; empty for a platform batch
	Type           coupon.Type
	Amount         int64 // off (cash, threshold), the cap (percent), the most of shipping (shipping)
	MinSpend       int64
	PercentOff     int
	UsagePlatforms []string
	ValidFrom      time.Time
	ValidTo        time.Time
	Status         coupon.ClaimStatus // the stored status; available is required
	Rules          []coupon.Rule
	MaxPerOrder    int // ≤ 0: 1
}

// FromClaim builds the Coupon of a claim of batch b.
func FromClaim(c *coupon.Claim, b *coupon.Batch) Coupon {
	return Coupon{
		ClaimID: c.ID, BatchID: c.BatchID, Code: c.Code, MerchantID: c.MerchantID,
		Type: c.Type, Amount: c.Amount, MinSpend: c.MinSpend, PercentOff: c.PercentOff,
		UsagePlatforms: c.UsagePlatforms, ValidFrom: c.ValidFrom, ValidTo: c.ValidTo, Status: c.Status,
		Rules: b.Rules, MaxPerOrder: b.Redemption.PerOrder(),
	}
}

// Order is what coupons are applied to.
type Order struct {
	Cart     coupon.Cart
	Platform string    // where the order is placed; checked against usage platforms
	Node     string    // the checkout step; checked against node rules
	At       time.Time // checked against validity
	// MaxCoupons bounds the coupons of one order; ≤ 0: DefaultMaxCoupons.
	MaxCoupons int
}

func (o *Order) maxCoupons() int {
	if o.MaxCoupons <= 0 {
		return DefaultMaxCoupons
	}
	return o.MaxCoupons
}

// Reason codes say why a coupon does not apply; they are part of the API.
const (
	ReasonStatus      = "status"              // the claim is not available (locked, used, expired, refunded)
	ReasonNotYetValid = "not_yet_valid"       // before its validity
	ReasonExpired     = "expired"             // after its validity
	ReasonPlatform    = "platform"            // not usable on this platform
	ReasonNode        = "node"                // not usable at this checkout step
	ReasonScope       = "scope"               // nothing in the cart is eligible
	ReasonMinSpend    = "min_spend"           // eligible items below the minimum spend
	ReasonNothing     = "nothing_to_discount" // the base it comes off is worth nothing
	ReasonStacking    = "stacking"            // the stacking rules forbid the combination
	ReasonPerOrder    = "per_order_limit"     // more coupons of its batch than one order may use
	ReasonTooMany     = "too_many_coupons"    // more coupons than one order may use
	ReasonDuplicate   = "duplicate"           // the same claim twice
)

// Reason says why a coupon does not apply.
type Reason struct {
	Code    string `json:"code" doc:"status, not_yet_valid, expired, platform, node, scope, min_spend, nothing_to_discount, stacking, per_order_limit, too_many_coupons, duplicate"`
	Message string `json:"message" doc:"the reason in words"`
}

// Refusal is the error of Apply: the first coupon of the combination that
// does not apply, and why.
type Refusal struct {
	ClaimID string
	Reason  Reason
}

func (r *Refusal) Error() string { return fmt.Sprintf("claim %s: %s", r.ClaimID, r.Reason.Message) }

// Evaluation is one coupon alone on an order.
type Evaluation struct {
	ClaimID  string
	Usable   bool
	Discount int64
	Reason   *Reason // when not usable
}

// Applied is one coupon of a computed combination.
type Applied struct {
	ClaimID  string
	BatchID  string
	Code     string
	Discount int64
	Lines    []coupon.Line
}

// Result is a computed combination, in the order its coupons applied.
type Result struct {
	Discount int64
	Coupons  []Applied
}

// ClaimIDs lists the claims of the combination.
func (r *Result) ClaimIDs() []string {
	out := make([]string, len(r.Coupons))
	for i, a := range r.Coupons {
		out[i] = a.ClaimID
	}
	return out
}

// Evaluate says of each coupon alone whether it applies to the order, what
// it takes off, and why not when it does not.
func Evaluate(o Order, cs []Coupon) []Evaluation {
	out := make([]Evaluation, len(cs))
	for i := range cs {
		out[i].ClaimID = cs[i].ClaimID
		r, err := Apply(o, cs[i:i+1])
		if err != nil {
			reason := err.(*Refusal).Reason
			out[i].Reason = &reason
			continue
		}
		out[i].Usable, out[i].Discount = true, r.Discount
	}
	return out
}

// Apply computes a combination of coupons on an order, or refuses it with a
// *Refusal naming the first coupon that does not apply.
func Apply(o Order, cs []Coupon) (*Result, error) {
	if len(cs) > o.maxCoupons() {
		return nil, &Refusal{cs[o.maxCoupons()].ClaimID, Reason{ReasonTooMany,
			fmt.Sprintf("an order may use at most %d coupons", o.maxCoupons())}}
	}
	cc := make([]*compiled, len(cs))
	perBatch := map[string]int{}
	for i := range cs {
		c := compile(&cs[i])
		if slices.ContainsFunc(cc[:i], func(p *compiled) bool { return p.ClaimID == c.ClaimID }) {
			return nil, &Refusal{c.ClaimID, Reason{ReasonDuplicate, "the claim is listed twice"}}
		}
		if r := c.applicable(&o); r != nil {
			return nil, &Refusal{c.ClaimID, *r}
		}
		for _, p := range cc[:i] {
			if r := compatible(p, c); r != nil {
				return nil, &Refusal{c.ClaimID, *r}
			}
		}
		perBatch[c.BatchID]++
		if n := perBatch[c.BatchID]; n > c.perOrder() {
			return nil, &Refusal{c.ClaimID, Reason{ReasonPerOrder,
				fmt.Sprintf("an order may use at most %d coupons of batch %s", c.perOrder(), c.BatchID)}}
		}
		cc[i] = c
	}
	slices.SortFunc(cc, applicationOrder)

	st := newState(&o.Cart)
	res := &Result{Coupons: make([]Applied, 0, len(cc))}
	for _, c := range cc {
		a, r := st.apply(c)
		if r != nil {
			return nil, &Refusal{c.ClaimID, *r}
		}
		res.Discount += a.Discount
		res.Coupons = append(res.Coupons, a)
	}
	return res, nil
}

// Compatible says why two coupons may not be used in one order, or nil if
// they may (their per-order limits aside).
func Compatible(a, b Coupon) *Reason {
	return compatible(compile(&a), compile(&b))
}

// applicationOrder: merchants' coupons before the platform's, then by batch
// and claim.
func applicationOrder(a, b *compiled) int {
	return cmp.Or(
		cmp.Compare(boolInt(a.MerchantID == ""), boolInt(b.MerchantID == "")),
		cmp.Compare(a.BatchID, b.BatchID),
		cmp.Compare(a.ClaimID, b.ClaimID),
	)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compiled is a coupon with its rule rows sorted by meaning.
type compiled struct {
	*Coupon
	include   map[string][]string // ref type → ids
	exclude   map[string][]string
	nodes     []string
	deduct    string
	bearers   []bearerShare
	exclusive map[string][]string
	stackable map[string][]string
}

type bearerShare struct {
	bearer     string // platform or merchant
	merchantID string // "*": the line's merchant
	bp         int64
}

func compile(c *Coupon) *compiled {
	x := &compiled{Coupon: c, include: map[string][]string{}, exclude: map[string][]string{},
		exclusive: map[string][]string{}, stackable: map[string][]string{}}
	for _, r := range c.Rules {
		switch r.UseType {
		case "include":
			x.include[r.RefType] = append(x.include[r.RefType], r.RefID)
		case "exclude":
			x.exclude[r.RefType] = append(x.exclude[r.RefType], r.RefID)
		case "node":
			x.nodes = append(x.nodes, r.RefID)
		case "deduct":
			if x.deduct == "" {
				x.deduct = r.RefID
			}
		case "bear":
			x.bearers = append(x.bearers, bearerShare{bearer: r.RefType, merchantID: r.RefID, bp: r.Value})
		case "exclusive":
			x.exclusive[r.RefType] = append(x.exclusive[r.RefType], r.RefID)
		case "stackable":
			x.stackable[r.RefType] = append(x.stackable[r.RefType], r.RefID)
		}
	}
	if x.deduct == "" {
		x.deduct = DeductItems
		if c.Type == coupon.TypeShipping {
			x.deduct = DeductShipping
		}
	}
	return x
}

func (c *compiled) perOrder() int {
	if c.MaxPerOrder <= 0 {
		return 1
	}
	return c.MaxPerOrder
}

// applicable checks what does not depend on the other coupons.
func (c *compiled) applicable(o *Order) *Reason {
	switch {
	case c.Status != coupon.ClaimAvailable:
		return &Reason{ReasonStatus, fmt.Sprintf("the coupon is %s", c.Status)}
	case o.At.Before(c.ValidFrom):
		return &Reason{ReasonNotYetValid, "the coupon is valid from " + c.ValidFrom.Format(time.RFC3339)}
	case !o.At.Before(c.ValidTo):
		return &Reason{ReasonExpired, "the coupon expired at " + c.ValidTo.Format(time.RFC3339)}
	case len(c.UsagePlatforms) > 0 && !slices.Contains(c.UsagePlatforms, o.Platform):
		return &Reason{ReasonPlatform, fmt.Sprintf("the coupon is not usable on platform %q", o.Platform)}
	case len(c.nodes) > 0 && !slices.Contains(c.nodes, o.Node):
		return &Reason{ReasonNode, fmt.Sprintf("the coupon is not usable at checkout step %q", o.Node)}
	}
	for _, it := range o.Cart.Items {
		if c.eligible(&it) {
			return nil
		}
	}
	return &Reason{ReasonScope, "nothing in the cart is eligible for the coupon"}
}

// eligible reports whether the coupon's scope covers an item.
func (c *compiled) eligible(it *coupon.CartItem) bool {
	if c.MerchantID != "" && it.MerchantID != c.MerchantID {
		return false
	}
	if slices.Contains(c.exclude["product"], it.ProductID) || slices.Contains(c.exclude["merchant"], it.MerchantID) ||
		slices.ContainsFunc(it.CategoryIDs, func(cat string) bool { return slices.Contains(c.exclude["category"], cat) }) {
		return false
	}
	if ids := c.include["product"]; len(ids) > 0 && !slices.Contains(ids, it.ProductID) {
		return false
	}
	if ids := c.include["merchant"]; len(ids) > 0 && !slices.Contains(ids, it.MerchantID) {
		return false
	}
	if ids := c.include["category"]; len(ids) > 0 &&
		!slices.ContainsFunc(it.CategoryIDs, func(cat string) bool { return slices.Contains(ids, cat) }) {
		return false
	}
	return true
}

// eligibleShipping reports whether the coupon may come off a shipping fee:
// the fee's merchant is in the coupon's merchant scope and the cart holds an
// eligible item shipped with it.
func (c *compiled) eligibleShipping(s *coupon.ShippingFee, items []coupon.CartItem) bool {
	if c.MerchantID != "" && s.MerchantID != c.MerchantID {
		return false
	}
	if slices.Contains(c.exclude["merchant"], s.MerchantID) {
		return false
	}
	if ids := c.include["merchant"]; len(ids) > 0 && !slices.Contains(ids, s.MerchantID) {
		return false
	}
	return slices.ContainsFunc(items, func(it coupon.CartItem) bool {
		return (s.MerchantID == "" || it.MerchantID == s.MerchantID) && c.eligible(&it)
	})
}

// compatible says why two coupons may not share an order, or nil.
func compatible(a, b *compiled) *Reason {
	if r := a.excludes(b); r != nil {
		return r
	}
	if r := b.excludes(a); r != nil {
		return r
	}
	if a.BatchID == b.BatchID {
		if a.perOrder() < 2 {
			return &Reason{ReasonPerOrder, fmt.Sprintf("an order may use one coupon of batch %s", a.BatchID)}
		}
		return nil
	}
	if a.slot() == b.slot() && !a.stacks(b) && !b.stacks(a) {
		owner := "the platform"
		if a.MerchantID != "" {
			owner = "merchant " + a.MerchantID
		}
		kind := "coupon"
		if a.Type == coupon.TypeShipping {
			kind = "shipping coupon"
		}
		return &Reason{ReasonStacking, fmt.Sprintf("an order may use one %s of %s unless they are stackable (batches %s and %s)",
			kind, owner, a.BatchID, b.BatchID)}
	}
	return nil
}

type slot struct {
	owner    string
	shipping bool
}

func (c *compiled) slot() slot { return slot{c.MerchantID, c.Type == coupon.TypeShipping} }

// matches reports whether rule refs name coupon o.
func matches(refs map[string][]string, o *compiled) bool {
	for refType, ids := range refs {
		for _, id := range ids {
			switch {
			case id == "*",
				refType == "batch" && id == o.BatchID,
				refType == "merchant" && o.MerchantID != "" && id == o.MerchantID,
				refType == "type" && id == string(o.Type):
				return true
			}
		}
	}
	return false
}

func (c *compiled) excludes(o *compiled) *Reason {
	if matches(c.exclusive, o) {
		return &Reason{ReasonStacking, fmt.Sprintf("batch %s is exclusive of batch %s", c.BatchID, o.BatchID)}
	}
	return nil
}

func (c *compiled) stacks(o *compiled) bool { return matches(c.stackable, o) }

// state is what is left of each line's value as coupons apply.
type state struct {
	cart     *coupon.Cart
	items    []int64
	shipping []int64
}

func newState(cart *coupon.Cart) *state {
	st := &state{cart: cart, items: make([]int64, len(cart.Items)), shipping: make([]int64, len(cart.Shipping))}
	for i, it := range cart.Items {
		st.items[i] = it.Value()
	}
	for i, s := range cart.Shipping {
		st.shipping[i] = s.Amount
	}
	return st
}

// base is one line a coupon's discount may come off.
type base struct {
	shipping bool
	index    int
}

func (st *state) value(b base) int64 {
	if b.shipping {
		return st.shipping[b.index]
	}
	return st.items[b.index]
}

// apply takes one coupon's discount off what is left.
func (st *state) apply(c *compiled) (Applied, *Reason) {
	a := Applied{ClaimID: c.ClaimID, BatchID: c.BatchID, Code: c.Code}
	var bases []base
	var spend int64
	for i := range st.cart.Items {
		if !c.eligible(&st.cart.Items[i]) {
			continue
		}
		spend += st.items[i]
		if c.deduct != DeductShipping {
			bases = append(bases, base{index: i})
		}
	}
	if c.deduct != DeductItems {
		for i := range st.cart.Shipping {
			if c.eligibleShipping(&st.cart.Shipping[i], st.cart.Items) {
				bases = append(bases, base{shipping: true, index: i})
			}
		}
	}
	if spend < c.MinSpend {
		return a, &Reason{ReasonMinSpend, fmt.Sprintf("the eligible items come to %d, below the minimum spend of %d", spend, c.MinSpend)}
	}
	weights := make([]int64, len(bases))
	var total int64
	for i, b := range bases {
		weights[i] = st.value(b)
		total += weights[i]
	}
	var d int64
	switch c.Type {
	case coupon.TypePercent:
		d = min(total*int64(c.PercentOff)/100, c.Amount)
	default:
		d = min(c.Amount, total)
	}
	d = max(min(d, total), 0)
	if d == 0 {
		return a, &Reason{ReasonNothing, "what the coupon comes off is worth nothing"}
	}
	a.Discount = d
	for i, share := range Split(d, weights) {
		if share == 0 {
			continue
		}
		b := bases[i]
		line := coupon.Line{Amount: share}
		merchant := ""
		if b.shipping {
			st.shipping[b.index] -= share
			line.Kind, line.MerchantID = coupon.LineShipping, st.cart.Shipping[b.index].MerchantID
			merchant = line.MerchantID
		} else {
			st.items[b.index] -= share
			line.Kind, line.Item = coupon.LineItem, st.cart.Items[b.index].ID
			merchant = st.cart.Items[b.index].MerchantID
		}
		line.Costs = c.costs(share, merchant)
		a.Lines = append(a.Lines, line)
	}
	return a, nil
}

// costs splits one line's discount over its bearers. merchant is the line's
// own merchant.
func (c *compiled) costs(amount int64, merchant string) []coupon.Cost {
	owner := coupon.Cost{Bearer: coupon.BearerPlatform}
	if c.MerchantID != "" {
		owner = coupon.Cost{Bearer: coupon.BearerMerchant, MerchantID: c.MerchantID}
	}
	if len(c.bearers) == 0 {
		owner.Amount = amount
		return []coupon.Cost{owner}
	}
	var parties []coupon.Cost
	var weights []int64
	add := func(p coupon.Cost, bp int64) {
		if p.Bearer == coupon.BearerMerchant && p.MerchantID == "" {
			p.Bearer = coupon.BearerPlatform // the platform's own goods
		}
		for i := range parties {
			if parties[i] == p {
				weights[i] += bp
				return
			}
		}
		parties, weights = append(parties, p), append(weights, bp)
	}
	var sum int64
	for _, b := range c.bearers {
		p := coupon.Cost{Bearer: b.bearer}
		if b.bearer == coupon.BearerMerchant {
			p.MerchantID = b.merchantID
			if p.MerchantID == "*" {
				p.MerchantID = merchant
			}
		}
		add(p, b.bp)
		sum += b.bp
	}
	if sum < 10_000 {
		add(owner, 10_000-sum)
	}
	out := make([]coupon.Cost, 0, len(parties))
	for i, share := range Split(amount, weights) {
		if share > 0 {
			p := parties[i]
			p.Amount = share
			out = append(out, p)
		}
	}
	return out
}

// Split divides total over weights in proportion to them, exactly: each
// share is total·w/Σw rounded down, and the units left over go one each to
// the largest remainders (the earliest on a tie). A share never exceeds its
// weight when total ≤ Σw. With no weight, every share is 0.
func Split(total int64, weights []int64) []int64 {
	shares := make([]int64, len(weights))
	var sum uint64
	for _, w := range weights {
		sum += uint64(w)
	}
	if sum == 0 || total <= 0 {
		return shares
	}
	rems := make([]uint64, len(weights))
	left := total
	for i, w := range weights {
		hi, lo := bits.Mul64(uint64(total), uint64(w))
		q, r := bits.Div64(hi, lo, sum) // q ≤ total: no overflow
		shares[i], rems[i] = int64(q), r
		left -= int64(q)
	}
	if left == 0 {
		return shares
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rems[b], rems[a]) })
	for _, i := range order[:left] {
		shares[i]++
	}
	return shares
}
