package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coupond/coupond/console"
)

// TestServesItsOwnFiles: /console redirects to /console/, which serves the
// page with a policy that admits only the console's own files, and every
// file the page uses is in the binary.
func TestServesItsOwnFiles(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("GET /console", console.Handler())
	mux.Handle("GET /console/", console.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noRedirect.Get(srv.URL + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("/console: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	get := func(path string) (string, http.Header) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return string(body), resp.Header
	}
	page, h := get("/console/")
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy: %q", csp)
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(page, -1) {
		if strings.HasPrefix(ref[1], "/") || strings.HasPrefix(ref[1], "data:") {
			continue // the API docs link and the empty icon
		}
		body, h := get("/console/" + ref[1])
		if body == "" || h.Get("Content-Type") == "" {
			t.Errorf("%s: empty", ref[1])
		}
	}
	if _, h := get("/console/console.js"); !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Errorf("console.js served as %q: browsers refuse a module of another type", h.Get("Content-Type"))
	}
}

// TestWorksOffline: no file of the console refers to another host.
func TestWorksOffline(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("static", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("static files: %v %v", files, err)
	}
	url := regexp.MustCompile(`(?:https?:)?//[a-zA-Z0-9.-]+\.[a-z]{2,}`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range url.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" { // the SVG namespace, a name and not a fetch
				t.Errorf("%s refers to %s: the console must work offline", f, u)
			}
		}
	}
}
