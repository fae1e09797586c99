package loadgen

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Labeled is a run with the name its line gets in a chart.
type Labeled struct {
	Label  string
	Report *Report
}

// Chart draws runs over time as an SVG image: a panel of requests per
// second, and one of p50 (dashed) and p99 latency per second on a
// logarithmic scale, one colour per run. The image needs nothing to show
// but a browser, and reads well beside the table of the same runs.
func Chart(w io.Writer, title string, runs []Labeled) error {
	const (
		width, panelH   = 900, 260
		left, right     = 70, 20
		top, gap, below = 40, 60, 30
	)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}
	seconds, maxRate := 1, int64(1)
	minLat, maxLat := time.Duration(math.MaxInt64), time.Duration(1)
	for _, r := range runs {
		seconds = max(seconds, len(r.Report.Series))
		for _, p := range r.Report.Series {
			maxRate = max(maxRate, p.Rate)
			for _, l := range []time.Duration{p.P50, p.P99} {
				if l > 0 {
					minLat, maxLat = min(minLat, l), max(maxLat, l)
				}
			}
		}
	}
	if minLat > maxLat {
		minLat = maxLat
	}
	legendH := 18 * len(runs)
	height := top + 2*panelH + gap + below + legendH
	plotW := float64(width - left - right)
	x := func(second int) float64 { return float64(left) + plotW*float64(second)/float64(max(seconds-1, 1)) }
	rateTop := niceCeil(float64(maxRate))
	yRate := func(v int64) float64 { return float64(top) + panelH*(1-float64(v)/rateTop) }
	latLo, latHi := math.Log10(float64(minLat)), math.Log10(float64(maxLat))
	latLo, latHi = math.Floor(latLo), math.Ceil(latHi)
	if latHi == latLo {
		latHi++
	}
	latTop := float64(top + panelH + gap)
	yLat := func(d time.Duration) float64 {
		return latTop + panelH*(1-(math.Log10(float64(max(d, 1)))-latLo)/(latHi-latLo))
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#fff"/>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Axes and grid lines.
	for i := 0; i <= 4; i++ {
		v := rateTop * float64(i) / 4
		y := yRate(int64(v))
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, width-right, y, y, left-6, y+4, human(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">requests per second</text>`+"\n", left, top-6)
	for e := latLo; e <= latHi; e++ {
		d := time.Duration(math.Pow(10, e))
		y := yLat(d)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, width-right, y, y, left-6, y+4, d)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.0f">latency per second: p99 (solid), p50 (dashed), log scale</text>`+"\n", left, latTop-6)
	axisY := int(latTop) + panelH + 16
	for s := 0; s < seconds; s += max(1, seconds/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n", x(s), axisY, s+1)
	}
	// One line per run and series.
	for i, r := range runs {
		c := colors[i%len(colors)]
		line := func(y func(Point) (float64, bool), dash string) {
			var pts []string
			for j, p := range r.Report.Series {
				if v, ok := y(p); ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j), v))
				}
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", c, dash, strings.Join(pts, " "))
			}
		}
		line(func(p Point) (float64, bool) { return yRate(p.Rate), true }, "")
		line(func(p Point) (float64, bool) { return yLat(p.P99), p.P99 > 0 }, "")
		line(func(p Point) (float64, bool) { return yLat(p.P50), p.P50 > 0 }, ` stroke-dasharray="5,4"`)
		ly := axisY + 14 + 18*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/><text x="%d" y="%d">%s — %s req/s, p50 %s, p99 %s</text>`+"\n",
			left, ly-4, c, left+20, ly, html.EscapeString(r.Label), human(r.Report.Throughput), r.Report.P50.Round(10*time.Microsecond),
			r.Report.P99.Round(10*time.Microsecond))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
