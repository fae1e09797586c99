package app_test

import (
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tagged reports whether the batch tags the product, as GET /v1/products/tags says.
func (c *client) tagged(product, batchID string) bool {
	c.t.Helper()
	r := c.must(200, "GET", "/v1/products/tags?ids="+product, nil)
	for _, tag := range r["items"].([]any)[0].(map[string]any)["tags"].([]any) {
		if tag.(map[string]any)["batch_id"] == batchID {
			return true
		}
	}
	return false
}

func (c *client) userClaims(user, status string) []any {
	c.t.Helper()
	q := ""
	if status != "" {
		q = "?status=" + status
	}
	return c.must(200, "GET", "/v1/users/"+user+"/claims"+q, nil)["items"].([]any)
}

func (c *client) taggedBatch(rules ...string) string {
	c.t.Helper()
	var rs []map[string]any
	for _, p := range rules {
		rs = append(rs, map[string]any{"ref_type": "product", "ref_id": p, "use_type": "include"})
	}
	b := c.must(201, "POST", "/v1/batches", map[string]any{
		"name": "tagged", "total_quantity": 5, "per_user_limit": 1, "merchant_id": "shop-q", "channel": "feed",
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 300}, "rules": rs,
	})
	id := b["id"].(string)
	c.must(200, "POST", "/v1/batches/"+id+"/publish", nil)
	return id
}

func (c *client) setSwitch(name string, on bool) {
	c.t.Helper()
	c.must(200, "PUT", "/v1/ops/switches/"+name, map[string]any{"enabled": on})
}

// TestQueriesOverHTTP: the default install (SQLite, memory engine, embedded
// NATS) serves "my coupons" with read-your-writes, badges, search, a CSV
// export, statistics live within seconds, and product tags that follow
// publish, pause, resume and stock-out; the stats and tagging switches stop
// and restart that work at run time.
func TestQueriesOverHTTP(t *testing.T) {
	a := boot(t, t.TempDir())
	c := newClient(t, a)
	id := c.taggedBatch("q-p1", "q-p2")
	require.Eventually(t, func() bool { return c.tagged("q-p1", id) }, 10*time.Second, 20*time.Millisecond, "tagged once published")

	// Read-your-writes over HTTP.
	require.Empty(t, c.userClaims("q-amy", ""))
	for i := range 3 {
		claim := c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": fmt.Sprint("q-u", i), "platform": "ios"})
		require.Len(t, c.userClaims(fmt.Sprint("q-u", i), "available"), 1, "listed at once")
		require.Equal(t, claim["id"], c.userClaims(fmt.Sprint("q-u", i), "")[0].(map[string]any)["id"])
	}
	badges := c.must(200, "GET", "/v1/users/q-u0/badges", nil)
	require.Equal(t, float64(1), badges["available"])

	// Search and export.
	found := c.must(200, "GET", "/v1/search/claims?batch_id="+id+"&channel=feed&limit=2", nil)
	require.Len(t, found["items"], 2)
	more := c.must(200, "GET", "/v1/search/claims?batch_id="+id+"&channel=feed&limit=2&cursor="+found["next_cursor"].(string), nil)
	require.Len(t, more["items"], 1)
	require.Len(t, c.must(200, "GET", "/v1/search/claims?user_id=q-u1&merchant_id=shop-q", nil)["items"], 1)
	require.Len(t, c.must(200, "GET", "/v1/search/codes?batch_id="+id+"&status=unclaimed", nil)["items"], 2)
	require.Equal(t, 422, c.do("GET", "/v1/search/claims?status=gone", nil).status)
	exp := c.do("GET", "/v1/search/claims.csv?batch_id="+id, nil)
	require.Equal(t, 200, exp.status, string(exp.raw))
	require.Contains(t, exp.header.Get("Content-Type"), "text/csv")
	rows, err := csv.NewReader(strings.NewReader(string(exp.raw))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4, "a header and three claims")
	require.Equal(t, "id", rows[0][0])

	// Statistics, live within seconds.
	require.Eventually(t, func() bool {
		s := c.must(200, "GET", "/v1/batches/"+id+"/stats", nil)
		return s["totals"].(map[string]any)["claimed"] == float64(3)
	}, 10*time.Second, 50*time.Millisecond)
	m := c.must(200, "GET", "/v1/merchants/shop-q/stats", nil)
	require.Equal(t, float64(3), m["totals"].(map[string]any)["claimed"])

	// The stats switch pauses the counting; turned on, it catches up.
	c.setSwitch("stats", false)
	time.Sleep(300 * time.Millisecond) // let a fetch in flight finish
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "q-u3", "platform": "web"})
	time.Sleep(time.Second)
	s := c.must(200, "GET", "/v1/batches/"+id+"/stats", nil)
	require.Equal(t, float64(3), s["totals"].(map[string]any)["claimed"], "not counted while off")
	c.setSwitch("stats", true)
	require.Eventually(t, func() bool {
		s := c.must(200, "GET", "/v1/batches/"+id+"/stats", nil)
		return s["totals"].(map[string]any)["claimed"] == float64(4)
	}, 10*time.Second, 50*time.Millisecond)

	// Pause removes the tags at once, resume restores them.
	c.must(200, "POST", "/v1/batches/"+id+"/pause", nil)
	require.Eventually(t, func() bool { return !c.tagged("q-p2", id) }, 5*time.Second, 10*time.Millisecond)
	c.must(200, "POST", "/v1/batches/"+id+"/resume", nil)
	require.Eventually(t, func() bool { return c.tagged("q-p2", id) }, 5*time.Second, 10*time.Millisecond)

	// With the tagging switch off, nothing retags; on again, it catches up.
	c.setSwitch("tagging", false)
	time.Sleep(300 * time.Millisecond)
	c.must(200, "POST", "/v1/batches/"+id+"/pause", nil)
	time.Sleep(time.Second)
	require.True(t, c.tagged("q-p1", id), "the tagger is off")
	c.setSwitch("tagging", true)
	require.Eventually(t, func() bool { return !c.tagged("q-p1", id) }, 5*time.Second, 10*time.Millisecond)
	c.must(200, "POST", "/v1/batches/"+id+"/resume", nil)
	require.Eventually(t, func() bool { return c.tagged("q-p1", id) }, 5*time.Second, 10*time.Millisecond)

	// The last code claimed: batch.stock_out, and the tags go.
	c.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "q-u4"})
	require.Eventually(t, func() bool { return !c.tagged("q-p1", id) }, 10*time.Second, 20*time.Millisecond, "stocked out: untagged")

	many := strings.Repeat("x,", 100) + "x"
	require.Equal(t, 422, c.do("GET", "/v1/products/tags?ids="+many, nil).status)
	// A wrong id is named by its place.
	r := c.do("GET", "/v1/products/tags?ids=ok-1,brand:x,ok-2,"+strings.Repeat("y", 200), nil)
	require.Equal(t, 422, r.status, r.raw)
	require.Contains(t, string(r.raw), `"query.ids[1]"`)
	require.Contains(t, string(r.raw), `"query.ids[3]"`)
	require.NotContains(t, string(r.raw), `ids[0]`)
	require.NotContains(t, string(r.raw), `ids[2]`)
}

