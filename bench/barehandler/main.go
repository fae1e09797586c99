// Command barehandler is the yardstick of coupond's benchmarks: a bare Go
// HTTP handler that answers a claim request with a claim-sized JSON, a
// "my coupons" query with a page of three coupons, badges, and a product
// tags query with tags-sized JSON, doing no work. Whatever rate it reaches
// under the load generator is the most the machine's HTTP stack and the
// generator allow; coupond's figures are read as a ratio of it.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strings"
)

// claim is a representative 201 body of POST /v1/batches/{id}/claims.
const claim = `{"id":"06F7Q9V6J5W3T8K2M4N1P0R9SA","batch_id":"06F7Q9T2B8C4D6E0F1G3H5J7KB","code":"7KQ2M9XH4TPCW","user_id":"lg-1","status":"available","amount":500,"valid_from":"2026-11-26T12:00:00.000001Z","valid_to":"2026-12-26T12:00:00.000001Z","claimed_at":"2026-11-26T12:00:00.000001Z","updated_at":"2026-11-26T12:00:00.000001Z","platform":"ios","batch_name":"loadgen","type":"cash"}`

// claims is a representative 200 body of GET /v1/users/{id}/claims: three coupons.
var claims = `{"items":[` + strings.Repeat(claim+",", 2) + claim + `]}` + "\n"

const badges = `{"available":3,"expiring_soon":0,"expiring_soon_seconds":259200}` + "\n"

// tag is one product's badge as GET /v1/products/tags answers it.
const tag = `{"id":"p1","tags":[{"batch_id":"06F7Q9T2B8C4D6E0F1G3H5J7KB","name":"loadgen","type":"cash","amount":500}]}`

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/batches/{id}/claims", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, claim+"\n")
	})
	mux.HandleFunc("GET /v1/users/{id}/claims", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, claims)
	})
	mux.HandleFunc("GET /v1/users/{id}/badges", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, badges)
	})
	mux.HandleFunc("GET /v1/products/tags", func(w http.ResponseWriter, r *http.Request) {
		n := strings.Count(r.URL.Query().Get("ids"), ",") + 1
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[`+strings.Repeat(tag+",", n-1)+tag+"]}\n")
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
