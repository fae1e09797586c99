package loadgen

import (
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The chart is well-formed SVG with one legend entry and three lines per
// run, and its first run's rate line climbs where the rate does.
func TestChart(t *testing.T) {
	mk := func(rates ...int64) *Report {
		r := &Report{Throughput: 1234, P50: time.Millisecond, P99: 9 * time.Millisecond}
		for i, v := range rates {
			r.Series = append(r.Series, Point{Second: i + 1, Rate: v, P50: time.Duration(i+1) * time.Millisecond, P99: time.Duration(i+1) * 10 * time.Millisecond})
		}
		return r
	}
	var b strings.Builder
	if err := Chart(&b, "claims <&> queries", []Labeled{{"bare", mk(100, 2000, 3000)}, {"coupond", mk(50, 60)}}); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("not XML: %v\n%s", err, svg)
	}
	if n := strings.Count(svg, "<polyline"); n != 6 {
		t.Fatalf("%d lines, want 6", n)
	}
	for _, want := range []string{"claims &lt;&amp;&gt; queries", "bare — 1.2k req/s", "coupond — 1.2k req/s", ">5.0k<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %q", want)
		}
	}
	// Points of the first rate line: y falls (the line climbs) as the rate rises.
	i := strings.Index(svg, `points="`) + len(`points="`)
	pts := strings.Fields(svg[i : i+strings.Index(svg[i:], `"`)])
	if len(pts) != 3 || !(y(t, pts[0]) > y(t, pts[1]) && y(t, pts[1]) > y(t, pts[2])) {
		t.Fatalf("rate line %v does not climb", pts)
	}
}

func y(t *testing.T, pt string) float64 {
	var x, y float64
	if _, err := fmt.Sscanf(pt, "%f,%f", &x, &y); err != nil {
		t.Fatal(err)
	}
	return y
}
