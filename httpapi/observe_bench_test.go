package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coupond/coupond/guard"
	"github.com/coupond/coupond/telemetry"
)

// The cost of the observing middleware on a claim, against the bare
// handler: with metrics, the access log switch on (its logger discards, as
// in the benchmarks), shedding armed, and tracing off.
func BenchmarkObserverOnAClaim(b *testing.B) {
	body := []byte(`{"id":"01JD5Q9B2C4D6E8F0G1H3J5K7M","code":"D11-7K3M9Q2X4WZ"}`)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "POST /v1/batches/{id}/claims" // as the mux sets it
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	sw, _ := guard.NewSwitches(nil)
	observed := &observer{
		next: bare, metrics: telemetry.NewMetrics("bench"), log: slog.New(slog.DiscardHandler),
		accessLog: sw.Get(guard.SwitchAccessLog), maxClaims: 1024,
	}
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"observed", observed}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, "/v1/batches/01JD5Q6W3ZK8M2V4N7R9T1X3Y5/claims", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
