package coupon

import "slices"

// Rule is one configuration-first redemption rule of a batch, stored as a row
// (batch_id, ref_type, ref_id, use_type, value). What the row means is read
// from its use type:
//
//	include, exclude      scope: ref_type product | category | merchant
//	exclusive, stackable  stacking: ref_type batch | merchant | type
//	bear                  cost bearer: ref_type platform | merchant, value = share in basis points
//	node                  usage node: ref_type node, ref_id e.g. order, payment
//	deduct                deduction method: ref_type deduction, ref_id order | items | shipping
type Rule struct {
	RefType string `json:"ref_type" enum:"product,category,merchant,batch,type,platform,node,deduction"`
	RefID   string `json:"ref_id" maxLength:"128"`
	UseType string `json:"use_type" enum:"include,exclude,exclusive,stackable,bear,node,deduct"`
	Value   int64  `json:"value,omitempty" doc:"cost share in basis points (bear rules)"`
}

var ruleRefTypes = map[string][]string{
	"include":   {"product", "category", "merchant"},
	"exclude":   {"product", "category", "merchant"},
	"exclusive": {"batch", "merchant", "type"},
	"stackable": {"batch", "merchant", "type"},
	"bear":      {"platform", "merchant"},
	"node":      {"node"},
	"deduct":    {"deduction"},
}

func (r *Rule) normalize() {}

func (r *Rule) validate(v *Validation, field string) {
	refTypes, ok := ruleRefTypes[r.UseType]
	if !ok {
		v.Add(field+".use_type", "must be one of include, exclude, exclusive, stackable, bear, node, deduct")
		return
	}
	if !slices.Contains(refTypes, r.RefType) {
		v.Addf(field+".ref_type", "must be one of %v for use_type %s", refTypes, r.UseType)
	}
	identifier(v, field+".ref_id", r.RefID, r.UseType != "bear" || r.RefType != "platform")
	switch r.UseType {
	case "bear":
		if r.Value < 1 || r.Value > 10000 {
			v.Add(field+".value", "must be a share between 1 and 10000 basis points")
		}
	default:
		if r.Value != 0 {
			v.Add(field+".value", "applies only to bear rules")
		}
	}
	if r.UseType == "deduct" && !slices.Contains([]string{"order", "items", "shipping"}, r.RefID) {
		v.Add(field+".ref_id", "must be one of order, items, shipping")
	}
	if r.RefType == "type" && !slices.Contains([]Type{TypeCash, TypeThreshold, TypePercent, TypeShipping}, Type(r.RefID)) {
		v.Add(field+".ref_id", "must be one of cash, threshold, percent, shipping")
	}
}
