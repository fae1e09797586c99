// Package loadgen drives a running coupond (or any server with the same
// endpoints) with flash-sale traffic — claims, "my coupons" queries or
// product tag lookups — and reports throughput, latency percentiles and
// outcomes by problem code.
package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/coupond/coupond/auth"
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
	// Mode is claim (the default), query or tags.
	//
	// query: GET /v1/users/{user}/claims?status=available for Users users
	// in turn, who each claimed ClaimsPerUser coupons before the run (of
	// BatchID, or of a batch it creates), and GET .../badges every tenth
	// request. With BatchID set, the users are taken to exist already and
	// nothing is claimed (-batch bare measures the bare handler).
	//
	// tags: GET /v1/products/tags?ids=… naming IDs products each, of
	// Products products that a batch it creates tags (none with BatchID set).
	Mode          string
	Users         int // query: users; default 1000
	ClaimsPerUser int // query: claims each user makes before the run; default 3
	Products      int // tags: products the batch tags; default 1000
	IDs           int // tags: products a request names; default 20
	// KeyID and KeySecret, if set, sign the measured requests with that
	// API key (an app key that must sign); Token still sets the run up.
	KeyID, KeySecret string
	// Rate, if positive, paces the requests to this many per second in all
	// (an open-loop run, for latency at a given load); 0 is as fast as the
	// server answers.
	Rate float64
}

// Report is the outcome of a run.
type Report struct {
	Target     string           `json:"target"`
	Requests   int64            `json:"requests"`
	Elapsed    time.Duration    `json:"elapsed_ns"`
	Throughput float64          `json:"throughput_rps"`
	Outcomes   map[string]int64 `json:"outcomes"`
	// Latency percentiles over every request, from an HDR histogram
	// (microseconds, 3 significant digits).
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

// Run drives the endpoint of cfg.Mode until the duration, request count
// or ctx ends.
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
	next, err := prepare(ctx, client, &cfg)
	if err != nil {
		return nil, err
	}

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var (
		issued atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		recs   = make([]*recorder, cfg.Concurrency)
	)
	start := time.Now()
	stopProgress := progress(cfg.Progress, start, &issued)
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := newRecorder()
			buf := make([]byte, 0, 256)
			for ctx.Err() == nil {
				n := issued.Add(1)
				if cfg.Requests > 0 && n > cfg.Requests {
					break
				}
				if cfg.Rate > 0 {
					// Request n is due at n/Rate seconds from the start.
					due := start.Add(time.Duration(float64(n-1) / cfg.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
						}
						if ctx.Err() != nil {
							break
						}
					}
				}
				var r request
				buf, r = next(buf[:0], n)
				for req := &r; req != nil; req = req.then {
					t0 := time.Now()
					outcome := do(ctx, client, cfg, *req)
					if outcome == "" { // cancelled mid-request at the end of the run
						break
					}
					mine.record(t0.Sub(start), time.Since(t0), outcome)
					if !succeeded(outcome) {
						break
					}
				}
			}
			mu.Lock()
			recs[w] = mine
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return report(cfg.URL, recs, elapsed), nil
}

// request is one request of a run.
type request struct {
	kind        string // mixed runs: what the request is, prefixed to its outcome
	method, url string
	body        []byte
	want        int
	then        *request // sent next by the same client when this one succeeds
}

