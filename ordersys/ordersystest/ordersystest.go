// Package ordersystest is a fake order system for tests: a real HTTP server
// on 127.0.0.1 serving the order-state endpoint, whose orders and failures a
// test sets.
package ordersystest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Server is a fake order system. Its endpoint is URL() + "/orders/{order_id}".
type Server struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses map[string]string
	down     bool
	asked    map[string]int
}

// New starts a fake order system, closed when t ends.
func New(t testing.TB) *Server {
	s := &Server{statuses: map[string]string{}, asked: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		s.mu.Lock()
		s.asked[id]++
		down, status, ok := s.down, s.statuses[id], false
		if _, known := s.statuses[id]; known {
			ok = true
		}
		s.mu.Unlock()
		switch {
		case down:
			http.Error(w, "order system down", http.StatusServiceUnavailable)
		case !ok:
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"order_id": id, "status": status, "currency": "CNY"})
		}
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// Endpoint is the order-state endpoint template.
func (s *Server) Endpoint() string { return s.srv.URL + "/orders/{order_id}" }

// Set gives an order a status (paid, cancelled, pending, refunded, …).
func (s *Server) Set(orderID, status string) {
	s.mu.Lock()
	s.statuses[orderID] = status
	s.mu.Unlock()
}

// Down makes every request fail with 503 (true) or answer again (false).
func (s *Server) Down(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Asked returns how many requests asked about an order.
func (s *Server) Asked(orderID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[orderID]
}
