package app_test

import (
	"testing"
	"time"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/worker"
)

// The archiver runs with the service, and "my coupons" takes history=true.
func TestArchiveWorkerAndHistoryParameter(t *testing.T) {
	t.Parallel()
	passes := make(chan error, 100)
	a := bootWith(t, func(c *config.Config) { c.Archive.After = 30 * 24 * time.Hour }, func(a *app.App) {
		a.Archive.Interval = 10 * time.Millisecond
		a.Archive.OnPass = func(_ worker.ArchivePass, err error) {
			select {
			case passes <- err:
			default:
			}
		}
	})
	c := newClient(t, a)
	id := c.publishedBatch(10, 2)
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "hist"})
	select {
	case err := <-passes:
		if err != nil {
			t.Fatalf("archive pass: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no archive pass")
	}
	for _, q := range []string{"", "?history=true", "?history=true&limit=1&status=available"} {
		list := c.must(200, "GET", "/v1/users/hist/claims"+q, nil)
		if items := list["items"].([]any); len(items) != 1 {
			t.Fatalf("%s: %d items, want 1", q, len(items))
		}
	}
}
