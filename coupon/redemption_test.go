package coupon

import (
	"strings"
	"testing"
)

func TestRedemptionOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string // "" when valid
		opts  RedemptionOptions
	}{
		{"", RedemptionOptions{}},
		{"", RedemptionOptions{RefundPolicy: RefundVoid, ReservationTimeout: 60, OrderSystemURL: "https://orders.example/api/orders/{order_id}", MaxPerOrder: 3}},
		{"redemption.refund_policy", RedemptionOptions{RefundPolicy: "keep"}},
		{"redemption.reservation_timeout_seconds", RedemptionOptions{ReservationTimeout: -1}},
		{"redemption.reservation_timeout_seconds", RedemptionOptions{ReservationTimeout: MaxReservationTimeout + 1}},
		{"redemption.order_system_url", RedemptionOptions{OrderSystemURL: "ftp://orders/{order_id}"}},
		{"redemption.order_system_url", RedemptionOptions{OrderSystemURL: "/orders/{order_id}"}},
		{"redemption.order_system_url", RedemptionOptions{OrderSystemURL: "https://x/" + strings.Repeat("a", MaxOrderSystemURL)}},
		{"redemption.max_per_order", RedemptionOptions{MaxPerOrder: MaxRedemptionCoupons + 1}},
	} {
		s := validSpec()
		s.Redemption = tc.opts
		s.Normalize()
		err := s.Validate()
		if tc.field == "" {
			if err != nil {
				t.Fatalf("%+v: %v", tc.opts, err)
			}
			continue
		}
		e, ok := err.(*Error)
		if !ok || len(e.Fields) != 1 || e.Fields[0].Field != tc.field {
			t.Fatalf("%+v: got %v, want an error on %s", tc.opts, err, tc.field)
		}
	}
	if (RedemptionOptions{}).Policy() != RefundReturn || (RedemptionOptions{}).PerOrder() != 1 {
		t.Fatal("defaults: return, one per order")
	}
}

func TestCartValidation(t *testing.T) {
	t.Parallel()
	good := func() Cart {
		return Cart{
			Items:    []CartItem{{ID: "1", ProductID: "p", UnitPrice: 100, Quantity: 1}, {ID: "2", ProductID: "q", MerchantID: "m", UnitPrice: 0, Quantity: 3}},
			Shipping: []ShippingFee{{Amount: 500}, {MerchantID: "m", Amount: 0}},
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*Cart)
	}{
		{"", func(*Cart) {}},
		{"cart.items", func(c *Cart) { c.Items = nil }},
		{"cart.items[1].id", func(c *Cart) { c.Items[1].ID = "1" }},
		{"cart.items[0].id", func(c *Cart) { c.Items[0].ID = "" }},
		{"cart.items[0].product_id", func(c *Cart) { c.Items[0].ProductID = "" }},
		{"cart.items[0].unit_price", func(c *Cart) { c.Items[0].UnitPrice = -1 }},
		{"cart.items[0].unit_price", func(c *Cart) { c.Items[0].UnitPrice = MaxAmount + 1 }},
		{"cart.items[0].quantity", func(c *Cart) { c.Items[0].Quantity = 0 }},
		{"cart.items[0].quantity", func(c *Cart) { c.Items[0].Quantity = MaxItemQuantity + 1 }},
		{"cart.items[0].category_ids[0]", func(c *Cart) { c.Items[0].CategoryIDs = []string{""} }},
		{"cart.shipping[1].merchant_id", func(c *Cart) { c.Shipping[1].MerchantID = "" }},
		{"cart.shipping[0].amount", func(c *Cart) { c.Shipping[0].Amount = -5 }},
		{"cart.items", func(c *Cart) {
			c.Items = make([]CartItem, MaxCartItems+1)
		}},
	} {
		c := good()
		tc.edit(&c)
		var v Validation
		c.Validate(&v, "cart")
		err := v.Err()
		if tc.field == "" {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		e, ok := err.(*Error)
		if !ok || e.Fields[0].Field != tc.field {
			t.Fatalf("want an error on %s, got %v", tc.field, err)
		}
	}
}
