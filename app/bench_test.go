package app_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkHTTPClaim is the whole claim path over HTTP on the embedded
// default: HTTP parsing and validation, the engine step, the group-committed
// SQLite transaction with its outbox row, and the JSON answer.
func BenchmarkHTTPClaim(b *testing.B) {
	a := boot(&testing.T{}, b.TempDir())
	defer a.Close()
	c := newClient(&testing.T{}, a)
	id := c.publishedBatch(b.N+1000, 1)
	url := a.URL() + "/v1/batches/" + id + "/claims"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	var n atomic.Int64
	b.SetParallelism(32) // many clients in flight, as in a flash sale
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := []byte(`{"user_id":"bench-` + strconv.FormatInt(n.Add(1), 10) + `","platform":"ios"}`)
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+a.AdminToken())
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}
