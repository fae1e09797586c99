// Command chart draws the reports of `coupond loadgen -save` as one SVG
// chart of throughput and latency over each run:
//
//	go run ./bench/chart -title "claims" -o docs/benchmarks-claims.svg "bare handler=bare.json" "coupond=claim.json"
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/coupond/coupond/loadgen"
)

func main() {
	title := flag.String("title", "coupond", "the chart's title")
	out := flag.String("o", "", "the SVG file to write (default: standard output)")
	flag.Parse()
	var runs []loadgen.Labeled
	for _, arg := range flag.Args() {
		label, path, ok := strings.Cut(arg, "=")
		if !ok {
			fail(fmt.Errorf("%q: want label=report.json", arg))
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			fail(err)
		}
		var r loadgen.Report
		if err := json.Unmarshal(raw, &r); err != nil {
			fail(fmt.Errorf("%s: %w", path, err))
		}
		runs = append(runs, loadgen.Labeled{Label: label, Report: &r})
	}
	w := os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		w = f
	}
	if err := loadgen.Chart(w, *title, runs); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chart:", err)
	os.Exit(1)
}
