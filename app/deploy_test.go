package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Metrics not built yet, which the alerts and docs name already.
var placeholderMetrics = []string{}

// The dashboard and the alerts use only metrics coupond has (or the
// placeholders), and docs/operations.md describes every one.
func TestDeployUsesRealMetrics(t *testing.T) {
	t.Parallel()
	a := bootWith(t, nil, nil)
	have := a.Metrics.Names()
	known := append(slices.Clone(have), placeholderMetrics...)
	name := regexp.MustCompile(`coupond_[a-z_]+`)
	base := func(m string) string {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && slices.Contains(known, b) {
				return b
			}
		}
		return m
	}
	files, err := filepath.Glob("../deploy/*/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy files: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		for _, m := range name.FindAllString(string(raw), -1) {
			if !slices.Contains(known, base(m)) {
				t.Errorf("%s uses %s, which coupond does not have", f, m)
			}
		}
	}
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range have {
		if !strings.Contains(string(ops), "`"+m+"`") {
			t.Errorf("docs/operations.md does not describe %s", m)
		}
	}
	for _, m := range name.FindAllString(string(ops), -1) {
		if !slices.Contains(known, base(m)) && m != "coupond_" {
			t.Errorf("docs/operations.md names %s, which coupond does not have", m)
		}
	}
}
