package httpapi

import (
	"embed"
	"net/http"
)

//go:embed assets
var assets embed.FS

// docsHandler serves the API docs page: plain files in the binary that render
// /openapi.json in the browser, with no request leaving the host.
func docsHandler() http.Handler {
	page, err := assets.ReadFile("assets/docs.html")
	if err != nil {
		panic(err) // the file is embedded at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'")
		_, _ = w.Write(page)
	})
}
