package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/guard"
)

// Every endpoint, parameter, field, error code and event is described, and
// every example matches its schema.
func TestOpenAPIDocumentsEverything(t *testing.T) {
	t.Parallel()
	sw, err := guard.NewSwitches(nil)
	require.NoError(t, err)
	_, api := newAPI(Config{AdminToken: "x", Switches: sw})
	oa := api.OpenAPI()
	reg := oa.Components.Schemas
	for _, s := range reg.Map() {
		s.PrecomputeMessages()
	}
	var missing []string
	miss := func(format string, args ...any) { missing = append(missing, fmt.Sprintf(format, args...)) }

	validate := func(where string, s *huma.Schema, v any, mode huma.ValidateMode) {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		var decoded any
		require.NoError(t, json.Unmarshal(raw, &decoded))
		res := &huma.ValidateResult{}
		huma.Validate(reg, s, huma.NewPathBuffer([]byte{}, 0), mode, decoded, res)
		for _, e := range res.Errors {
			miss("%s: example does not match its schema: %v", where, e)
		}
	}
	checkOp := func(where string, op *huma.Operation) {
		if op.Summary == "" || op.Description == "" {
			miss("%s: no summary or description", where)
		}
		for _, p := range op.Parameters {
			if p.Description == "" {
				miss("%s: parameter %s has no description", where, p.Name)
			}
		}
		if op.RequestBody != nil {
			if mt := op.RequestBody.Content["application/json"]; mt != nil {
				if len(mt.Examples) == 0 {
					miss("%s: request body has no example", where)
				}
				for _, ex := range mt.Examples {
					validate(where+" request", mt.Schema, ex.Value, huma.ModeWriteToServer)
				}
			}
		}
		for status, r := range op.Responses {
			for ct, mt := range r.Content {
				if ct == "application/json" && strings.HasPrefix(status, "2") && len(mt.Examples) == 0 && mt.Example == nil {
					miss("%s: response %s has no example", where, status)
				}
				if mt.Schema == nil || mt.Schema.Type == "string" {
					continue
				}
				for _, ex := range mt.Examples {
					validate(where+" response "+status, mt.Schema, ex.Value, huma.ModeReadFromServer)
					if ct == "application/problem+json" {
						p := ex.Value.(map[string]any)
						code, st := p["code"].(string), p["status"].(int)
						if !slices.ContainsFunc(problemCodes, func(c struct {
							code    string
							status  int
							meaning string
						}) bool {
							return c.code == code && c.status == st
						}) {
							miss("%s: problem example %s %d is not in the table of codes", where, code, st)
						}
						if status != fmt.Sprint(st) {
							miss("%s: problem example %s under status %s", where, code, status)
						}
					}
				}
			}
		}
	}
	for path, item := range oa.Paths {
		for method, op := range map[string]*huma.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put, "PATCH": item.Patch, "DELETE": item.Delete} {
			if op != nil {
				checkOp(method+" "+path, op)
			}
		}
	}
	for name, item := range oa.Webhooks {
		checkOp("event "+name, item.Post)
	}
	for _, name := range []string{"claim.created", "batch.published", "batch.paused", "batch.resumed", "batch.ended", "batch.updated"} {
		if oa.Webhooks[name] == nil {
			miss("event %s is not described", name)
		}
	}
	var walk func(where string, s *huma.Schema, depth int)
	walk = func(where string, s *huma.Schema, depth int) {
		if s == nil || depth > 6 {
			return
		}
		for name, p := range s.Properties {
			if p.Description == "" {
				miss("%s.%s has no description", where, name)
			}
			walk(where+"."+name, p, depth+1)
		}
		walk(where+"[]", s.Items, depth+1)
	}
	for name, s := range reg.Map() {
		walk(name, s, 0)
	}

	// Every code the API can answer with is in the table.
	for _, code := range append(mapValues(codeOf), append(mapKeys(statusOf), codeOverloaded)...) {
		if !slices.ContainsFunc(problemCodes, func(c struct {
			code    string
			status  int
			meaning string
		}) bool {
			return c.code == code
		}) {
			miss("problem code %s is not in the table of codes", code)
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "undocumented:\n%s", strings.Join(missing, "\n"))
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapValues(m map[int]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

var _ = http.StatusOK
