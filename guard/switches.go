package guard

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/coupond/coupond/telemetry"
)

// Switch turns one kind of non-essential work on or off at run time.
type Switch struct {
	Name        string
	Description string
	on          atomic.Bool
	metrics     *telemetry.Metrics
}

// On reports whether the work may run; it costs one atomic load.
func (s *Switch) On() bool { return s != nil && s.on.Load() }

// Set turns the work on or off.
func (s *Switch) Set(on bool) {
	s.on.Store(on)
	s.metrics.Switch(s.Name, on)
}

// Names of the switches every coupond has.
const (
	// SwitchBatchMetrics: the per-batch metrics (pool depth, claimed, the
	// reconciler's backlog) and the outbox lag, read from the engine and the
	// store at every scrape.
	SwitchBatchMetrics = "batch_metrics"
	// SwitchAccessLog: one log line per HTTP request.
	SwitchAccessLog = "access_log"
	// SwitchStats, SwitchTagging and SwitchRiskScoring are for the
	// statistics, tagging and risk-scoring work, which read them before each
	// unit of work (app/query.go hands the first two to the stats consumer
	// and the tagger).
	SwitchStats       = "stats"
	SwitchTagging     = "tagging"
	SwitchRiskScoring = "risk_scoring"
)

// Switches holds the run-time switches of one process. They are per
// instance: turning work off for a fleet means calling every instance (or
// setting COUPOND_SWITCHES_OFF and restarting).
type Switches struct {
	m map[string]*Switch // fixed after NewSwitches: read without a lock
}

// NewSwitches returns coupond's switches, all on except those named in off.
// An unknown name in off is an error.
func NewSwitches(m *telemetry.Metrics, off ...string) (*Switches, error) {
	s := &Switches{m: map[string]*Switch{}}
	for _, d := range []struct{ name, desc string }{
		{SwitchBatchMetrics, "per-batch metrics and outbox lag read from the engine and the store at every scrape"},
		{SwitchAccessLog, "one log line per HTTP request"},
		{SwitchStats, "statistics work: the consumer counting events into the statistics pauses; events wait in the stream"},
		{SwitchTagging, "tagging work: the tagger pauses (batch events, delay queue, webhook); they wait"},
		{SwitchRiskScoring, "risk scoring of claims (reserved: read by the risk rules)"},
	} {
		sw := &Switch{Name: d.name, Description: d.desc, metrics: m}
		sw.Set(true)
		s.m[d.name] = sw
	}
	for _, name := range off {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		sw := s.m[name]
		if sw == nil {
			return nil, fmt.Errorf("unknown switch %q; switches: %s", name, strings.Join(s.names(), ", "))
		}
		sw.Set(false)
	}
	return s, nil
}

// Get returns a switch, or nil (which is off) if there is none by that name.
func (s *Switches) Get(name string) *Switch {
	if s == nil {
		return nil
	}
	return s.m[name]
}

// All returns every switch, by name.
func (s *Switches) All() []*Switch {
	if s == nil {
		return nil
	}
	out := make([]*Switch, 0, len(s.m))
	for _, name := range s.names() {
		out = append(out, s.m[name])
	}
	return out
}

func (s *Switches) names() []string {
	names := make([]string, 0, len(s.m))
	for n := range s.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
