package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestEditDraftOverHTTP edits a draft with PATCH /v1/batches/{id} — every
// attribute and rule — and tries each refusal: a bad body, a stale
// If-Match, an unknown batch, a draft holding codes and a published batch
// each get their problem, and change nothing.
func TestEditDraftOverHTTP(t *testing.T) {
	t.Parallel()
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	spec := map[string]any{"name": "spring", "total_quantity": 10, "validity": map[string]any{"days": 7},
		"amount": map[string]any{"type": "fixed", "value": 500},
		"rules":  []any{map[string]any{"ref_type": "category", "ref_id": "food", "use_type": "include"}}}
	draft := c.must(201, "POST", "/v1/batches", spec)
	id := draft["id"].(string)
	if draft["version"] != 1.0 {
		t.Fatalf("a new batch is at version %v", draft["version"])
	}

	edit := map[string]any{"name": "spring, edited", "merchant_id": "m-9", "type": "threshold", "min_spend": 3000,
		"total_quantity": 20, "per_user_limit": 2, "claim_platforms": []string{"ios"}, "channel": "feed",
		"validity": map[string]any{"start": "2031-01-01T00:00:00Z", "end": "2031-02-01T00:00:00Z"},
		"amount":   map[string]any{"type": "random", "min": 100, "max": 900}, "code_format": map[string]any{"prefix": "SP", "length": 12},
		"redemption": map[string]any{"max_per_order": 2},
		"rules": []any{
			map[string]any{"ref_type": "merchant", "ref_id": "m-9", "use_type": "bear", "value": 2500},
			map[string]any{"ref_type": "platform", "ref_id": "", "use_type": "bear", "value": 7500},
			map[string]any{"ref_type": "node", "ref_id": "payment", "use_type": "node"},
			map[string]any{"ref_type": "type", "ref_id": "cash", "use_type": "exclusive"},
		}}
	got := c.must(200, "PATCH", "/v1/batches/"+id, edit, "If-Match", `"1"`)
	if got["version"] != 2.0 || got["status"] != "draft" || got["name"] != "spring, edited" || got["min_spend"] != 3000.0 ||
		got["merchant_id"] != "m-9" || got["remaining_count"] != 20.0 || got["created_at"] != draft["created_at"] {
		t.Fatalf("edited batch: %s", mustJSON(t, got))
	}
	if rules := mustJSON(t, got["rules"]); rules != mustJSON(t, edit["rules"]) {
		t.Fatalf("rules %s, want %s", rules, mustJSON(t, edit["rules"]))
	}
	if stored := c.must(200, "GET", "/v1/batches/"+id, nil); mustJSON(t, stored) != mustJSON(t, got) {
		t.Fatalf("stored %s\nanswered %s", mustJSON(t, stored), mustJSON(t, got))
	}
	// Without If-Match, an edit applies to the version it finds.
	edit["name"] = "spring, again"
	if got = c.must(200, "PATCH", "/v1/batches/"+id, edit); got["version"] != 3.0 {
		t.Fatalf("version after a second edit: %v", got["version"])
	}

	external := c.must(201, "POST", "/v1/batches", map[string]any{"name": "partner", "source": "external", "total_quantity": 5,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 100}})["id"].(string)
	c.must(200, "POST", "/v1/batches/"+external+"/imports", "P-1\nP-2\n", "Content-Type", "text/csv")
	published := c.publishedBatch(5, 1)
	unknown := "01M8BX0V670745AVN146H8QP3A"
	good := `{"name":"n","total_quantity":5,"validity":{"days":1},"amount":{"type":"fixed","value":1}}`

	state := func() string {
		var b strings.Builder
		for _, bid := range []string{id, external, published} {
			b.WriteString(mustJSON(t, c.must(200, "GET", "/v1/batches/"+bid, nil)))
		}
		return b.String()
	}
	before := state()
	for _, tc := range []struct {
		name, path, body string
		headers          []string
		status           int
		code, field      string
	}{
		{"malformed JSON", id, `{"name":`, nil, 400, "bad_request", ""},
		{"unknown field", id, strings.Replace(good, `"name":"n"`, `"name":"n","colour":"red"`, 1), nil, 422, "invalid", "body.colour"},
		{"missing name", id, strings.Replace(good, `"name":"n",`, ``, 1), nil, 422, "invalid", "body.name"},
		{"zero amount", id, strings.Replace(good, `"value":1`, `"value":0`, 1), nil, 422, "invalid", "body.amount.value"},
		{"threshold without a minimum", id, strings.Replace(good, `"name":"n"`, `"name":"n","type":"threshold"`, 1), nil, 422, "invalid", "body.min_spend"},
		{"bad rule", id, strings.Replace(good, `"name":"n"`, `"name":"n","rules":[{"ref_type":"product","ref_id":"p","use_type":"bear"}]`, 1), nil, 422, "invalid", "body.rules[0].ref_type"},
		{"stale If-Match", id, good, []string{"If-Match", `"2"`}, 412, "precondition_failed", ""},
		{"If-Match of no version", id, good, []string{"If-Match", `W/"3"`}, 412, "precondition_failed", ""},
		{"unknown batch", unknown, good, nil, 404, "not_found", ""},
		{"malformed id", "x", good, nil, 404, "not_found", ""},
		{"draft holding codes", external, good, nil, 409, "conflict", ""},
		{"published batch", published, good, nil, 409, "not_draft", ""},
		{"published batch, body refused by the schema first", published, `{"name":""}`, nil, 422, "invalid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			cc.t = t
			r := cc.do("PATCH", "/v1/batches/"+tc.path, tc.body, tc.headers...)
			if r.status != tc.status || r.body["code"] != tc.code || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want %d %s", r.status, r.header.Get("Content-Type"), r.raw, tc.status, tc.code)
			}
			if tc.field != "" && !strings.Contains(string(r.raw), `"location":"`+tc.field+`"`) {
				t.Fatalf("problem %s does not name %s", r.raw, tc.field)
			}
		})
	}
	if after := state(); after != before {
		t.Fatalf("refused edits changed state:\nbefore %s\nafter  %s", before, after)
	}

	// The edits reached the bus, each once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := a.Bus.JetStream().OrderedConsumer(ctx, a.Bus.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"coupond.batch.updated"}})
	if err != nil {
		t.Fatal(err)
	}
	var versions []float64
	for len(versions) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %v: %v", versions, err)
		}
		var env struct {
			AggregateID string         `json:"aggregate_id"`
			Data        map[string]any `json:"data"`
		}
		if err := json.Unmarshal(msg.Data(), &env); err != nil || env.AggregateID != id || env.Data["batch_id"] != id {
			t.Fatalf("batch.updated %s: %v", msg.Data(), err)
		}
		versions = append(versions, env.Data["version"].(float64))
	}
	if versions[0] != 2 || versions[1] != 3 {
		t.Fatalf("batch.updated versions %v", versions)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
