package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/app"
	api "github.com/coupond/coupond/client"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/service"
)

// bootTuned starts a whole coupond like boot, with the App tuned first.
func bootTuned(t *testing.T, dir string, tune func(*app.App)) *app.App {
	t.Helper()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: dir, AdminToken: "test-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	tune(a)
	require.NoError(t, a.Run(context.Background()))
	t.Cleanup(a.Close)
	return a
}

func fastJobs(a *app.App) {
	a.Distribution.JobInterval = 20 * time.Millisecond
	a.Distribution.JobLease = 2 * time.Second
	a.Distribution.TriggerRefresh = 50 * time.Millisecond
}

// TestImportAndGrantsOverHTTP: a partner's file through the API, twice; a
// grant retried with its key; the imported codes granted and claimed.
func TestImportAndGrantsOverHTTP(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a := bootTuned(t, t.TempDir(), fastJobs)
	c := newClient(t, a)
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "partner", "total_quantity": 3, "source": "external",
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 500},
	})
	id := b["id"].(string)
	c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)

	cl := api.New(a.URL(), a.AdminToken())
	file := "code,amount\nP-1,700,tier=gold\nP-2\n\nP-1\nP-3\nP-4\n"
	res, err := cl.ImportCodesFrom(ctx, id, strings.NewReader(file))
	require.NoError(t, err)
	require.EqualValues(t, 7, res.Lines)
	require.EqualValues(t, 3, res.Imported)
	require.EqualValues(t, 3, res.Rejected)
	require.Equal(t, []api.ImportLineError{
		{Line: 4, Code: "blank", Reason: "the line is blank"},
		{Line: 5, Code: "duplicate", Reason: "duplicate of line 2"},
		{Line: 7, Code: "full", Reason: "the batch holds its total quantity of 3 codes"},
	}, res.Errors)
	again, err := cl.ImportCodesFrom(ctx, id, strings.NewReader(file))
	require.NoError(t, err)
	require.EqualValues(t, 0, again.Imported)
	require.EqualValues(t, 3, again.Existing)
	require.Equal(t, res.Errors, again.Errors)

	code := c.must(200, "GET", "/v1/codes/P-1", nil)
	require.Equal(t, map[string]any{"tier": "gold"}, code["tags"])

	// A grant without a key is refused; with one, retried, it is one claim.
	r := c.do("POST", "/v1/batches/"+id+"/grants", map[string]any{"user_id": "amy"})
	require.Equal(t, 422, r.status, string(r.raw))
	first := c.must(201, "POST", "/v1/batches/"+id+"/grants", map[string]any{"user_id": "amy", "channel": "crm"}, "Idempotency-Key", "g-1")
	r = c.do("POST", "/v1/batches/"+id+"/grants", map[string]any{"user_id": "amy", "channel": "crm"}, "Idempotency-Key", "g-1")
	require.Equal(t, 201, r.status)
	require.Equal(t, "true", r.header.Get("Idempotent-Replayed"))
	require.Equal(t, first["id"], r.body["id"])
	require.Equal(t, "crm", first["channel"])
	require.Contains(t, []any{"P-1", "P-2", "P-3"}, first["code"], "an imported code, through the pool")
}

// TestBulkGrantSurvivesAnInstanceStoppedMidJob stops the instance running a
// job half-way and starts another on the same data: each user is granted
// exactly once.
func TestBulkGrantSurvivesAnInstanceStoppedMidJob(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	a := bootTuned(t, dir, fastJobs)
	c := newClient(t, a)
	const users = 3000
	id := c.publishedBatch(users, 1)
	var list strings.Builder
	for i := range users {
		fmt.Fprintf(&list, "user-%05d\n", i)
	}
	cl := api.New(a.URL(), a.AdminToken())
	job, err := cl.CreateGrantJobFrom(ctx, id, "", strings.NewReader(list.String()))
	require.NoError(t, err)
	require.EqualValues(t, users, job.Total)
	require.Eventually(t, func() bool {
		v, err := cl.GetJob(ctx, job.ID, nil)
		return err == nil && v.Done >= 300
	}, 30*time.Second, 2*time.Millisecond)
	a.Close() // the instance goes away in the middle of the job

	b := bootTuned(t, dir, fastJobs)
	cl = api.New(b.URL(), b.AdminToken())
	mid, err := cl.GetJob(ctx, job.ID, nil)
	require.NoError(t, err)
	require.Equal(t, "pending", mid.Status, "stopped half-way")
	require.Eventually(t, func() bool {
		v, err := cl.GetJob(ctx, job.ID, nil)
		return err == nil && v.Status == "done"
	}, 60*time.Second, 20*time.Millisecond)
	v, err := cl.GetJob(ctx, job.ID, nil)
	require.NoError(t, err)
	require.EqualValues(t, users, v.Done)
	require.EqualValues(t, 0, v.Failed)
	require.EqualValues(t, 0, v.Remaining)
	n, err := b.Store.ClaimedCount(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, users, n, "each user exactly once")
}

// TestTriggerSubjectGrantsOnEvents: a batch with a trigger subject is
// granted to the user of each event published on it, once per event.
func TestTriggerSubjectGrantsOnEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	handled := make(chan string, 10)
	a := bootTuned(t, t.TempDir(), func(a *app.App) {
		fastJobs(a)
		a.Distribution.OnTriggerEvent = func(_, id string, _ []service.TriggerOutcome, err error) {
			if err == nil {
				handled <- id
			}
		}
	})
	c := newClient(t, a)
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "welcome", "total_quantity": 10, "per_user_limit": 5, "trigger_subject": "user.registered",
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 500},
	})
	id := b["id"].(string)
	c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)
	js := a.Bus.JetStream()
	require.Eventually(t, func() bool {
		s, err := js.StreamNameBySubject(ctx, "user.registered")
		return err == nil && s != ""
	}, 20*time.Second, 10*time.Millisecond)
	for _, ev := range []struct{ id, user string }{{"r1", "amy"}, {"r1", "amy"}, {"r2", "bob"}} {
		m := nats.NewMsg("user.registered")
		m.Data = []byte(fmt.Sprintf(`{"id":%q,"user_id":%q}`, ev.id, ev.user))
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	var ids []string
	for range 3 { // all three handled, the repeated one too
		select {
		case id := <-handled:
			ids = append(ids, id)
		case <-time.After(20 * time.Second):
			t.Fatalf("events handled: %v", ids)
		}
	}
	require.ElementsMatch(t, []string{"r1", "r1", "r2"}, ids)
	n, err := a.Store.ClaimedCount(ctx, id)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	claims := c.must(200, "GET", "/v1/users/amy/claims", nil)
	items := claims["items"].([]any)
	require.Len(t, items, 1)
	require.Equal(t, "trigger", items[0].(map[string]any)["channel"])
}
