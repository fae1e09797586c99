package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/guard"
)

// SwitchBody is a run-time switch of non-essential work.
type SwitchBody struct {
	Name        string `json:"name" doc:"the switch's name" example:"batch_metrics"`
	Description string `json:"description" doc:"the work it turns on or off" example:"per-batch metrics and outbox lag read from the engine and the store at every scrape"`
	Enabled     bool   `json:"enabled" doc:"whether the work runs" example:"true"`
}

// SwitchList lists the switches.
type SwitchList struct {
	Items []SwitchBody `json:"items" doc:"every switch, by name"`
}

// SetSwitchBody turns a switch on or off.
type SetSwitchBody struct {
	Enabled bool `json:"enabled" doc:"true runs the work, false stops it" example:"false"`
}

func (h *handlers) registerSwitches(api huma.API, sw *guard.Switches) {
	huma.Register(api, huma.Operation{
		OperationID: "list-switches", Method: http.MethodGet, Path: "/v1/ops/switches", Tags: []string{"operations"},
		Summary: "List the run-time switches",
		Description: "Switches turn non-essential work off while an instance is under pressure, and on again, without " +
			"a restart. They belong to the instance that answers: call every instance to switch a fleet, or set " +
			"COUPOND_SWITCHES_OFF and restart.",
	}, func(context.Context, *struct{}) (*struct{ Body SwitchList }, error) {
		out := SwitchList{Items: []SwitchBody{}}
		for _, s := range sw.All() {
			out.Items = append(out.Items, SwitchBody{Name: s.Name, Description: s.Description, Enabled: s.On()})
		}
		return &struct{ Body SwitchList }{out}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "set-switch", Method: http.MethodPut, Path: "/v1/ops/switches/{name}", Tags: []string{"operations"},
		Summary:     "Turn a switch on or off",
		Description: "Takes effect at once on the instance that answers. Unknown names are `not_found`.",
	}, func(_ context.Context, in *struct {
		Name string `path:"name" maxLength:"64" doc:"the switch's name" example:"batch_metrics"`
		Body SetSwitchBody
	}) (*struct{ Body SwitchBody }, error) {
		s := sw.Get(in.Name)
		if s == nil {
			return nil, problem(coupon.Errorf(coupon.CodeNotFound, "no switch named %q", in.Name), "path")
		}
		s.Set(in.Body.Enabled)
		return &struct{ Body SwitchBody }{SwitchBody{Name: s.Name, Description: s.Description, Enabled: s.On()}}, nil
	})
}