// prepare creates what the run needs and returns the maker of its n-th
// request, which may build in buf.
func prepare(ctx context.Context, c *http.Client, cfg *Config) (func(buf []byte, n int64) ([]byte, request), error) {
	switch cfg.Mode {
	case "", "claim":
		if cfg.BatchID == "" {
			id, err := createBatch(ctx, c, *cfg, cfg.Total, "")
			if err != nil {
				return nil, err
			}
			cfg.BatchID = id
		}
		url := cfg.URL + "/v1/batches/" + cfg.BatchID + "/claims"
		return func(buf []byte, n int64) ([]byte, request) {
			buf = append(buf, `{"user_id":"`...)
			buf = append(buf, cfg.UserPrefix...)
			buf = strconv.AppendInt(buf, n, 10)
			buf = append(buf, `","platform":"ios"}`...)
			return buf, request{method: http.MethodPost, url: url, body: buf, want: http.StatusCreated}
		}, nil
	case "query":
		users := cmp.Or(cfg.Users, 1000)
		per := cmp.Or(cfg.ClaimsPerUser, 3)
		if cfg.BatchID == "" {
			if err := claimForUsers(ctx, c, *cfg, users, per); err != nil {
				return nil, err
			}
		}
		base := cfg.URL + "/v1/users/" + cfg.UserPrefix
		return func(buf []byte, n int64) ([]byte, request) {
			buf = append(buf, base...)
			buf = strconv.AppendInt(buf, n%int64(users), 10)
			if n%10 == 0 {
				buf = append(buf, "/badges"...)
			} else {
				buf = append(buf, "/claims?status=available"...)
			}
			return buf, request{method: http.MethodGet, url: string(buf), want: http.StatusOK}
		}, nil
	case "mixed":
		return prepareMixed(ctx, c, cfg)
	case "tags":
		products := cmp.Or(cfg.Products, 1000)
		ids := min(cmp.Or(cfg.IDs, 20), 100)
		if cfg.BatchID == "" {
			if err := tagProducts(ctx, c, *cfg, products); err != nil {
				return nil, err
			}
		}
		base := cfg.URL + "/v1/products/tags?ids="
		return func(buf []byte, n int64) ([]byte, request) {
			buf = append(buf, base...)
			first := int(n) * ids
			for i := range ids {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, 'p')
				buf = strconv.AppendInt(buf, int64((first+i)%products), 10)
			}
			return buf, request{method: http.MethodGet, url: string(buf), want: http.StatusOK}
		}, nil
	}
	return nil, fmt.Errorf("loadgen: unknown mode %q (claim, query, tags, mixed)", cfg.Mode)
}

// claimForUsers creates a batch and has every user claim per coupons of it.
func claimForUsers(ctx context.Context, c *http.Client, cfg Config, users, per int) error {
	id, err := createBatch(ctx, c, cfg, int64(users*per), fmt.Sprintf(`"per_user_limit":%d`, per))
	if err != nil {
		return err
	}
	work := make(chan int)
	errs := make(chan error, cfg.Concurrency)
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				body := fmt.Sprintf(`{"user_id":"%s%d","platform":"ios"}`, cfg.UserPrefix, u)
				for range per {
					if err := call(ctx, c, cfg, "/v1/batches/"+id+"/claims", body, http.StatusCreated, nil); err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}
		}()
	}
	for u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("claim for the query run: %w", err)
	default:
		return nil
	}
}

// tagProducts creates and publishes a batch whose rules include products
// p0 … p<n-1>, and waits until its tags show.
func tagProducts(ctx context.Context, c *http.Client, cfg Config, n int) error {
	rules := make([]string, min(n, 1000))
	for i := range rules {
		rules[i] = fmt.Sprintf(`{"ref_type":"product","ref_id":"p%d","use_type":"include"}`, i)
	}
	if _, err := createBatch(ctx, c, cfg, 1000, `"rules":[`+strings.Join(rules, ",")+`]`); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL+"/v1/products/tags?ids=p0", nil)
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
		resp, err := c.Do(req)
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(raw), "batch_id") {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the batch's product tags did not appear within 30s (is the tagging switch off?)")
}

func do(ctx context.Context, c *http.Client, cfg Config, r request) string {
	outcome := send(ctx, c, cfg, r)
	if r.kind != "" && outcome != "" {
		return r.kind + " " + outcome
	}
	return outcome
}

// succeeded says an outcome (of a kind or not) is a success.
func succeeded(outcome string) bool {
	_, o, _ := strings.Cut(outcome, " ")
	if o == "" {
		o = outcome
	}
	return o == "ok" || o == "created"
}

