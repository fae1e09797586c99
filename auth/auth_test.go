package auth

import (
	"context"
	"testing"
)

func TestScopes(t *testing.T) {
	bg := context.Background()
	if !Sees(bg, "m1") {
		t.Fatal("background work must see everything")
	}
	if _, scoped := MerchantScope(With(bg, Principal{Role: Operator})); scoped {
		t.Fatal("an operator is not confined to a merchant")
	}
	m := With(bg, Principal{Role: Merchant, MerchantID: "m1"})
	if !Sees(m, "m1") || Sees(m, "m2") || Sees(m, "") {
		t.Fatal("a merchant sees its own merchant's things only")
	}
	if Role("root").Valid() || !App.Valid() {
		t.Fatal("role validity")
	}
}
