package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store/sqlite"
)

// coupond audit on the default store: clean exits 0; an event left
// unpublished past the grace is a violation, printed with its id, exit 1.
func TestAuditCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	audit := func(args ...string) (int, string) {
		var out, errs bytes.Buffer
		code := run(context.Background(), append([]string{"audit", "-data-dir", dir}, args...), nil, &out, &errs)
		return code, out.String() + errs.String()
	}
	if code, out := audit(); code != 0 || !strings.Contains(out, "0 violations") {
		t.Fatalf("an empty store: exit %d\n%s", code, out)
	}

	// A claim made with no relay running: its event stays unpublished.
	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(dir, "coupond.db")})
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Config{Store: st, Engine: memory.New()})
	b, err := svc.CreateBatch(t.Context(), coupon.BatchSpec{Name: "audit", TotalQuantity: 5, PerUserLimit: 1,
		Validity: coupon.Validity{Days: 1}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Transition(t.Context(), b.ID, coupon.Publish); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Claim(t.Context(), service.ClaimRequest{BatchID: b.ID, Claimant: coupon.Claimant{UserID: "amy"}}); err != nil {
		t.Fatal(err)
	}
	svc.Close()
	_ = st.Close()

	if code, out := audit(); code != 0 {
		t.Fatalf("within the grace: exit %d\n%s", code, out)
	}
	time.Sleep(5 * time.Millisecond)
	code, out := audit("-grace", "1ms")
	if code != 1 || !strings.Contains(out, "VIOLATION outbox_unpublished") || !strings.Contains(out, "skipped engine_pool") {
		t.Fatalf("past the grace: exit %d\n%s", code, out)
	}
	if code, _ := audit("-grace", "nonsense"); code != 2 {
		t.Fatalf("a bad flag: exit %d, want 2", code)
	}
}
