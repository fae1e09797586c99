package app_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/coupond/coupond/app"
)

// BenchmarkHTTPClaim is the whole claim path over HTTP on the embedded
// default: HTTP parsing and validation, the engine step, the group-committed
// SQLite transaction with its outbox row, and the JSON answer.
func BenchmarkHTTPClaim(b *testing.B) {
	a := boot(&testing.T{}, b.TempDir())
	defer a.Close()
	c := newClient(&testing.T{}, a)
	id := c.publishedBatch(b.N+1000, 1)
	httpLoad(b, http.StatusCreated, "claims", claimRequest(a, id))
}

// claimRequest makes the n-th claim of the batch, each a new user's, with
// the bootstrap token.
func claimRequest(a *app.App, batchID string) func(n int64) *http.Request {
	url := a.URL() + "/v1/batches/" + batchID + "/claims"
	return func(n int64) *http.Request {
		body := []byte(`{"user_id":"bench-` + strconv.FormatInt(n, 10) + `","platform":"ios"}`)
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		return req
	}
}

// httpLoad sends b.N requests, the n-th made by req(n) for n from 1, from
// 32 concurrent clients (many in flight, as in a flash sale); each must
// answer want. It reports what per second, and the process's CPU time per
// request (service and clients, both in this process), which depends less
// than throughput on what else the machine runs.
func httpLoad(b *testing.B, want int, what string, req func(n int64) *http.Request) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	var n atomic.Int64
	b.SetParallelism(32)
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Do(req(n.Add(1)))
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), what+"/s")
	if cpu >= 0 {
		b.ReportMetric(float64(processCPU()-cpu)/1e3/float64(b.N), "cpu-µs/op")
	}
}