// send sends one request, signed with the app key when the run has one,
// and returns its outcome: ok, created, a problem's code, http_<status>,
// transport_error, or "" when the run ended during the request.
func send(ctx context.Context, c *http.Client, cfg Config, r request) string {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, _ := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cfg.KeyID != "" {
		if err := auth.SignRequest(req, cfg.KeyID, cfg.KeySecret, time.Now()); err != nil {
			return "sign_error"
		}
	} else {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		return "transport_error"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == r.want {
		if r.want == http.StatusCreated {
			return "created"
		}
		return "ok"
	}
	var p struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Code != "" {
		return p.Code
	}
	return "http_" + strconv.Itoa(resp.StatusCode)
}

func createBatch(ctx context.Context, c *http.Client, cfg Config, total int64, extra string) (string, error) {
	if total <= 0 {
		total = 1_000_000
	}
	// Full generation where it is allowed: the claims measured then do not
	// share the store with a replenisher writing chunks.
	generation := `"incremental"`
	if total <= 1_000_000 {
		generation = `"full"`
	}
	if extra == "" {
		extra = `"per_user_limit":1`
	}
	spec := fmt.Sprintf(`{"name":"loadgen","total_quantity":%d,%s,"validity":{"days":30},"amount":{"type":"fixed","value":500},"generation":{"mode":%s}}`, total, extra, generation)
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

// recorder keeps one client's latencies in HDR histograms (1 µs to 1 min,
// 3 significant digits: a few tens of kilobytes however long the run),
// one for the whole run and one per second, and counts outcomes.
type recorder struct {
	all       *hdrhistogram.Histogram
	perSecond []*hdrhistogram.Histogram
	outcomes  map[string]int64
	n         int64
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

func newRecorder() *recorder { return &recorder{all: newHistogram(), outcomes: map[string]int64{}} }

// record adds a request that started at `at` into the run and took `took`;
// it counts in the second it ended.
func (r *recorder) record(at, took time.Duration, outcome string) {
	us := max(int64(took/time.Microsecond), 1)
	_ = r.all.RecordValue(us) // values past the highest are refused: a minute-long request is reported as max
	sec := int((at + took) / time.Second)
	for len(r.perSecond) <= sec {
		r.perSecond = append(r.perSecond, nil)
	}
	if r.perSecond[sec] == nil {
		r.perSecond[sec] = newHistogram()
	}
	_ = r.perSecond[sec].RecordValue(us)
	r.outcomes[outcome]++
	r.n++
}

func report(target string, recs []*recorder, elapsed time.Duration) *Report {
	r := &Report{Target: target, Elapsed: elapsed, Outcomes: map[string]int64{}}
	all := newHistogram()
	var seconds []*hdrhistogram.Histogram
	for _, rec := range recs {
		if rec == nil {
			continue
		}
		r.Requests += rec.n
		for o, n := range rec.outcomes {
			r.Outcomes[o] += n
		}
		all.Merge(rec.all)
		for sec, h := range rec.perSecond {
			if h == nil {
				continue
			}
			for len(seconds) <= sec {
				seconds = append(seconds, nil)
			}
			if seconds[sec] == nil {
				seconds[sec] = newHistogram()
			}
			seconds[sec].Merge(h)
		}
	}
	if r.Requests == 0 {
		return r
	}
	r.Throughput = float64(r.Requests) / elapsed.Seconds()
	us := func(h *hdrhistogram.Histogram, q float64) time.Duration {
		return time.Duration(h.ValueAtQuantile(q)) * time.Microsecond
	}
	r.P50, r.P90, r.P99, r.P999 = us(all, 50), us(all, 90), us(all, 99), us(all, 99.9)
	r.Max = time.Duration(all.Max()) * time.Microsecond
	for sec, h := range seconds {
		if h == nil || h.TotalCount() == 0 {
			continue
		}
		r.Series = append(r.Series, Point{Second: sec, Rate: h.TotalCount(), P50: us(h, 50), P99: us(h, 99)})
	}
	return r
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
