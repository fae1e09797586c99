package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// ReadyCheck is one dependency's state, as /readyz reports it.
type ReadyCheck struct {
	Name     string `json:"name" doc:"what was checked: shutdown, store, migrations, engine, bus" example:"store"`
	OK       bool   `json:"ok" doc:"whether the check passed"`
	Required bool   `json:"required" doc:"a failed required check makes the instance not ready (503); a failed optional one makes it degraded (200)"`
	Error    string `json:"error,omitempty" doc:"why the check failed" example:"circuit breaker open"`
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Status string       `json:"status" enum:"ready,degraded,not_ready" doc:"ready: every check passed; degraded: an optional check failed, the instance still serves what it can; not_ready: a required check failed" example:"ready"`
	Checks []ReadyCheck `json:"checks" doc:"each dependency checked, in order"`
}

type healthBody struct {
	Status string `json:"status" enum:"ok" doc:"always ok: the process is alive and serving HTTP" example:"ok"`
}

func (h *handlers) registerHealth(api huma.API, ready func(context.Context) []ReadyCheck) {
	noAuth := []map[string][]string{}
	huma.Register(api, huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Tags: []string{"operations"},
		Summary:     "Liveness: is the process alive",
		Description: "Answers 200 as long as the process serves HTTP; it checks no dependency, so a restart is only asked for when one would help. No authentication.",
		Security:    noAuth,
	}, func(context.Context, *struct{}) (*struct{ Body healthBody }, error) {
		return &struct{ Body healthBody }{healthBody{Status: "ok"}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Tags: []string{"operations"},
		Summary: "Readiness: can this instance serve",
		Description: "Checks each dependency: the store is reachable with every migration applied, the engine " +
			"answers, the bus is connected, and the instance is not shutting down. A failed required check " +
			"(shutdown, store, migrations) answers 503 `not_ready`, so a load balancer stops sending requests. The " +
			"engine and the bus are shared by every instance: when they are down, every instance would go unready " +
			"at once and the queries that still work would be lost too, so their failure answers 200 `degraded` " +
			"(claims then answer 503 `unavailable` on their own). With `strict=true` any failed check answers 503. " +
			"No authentication.",
		Security: noAuth,
		Responses: map[string]*huma.Response{
			"503": {Description: "not ready: a required check (or, with strict=true, any check) failed; the body lists the checks",
				Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Ref: "#/components/schemas/Readiness"}}}},
		},
	}, func(ctx context.Context, in *struct {
		Strict bool `query:"strict" doc:"answer 503 when any check fails, not only a required one"`
	}) (*struct {
		Status int
		Body   Readiness
	}, error) {
		out := &struct {
			Status int
			Body   Readiness
		}{Status: http.StatusOK, Body: Readiness{Status: "ready", Checks: []ReadyCheck{}}}
		if ready != nil {
			out.Body.Checks = ready(ctx)
		}
		for _, c := range out.Body.Checks {
			switch {
			case c.OK:
			case c.Required || in.Strict:
				out.Status, out.Body.Status = http.StatusServiceUnavailable, "not_ready"
			case out.Body.Status == "ready":
				out.Body.Status = "degraded"
			}
		}
		return out, nil
	})
}
