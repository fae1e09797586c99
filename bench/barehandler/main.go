// Command barehandler is the yardstick of coupond's benchmarks: a bare Go
// HTTP handler that answers a claim request with a claim-sized JSON, doing
// no work. Whatever rate it reaches under the load generator is the most the
// machine's HTTP stack and the generator allow; coupond's figures are read
// as a ratio of it.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

// claim is a representative 201 body of POST /v1/batches/{id}/claims.
const claim = `{"id":"06F7Q9V6J5W3T8K2M4N1P0R9SA","batch_id":"06F7Q9T2B8C4D6E0F1G3H5J7KB","code":"7KQ2M9XH4TPCW","user_id":"lg-1","status":"available","amount":500,"valid_from":"2026-11-26T12:00:00.000001Z","valid_to":"2026-12-26T12:00:00.000001Z","claimed_at":"2026-11-26T12:00:00.000001Z","updated_at":"2026-11-26T12:00:00.000001Z","platform":"ios","batch_name":"loadgen","type":"cash"}` + "\n"

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/batches/{id}/claims", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, claim)
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
