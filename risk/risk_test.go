package risk_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/risk"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	rs := &risk.RuleSet{Name: "r", Rules: []risk.Rule{
		{Signal: risk.DeviceUsers, Window: 3600, Above: 2, Action: risk.Deny},
		{Signal: risk.IPClaims, Window: 60, Above: 10, Action: risk.Challenge},
		{Signal: risk.AccountAge, Below: 86400, Action: risk.Challenge},
		{Signal: risk.NoDevice, Action: risk.Challenge},
	}}
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
	du := risk.Window{Signal: risk.DeviceUsers, Window: time.Hour}
	ic := risk.Window{Signal: risk.IPClaims, Window: time.Minute}
	if w := rs.Windows(true, false); len(w) != 1 || w[0] != du {
		t.Fatalf("windows with a device only: %v", w)
	}
	for _, tc := range []struct {
		name string
		f    risk.Facts
		want risk.Action
	}{
		{"quiet", risk.Facts{HasDevice: true, HasIP: true, AccountAge: 48 * time.Hour, Counts: map[risk.Window]int64{du: 2, ic: 10}}, risk.Allow},
		{"busy ip", risk.Facts{HasDevice: true, HasIP: true, AccountAge: 48 * time.Hour, Counts: map[risk.Window]int64{du: 1, ic: 11}}, risk.Challenge},
		{"farm device beats the challenge", risk.Facts{HasDevice: true, HasIP: true, AccountAge: time.Hour, Counts: map[risk.Window]int64{du: 3, ic: 11}}, risk.Deny},
		{"unknown age is young", risk.Facts{HasDevice: true, AccountAge: -1, Counts: map[risk.Window]int64{}}, risk.Challenge},
		{"no device", risk.Facts{AccountAge: 48 * time.Hour, Counts: map[risk.Window]int64{}}, risk.Challenge},
	} {
		d := rs.Evaluate(tc.f)
		if d.Action != tc.want || (d.Action != risk.Allow && d.Reason() == "") {
			t.Errorf("%s: %s (%s), want %s", tc.name, d.Action, d.Reason(), tc.want)
		}
	}
	bad := &risk.RuleSet{Name: "Bad Name", Rules: []risk.Rule{{Signal: "shoe_size", Action: "maybe"}, {Signal: risk.AccountAge, Window: 5, Action: risk.Deny}}}
	if err := bad.Validate(); err == nil || coupon.ErrorCode(err) != coupon.CodeInvalid {
		t.Fatalf("bad rule set: %v", err)
	}
}

// The external service's verdicts are read; anything else within the
// timeout — slowness, a 500, an unknown action — is an unavailable error.
func TestExternal(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"user_id":"slow"`):
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		case strings.Contains(string(body), `"user_id":"broken"`):
			w.WriteHeader(500)
		case strings.Contains(string(body), `"user_id":"odd"`):
			_, _ = io.WriteString(w, `{"action":"maybe"}`)
		default:
			_, _ = io.WriteString(w, `{"action":"deny","reason":"farm"}`)
		}
	}))
	t.Cleanup(srv.Close)
	x := risk.NewExternal(risk.ExternalConfig{URL: srv.URL, Timeout: 50 * time.Millisecond})
	v, err := x.Assess(context.Background(), risk.Assessment{UserID: "mallory"})
	if err != nil || v.Action != risk.Deny || v.Reason != "farm" {
		t.Fatalf("verdict: %+v, %v", v, err)
	}
	for _, user := range []string{"slow", "broken", "odd"} {
		start := time.Now()
		_, err := x.Assess(context.Background(), risk.Assessment{UserID: user})
		if !errors.Is(err, risk.ErrExternal) || !errors.Is(err, coupon.ErrUnavailable) {
			t.Errorf("%s: %v", user, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v with a 50ms timeout", user, d)
		}
	}
}
