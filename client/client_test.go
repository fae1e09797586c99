package client_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/client"
	"github.com/coupond/coupond/config"
)

// The generated client against a live coupond: each kind of call, the
// problems as errors, an idempotent replay.
func TestClientAgainstALiveService(t *testing.T) {
	t.Parallel()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "client-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	require.NoError(t, a.Run(context.Background()))
	t.Cleanup(a.Close)
	ctx := context.Background()
	c := client.New(a.URL(), a.AdminToken())

	b, err := c.CreateBatch(ctx, &client.BatchSpec{
		Name: "client test", TotalQuantity: 3, PerUserLimit: 1,
		Validity: client.Validity{Days: 7}, Amount: client.AmountSpec{Type: "fixed", Value: 500},
	})
	require.NoError(t, err)
	require.Equal(t, "draft", b.Status)
	edit := &client.BatchSpec{
		Name: "client test, edited", TotalQuantity: 3, PerUserLimit: 1,
		Validity: client.Validity{Days: 7}, Amount: client.AmountSpec{Type: "fixed", Value: 600},
		Rules: []client.Rule{{RefType: "node", RefID: "payment", UseType: "node"}},
	}
	b, err = c.UpdateBatch(ctx, b.ID, &client.UpdateBatchParams{IfMatch: `"1"`}, edit)
	require.NoError(t, err)
	require.Equal(t, int64(2), b.Version)
	require.Equal(t, int64(600), b.Amount.Value)
	require.Len(t, b.Rules, 1)
	_, err = c.UpdateBatch(ctx, b.ID, &client.UpdateBatchParams{IfMatch: `"1"`}, edit)
	require.Equal(t, "precondition_failed", client.ProblemCode(err))
	b, err = c.PublishBatch(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, int64(3), b.PoolDepth)

	first, err := c.Claim(ctx, b.ID, &client.ClaimParams{IdempotencyKey: "alice-1"}, &client.ClaimBody{UserID: "alice", Platform: "ios"})
	require.NoError(t, err)
	require.Equal(t, "alice", first.Body.UserID)
	require.Empty(t, first.IdempotentReplayed)
	again, err := c.Claim(ctx, b.ID, &client.ClaimParams{IdempotencyKey: "alice-1"}, &client.ClaimBody{UserID: "alice", Platform: "ios"})
	require.NoError(t, err)
	require.Equal(t, "true", again.IdempotentReplayed)
	require.Equal(t, first.Body.ID, again.Body.ID)

	_, err = c.Claim(ctx, b.ID, nil, &client.ClaimBody{UserID: "alice"})
	require.Equal(t, "limit_reached", client.ProblemCode(err))
	var e *client.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, 409, e.StatusCode)
	require.NotEmpty(t, e.RequestID)

	got, err := c.GetClaim(ctx, first.Body.ID)
	require.NoError(t, err)
	require.Equal(t, first.Body.Code, got.Code)
	code, err := c.GetCode(ctx, first.Body.Code)
	require.NoError(t, err)
	require.Equal(t, b.ID, code.BatchID)
	page, err := c.ListUserClaims(ctx, "alice", &client.ListUserClaimsParams{Status: "available", Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	batches, err := c.ListBatches(ctx, &client.ListBatchesParams{Status: "active"})
	require.NoError(t, err)
	require.Len(t, batches.Items, 1)
	_, err = c.PauseBatch(ctx, b.ID)
	require.NoError(t, err)
	_, err = c.UpdateBatch(ctx, b.ID, nil, edit)
	require.Equal(t, "not_draft", client.ProblemCode(err))
	_, err = c.Claim(ctx, b.ID, nil, &client.ClaimBody{UserID: "bob"})
	require.Equal(t, "not_claimable", client.ProblemCode(err))
	_, err = c.GetBatch(ctx, "01JD5Q6W3ZK8M2V4N7R9T1X3Y5")
	require.Equal(t, "not_found", client.ProblemCode(err))

	health, err := c.Healthz(ctx)
	require.NoError(t, err)
	require.Equal(t, "ok", health.Status)
	ready, err := c.Readyz(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, "ready", ready.Status)
	sw, err := c.SetSwitch(ctx, "access_log", &client.SetSwitchBody{Enabled: false})
	require.NoError(t, err)
	require.False(t, sw.Enabled)

	_, err = client.New(a.URL(), "wrong").ListBatches(ctx, nil)
	require.Equal(t, "unauthorized", client.ProblemCode(err))
}
