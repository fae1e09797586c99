package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	api "github.com/coupond/coupond/client"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/coupon"
)

// TestImportAndGrantCommands runs `coupond import` and `coupond grant`
// against a running coupond: the report, the exit statuses, the progress.
func TestImportAndGrantCommands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "cli-token", ShutdownTimeout: 10 * time.Second}
	cfg.SQLite.Synchronous = "normal"
	a := app.New(cfg, slog.New(slog.DiscardHandler), io.Discard)
	a.Distribution.JobInterval = 20 * time.Millisecond
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	environ := []string{"COUPOND_URL=" + a.URL(), "COUPOND_ADMIN_TOKEN=cli-token"}
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, environ, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	s := coupon.BatchSpec{Name: "partner", TotalQuantity: 10, PerUserLimit: 1, Validity: coupon.Validity{Days: 7},
		Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500}, BatchOptions: coupon.BatchOptions{Source: coupon.SourceExternal}}
	v, err := a.Service.CreateBatch(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Transition(ctx, v.ID, coupon.Publish); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "codes.csv")
	if err := os.WriteFile(file, []byte("K-1\nK-2,700\nK-1\nK 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cmd("import", "-batch", v.ID, file)
	if code != exitRefused || !strings.Contains(out, "4 lines: 2 imported, 0 imported before, 2 refused; the batch holds 2 codes") ||
		!strings.Contains(out, "line 3: duplicate: duplicate of line 1") || !strings.Contains(out, "line 4: malformed:") ||
		!strings.Contains(errOut, "sent 4 lines") {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = cmd("import", "-batch", v.ID, file)
	if code != exitRefused || !strings.Contains(out, "0 imported, 2 imported before, 2 refused") {
		t.Fatalf("import again: exit %d\n%s", code, out)
	}

	code, out, errOut = cmd("grant", "-batch", v.ID, "-user", "amy", "-key", "k-1")
	if code != exitOK || !strings.Contains(out, `"user_id": "amy"`) {
		t.Fatalf("grant: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = cmd("grant", "-batch", v.ID, "-user", "amy", "-key", "k-1")
	if code != exitOK || !strings.Contains(errOut, "granted before with this key") {
		t.Fatalf("grant again: exit %d\n%s", code, errOut)
	}

	list := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(list, []byte("amy\nbob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cmd("grant", "-batch", v.ID, "-users", list, "-every", "20ms")
	if code != exitRefused || !strings.Contains(out, "1 granted, 1 failed of 2") ||
		!strings.Contains(out, "line 1: amy: limit_reached:") || !strings.Contains(errOut, "queued: 2 users") {
		t.Fatalf("grant list: exit %d\n%s\n%s", code, out, errOut)
	}
	cl := api.New(a.URL(), "cli-token")
	cs, err := cl.ListUserClaims(ctx, "bob", nil)
	if err != nil || len(cs.Items) != 1 || cs.Items[0].Channel != "grant_job" {
		t.Fatalf("bob's claims: %+v, %v", cs, err)
	}
	if code, _, _ := cmd("grant", "-batch", v.ID); code != exitUsage {
		t.Fatalf("grant without a user: exit %d", code)
	}
}
