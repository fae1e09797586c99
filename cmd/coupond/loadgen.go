package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coupond/coupond/loadgen"
)

func runLoadgen(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coupond loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	var asJSON bool
	var row string
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "base URL of the service")
	fs.StringVar(&cfg.Token, "token", getenv(environ, "COUPOND_ADMIN_TOKEN"), "bearer token (default $COUPOND_ADMIN_TOKEN)")
	fs.StringVar(&cfg.BatchID, "batch", "", "batch to claim from; empty: create and publish one of -total codes (query, tags: any value skips the set-up)")
	fs.Int64Var(&cfg.Total, "total", 1_000_000, "codes in the batch created when -batch is empty")
	fs.IntVar(&cfg.Concurrency, "c", 64, "requests in flight")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "how long to run")
	fs.Int64Var(&cfg.Requests, "n", 0, "stop after this many requests (0: no limit)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&row, "row", "", "print the report as one markdown table row with this label")
	fs.StringVar(&cfg.Mode, "mode", "claim", "claim (POST claims), query (GET a user's available coupons, and badges), tags (GET product tags) or mixed (claims, my coupons, badges, qualifications, reserve then confirm)")
	fs.StringVar(&cfg.KeyID, "key-id", "", "sign the measured requests with this API key (an app key); -token still sets the run up")
	fs.StringVar(&cfg.KeySecret, "key-secret", getenv(environ, "COUPOND_LOADGEN_KEY_SECRET"), "secret of -key-id (default $COUPOND_LOADGEN_KEY_SECRET)")
	var save string
	fs.StringVar(&save, "save", "", "also write the report as JSON to this file (bench/chart draws it)")
	fs.StringVar(&cfg.UserPrefix, "user-prefix", "", "start of the user ids; default: unique per run")
	fs.IntVar(&cfg.Users, "users", 1000, "query, mixed: users read in turn (each claims -claims-per-user coupons first unless -batch is set in query mode)")
	fs.IntVar(&cfg.ClaimsPerUser, "claims-per-user", 3, "query, mixed: coupons each user claims before the run (mixed: each is reserved and confirmed once)")
	fs.IntVar(&cfg.Products, "products", 1000, "tags: products a new batch tags (unless -batch is set)")
	fs.IntVar(&cfg.IDs, "ids", 20, "tags: products named per request, at most 100")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second in all (open loop); 0: as fast as answered")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg.Progress = stderr
	r, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "coupond loadgen:", err)
		return 1
	}
	if save != "" {
		raw, _ := json.Marshal(r)
		if err := os.WriteFile(save, raw, 0o644); err != nil {
			fmt.Fprintln(stderr, "coupond loadgen:", err)
			return 1
		}
	}
	switch {
	case row != "":
		r.Row(stdout, row)
	case asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	default:
		r.Format(stdout)
	}
	if r.Requests == 0 {
		return 1
	}
	return 0
}

func getenv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
