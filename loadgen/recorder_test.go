package loadgen

import (
	"testing"
	"time"
)

// Percentiles from the HDR histograms of several clients agree with the
// exact ones within the histogram's precision, per run and per second.
func TestRecorderPercentiles(t *testing.T) {
	a, b := newRecorder(), newRecorder()
	for i := 1; i <= 1000; i++ { // 1 ms … 1 s, half in each client; second 0 and second 5
		r := a
		if i%2 == 0 {
			r = b
		}
		at := time.Duration(0)
		if i > 900 {
			at = 5 * time.Second
		}
		r.record(at, time.Duration(i)*time.Millisecond, "ok")
	}
	b.record(0, 2*time.Minute, "timeout") // beyond the histogram: counted, kept out of the latencies
	rep := report("x", []*recorder{a, b, nil}, 10*time.Second)
	if rep.Requests != 1001 || rep.Outcomes["ok"] != 1000 || rep.Outcomes["timeout"] != 1 {
		t.Fatalf("counts: %d requests, outcomes %v", rep.Requests, rep.Outcomes)
	}
	near := func(name string, got, want time.Duration) {
		if d := got - want; d < -want/500 || d > want/500 {
			t.Errorf("%s = %v, want %v ± 0.2%%", name, got, want)
		}
	}
	near("p50", rep.P50, 500*time.Millisecond)
	near("p99", rep.P99, 990*time.Millisecond)
	near("p99.9", rep.P999, 999*time.Millisecond)
	// Each request counts in the second it ended: 900 in second 0, then
	// 99 in second 5 and the 1 s one in second 6.
	want := map[int]int64{0: 900, 5: 99, 6: 1}
	if len(rep.Series) != len(want) {
		t.Fatalf("series: %+v", rep.Series)
	}
	for _, p := range rep.Series {
		if p.Rate != want[p.Second] {
			t.Errorf("second %d: %d requests, want %d", p.Second, p.Rate, want[p.Second])
		}
	}
}
