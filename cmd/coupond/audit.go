package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/audit"
	"github.com/coupond/coupond/config"
)

// runAudit checks the invariants against the configured deployment (the
// same COUPOND_* settings as serve) and exits 1 on any violation, 2 on a
// usage error, 3 when the audit could not run.
func runAudit(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coupond audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grace := fs.Duration("grace", audit.DefaultGrace, "how late work (publishing an event, resolving a reservation, reconciling a claim) may be before it is a violation")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cfg, _, err := config.Load(fs, args, environ)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "coupond audit:", err)
		return 2
	}
	cfg.Log.Level = "warn"
	r, err := app.Audit(ctx, cfg, newLogger(cfg, stderr), *grace)
	if err != nil {
		fmt.Fprintln(stderr, "coupond audit:", err)
		return 3
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	} else {
		r.Write(stdout)
	}
	if !r.OK() {
		return 1
	}
	return 0
}
