// Package loadgen drives a running coupond (or any server with the same
// claim endpoint) with flash-sale traffic and reports throughput, latency
// percentiles and outcomes by problem code.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run.
type Config struct {
	URL   string // base URL, e.g. http://127.0.0.1:8080
	Token string // bearer token
	// BatchID to claim from; empty: create and publish a batch of Total codes first.
	BatchID string
	Total   int64
	// Concurrency is the number of requests in flight; Duration how long to
	// run (or Requests, whichever ends first; 0 is no bound).
	Concurrency int
	Duration    time.Duration
	Requests    int64
	// UserPrefix names users: every claim comes from a new user, so the
	// per-user limit never refuses and the batch sells until it is empty.
	UserPrefix string
	// Progress receives a status line every second; nil for none.
	Progress io.Writer
}

// Report is the outcome of a run.
type Report struct {
	Target     string           `json:"target"`
	Requests   int64            `json:"requests"`
	Elapsed    time.Duration    `json:"elapsed_ns"`
	Throughput float64          `json:"throughput_rps"`
	Outcomes   map[string]int64 `json:"outcomes"`
	// Latency percentiles, exact over every request.
	P50, P90, P99, P999, Max time.Duration
	// Series holds one point per second: requests done and p99 in that second.
	Series []Point `json:"series"`
}

// Point is one second of a run.
type Point struct {
	Second int           `json:"second"`
	Rate   int64         `json:"rate"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
}

// Run drives the claim endpoint until the duration, request count or ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.UserPrefix == "" {
		cfg.UserPrefix = "lg-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency},
	}
	if cfg.BatchID == "" {
		id, err := createBatch(ctx, client, cfg)
		if err != nil {
			return nil, err
		}
		cfg.BatchID = id
	}
	url := cfg.URL + "/v1/batches/" + cfg.BatchID + "/claims"

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var (
		issued  atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		samples = make([][]sample, cfg.Concurrency)
	)
	start := time.Now()
	stopProgress := progress(cfg.Progress, start, &issued)
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sample
			body := make([]byte, 0, 128)
			for ctx.Err() == nil {
				n := issued.Add(1)
				if cfg.Requests > 0 && n > cfg.Requests {
					break
				}
				body = append(body[:0], `{"user_id":"`...)
				body = append(body, cfg.UserPrefix...)
				body = strconv.AppendInt(body, n, 10)
				body = append(body, `","platform":"ios"}`...)
				t0 := time.Now()
				outcome := claim(ctx, client, url, cfg.Token, body)
				if outcome == "" { // cancelled mid-request at the end of the run
					break
				}
				mine = append(mine, sample{at: t0.Sub(start), took: time.Since(t0), outcome: outcome})
			}
			mu.Lock()
			samples[w] = mine
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return report(cfg.URL, slices.Concat(samples...), elapsed), nil
}

type sample struct {
	at, took time.Duration
	outcome  string
}

func claim(ctx context.Context, c *http.Client, url, token string, body []byte) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		return "transport_error"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		return "created"
	}
	var p struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Code != "" {
		return p.Code
	}
	return "http_" + strconv.Itoa(resp.StatusCode)
}

func createBatch(ctx context.Context, c *http.Client, cfg Config) (string, error) {
	total := cfg.Total
	if total <= 0 {
		total = 1_000_000
	}
	// Full generation where it is allowed: the claims measured then do not
	// share the store with a replenisher writing chunks.
	generation := `"incremental"`
	if total <= 1_000_000 {
		generation = `"full"`
	}
	spec := fmt.Sprintf(`{"name":"loadgen","total_quantity":%d,"per_user_limit":1,"validity":{"days":30},"amount":{"type":"fixed","value":500},"generation":{"mode":%s}}`, total, generation)
	var b struct {
		ID string `json:"id"`
	}
	if err := call(ctx, c, cfg, "/v1/batches", spec, http.StatusCreated, &b); err != nil {
		return "", fmt.Errorf("create batch: %w", err)
	}
	if err := call(ctx, c, cfg, "/v1/batches/"+b.ID+"/publish", "", http.StatusOK, nil); err != nil {
		return "", fmt.Errorf("publish batch: %w", err)
	}
	return b.ID, nil
}

func call(ctx context.Context, c *http.Client, cfg Config, path, body string, want int, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // publishing generates every code
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	slow := &http.Client{Transport: c.Transport}
	resp, err := slow.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func progress(w io.Writer, start time.Time, issued *atomic.Int64) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprintln(w)
				return
			case <-t.C:
				n := issued.Load()
				fmt.Fprintf(w, "\r%6.0fs  %10d requests  %8d/s", time.Since(start).Seconds(), n, n-last)
				last = n
			}
		}
	}()
	return func() { close(done); <-finished }
}

func report(target string, ss []sample, elapsed time.Duration) *Report {
	r := &Report{Target: target, Requests: int64(len(ss)), Elapsed: elapsed, Outcomes: map[string]int64{}}
	if len(ss) == 0 {
		return r
	}
	r.Throughput = float64(len(ss)) / elapsed.Seconds()
	took := make([]time.Duration, len(ss))
	perSecond := map[int][]time.Duration{}
	for i, s := range ss {
		took[i] = s.took
		r.Outcomes[s.outcome]++
		sec := int((s.at + s.took) / time.Second)
		perSecond[sec] = append(perSecond[sec], s.took)
	}
	slices.Sort(took)
	r.P50, r.P90, r.P99, r.P999, r.Max = pct(took, 50), pct(took, 90), pct(took, 99), pct(took, 99.9), took[len(took)-1]
	for sec := 0; sec <= int(elapsed/time.Second); sec++ {
		ts := perSecond[sec]
		if len(ts) == 0 {
			continue
		}
		slices.Sort(ts)
		r.Series = append(r.Series, Point{Second: sec, Rate: int64(len(ts)), P50: pct(ts, 50), P99: pct(ts, 99)})
	}
	return r
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Format writes the report as text.
func (r *Report) Format(w io.Writer) {
	fmt.Fprintf(w, "target      %s\n", r.Target)
	fmt.Fprintf(w, "requests    %d in %.1fs\n", r.Requests, r.Elapsed.Seconds())
	fmt.Fprintf(w, "throughput  %.0f requests/s\n", r.Throughput)
	fmt.Fprintf(w, "latency     p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n",
		r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.P999.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	keys := make([]string, 0, len(r.Outcomes))
	for k := range r.Outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "outcome     %-16s %d\n", k, r.Outcomes[k])
	}
}

// RowHeader is the header of the markdown table that Row writes lines of.
const RowHeader = "| run | requests/s | p50 | p90 | p99 | p99.9 | outcomes |\n|---|---:|---:|---:|---:|---:|---|\n"

// Row writes the report as one markdown table row.
func (r *Report) Row(w io.Writer, label string) {
	keys := make([]string, 0, len(r.Outcomes))
	for k := range r.Outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	outcomes := ""
	for i, k := range keys {
		if i > 0 {
			outcomes += ", "
		}
		outcomes += fmt.Sprintf("%s %d", k, r.Outcomes[k])
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s |\n", label, r.Throughput, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.P999), outcomes)
}
