package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/loadgen"
)

// A mixed run against a real coupond, bearer and signed with an app key:
// every kind of request succeeds, and each reservation is confirmed.
func TestMixedRun(t *testing.T) {
	t.Parallel()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "lg-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	cfg.GroupCommit.MaxBatch = 256
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)

	// An app key, which must sign its requests.
	req, _ := http.NewRequest("POST", a.URL()+"/v1/keys", bytes.NewReader([]byte(`{"name":"loadgen","role":"app"}`)))
	req.Header.Set("Authorization", "Bearer lg-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var key struct{ ID, Secret string }
	_ = json.NewDecoder(resp.Body).Decode(&key)
	resp.Body.Close()
	if resp.StatusCode != 201 || key.Secret == "" {
		t.Fatalf("create key: %d", resp.StatusCode)
	}

	for _, signed := range []bool{false, true} {
		run := loadgen.Config{URL: a.URL(), Token: "lg-token", Mode: "mixed", Concurrency: 8, Requests: 400, Users: 20, ClaimsPerUser: 2, Total: 10_000}
		if signed {
			run.KeyID, run.KeySecret = key.ID, key.Secret
		}
		r, err := loadgen.Run(t.Context(), run)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"claim created", "my_coupons ok", "badges ok", "qualify ok", "reserve created", "confirm ok"}
		for _, o := range want {
			if r.Outcomes[o] == 0 {
				t.Errorf("signed %v: no %q among %v", signed, o, r.Outcomes)
			}
		}
		if r.Outcomes["reserve created"] != r.Outcomes["confirm ok"] {
			t.Errorf("signed %v: %d reserved, %d confirmed", signed, r.Outcomes["reserve created"], r.Outcomes["confirm ok"])
		}
		var total int64
		for o, n := range r.Outcomes {
			total += n
			if !slices.Contains(want, o) {
				t.Errorf("signed %v: %d × %q", signed, n, o)
			}
		}
		if total != r.Requests {
			t.Errorf("outcomes add up to %d of %d requests", total, r.Requests)
		}
	}
}