// TestQueriesAcrossInstances: two instances on PostgreSQL, Redis and NATS.
// A claim made on one is listed by the other at once (the cache in Redis is
// shared and dropped by the claim), a redemption likewise; tags and
// statistics are the same from both.
func TestQueriesAcrossInstances(t *testing.T) {
	d := deploy(t, 2)
	a, b := newClient(t, d.apps[0]), newClient(t, d.apps[1])
	id := a.taggedBatch("x-p1")
	require.Eventually(t, func() bool { return b.tagged("x-p1", id) }, 10*time.Second, 20*time.Millisecond)

	require.Empty(t, b.userClaims("x-amy", ""), "cached on b: nothing")
	a.must(201, "POST", "/v1/batches/"+id+"/claims", map[string]any{"user_id": "x-amy"})
	require.Len(t, b.userClaims("x-amy", ""), 1, "b lists the claim made on a at once")
	claims := b.userClaims("x-amy", "available")
	require.Len(t, claims, 1)
	claimID := claims[0].(map[string]any)["id"].(string)
	b.must(201, "POST", "/v1/redemptions", map[string]any{
		"order_id": "x-o1", "user_id": "x-amy", "platform": "ios", "claim_ids": []string{claimID},
		"cart": map[string]any{"items": []map[string]any{{"id": "l1", "product_id": "x-p1", "merchant_id": "shop-q", "unit_price": 5000, "quantity": 1}}},
	})
	require.Equal(t, "locked", a.userClaims("x-amy", "")[0].(map[string]any)["status"], "a lists the reservation made on b at once")
	require.Eventually(t, func() bool {
		s := a.must(200, "GET", "/v1/batches/"+id+"/stats", nil)["totals"].(map[string]any)
		return s["claimed"] == float64(1) && s["reserved"] == float64(1)
	}, 10*time.Second, 50*time.Millisecond)
	b.must(200, "POST", "/v1/batches/"+id+"/pause", nil)
	require.Eventually(t, func() bool { return !a.tagged("x-p1", id) }, 10*time.Second, 20*time.Millisecond)
}
