// Command coupond runs the coupond service and its tools.
//
//	coupond serve     run the service
//	coupond migrate   apply the store's migrations and exit
//	coupond loadgen   drive a running coupond with flash-sale claims
//	coupond audit     check the invariants against a deployment
//	coupond import    import a partner's codes from a CSV file into a batch
//	coupond grant     grant a batch to a user, or to each user of a list
//	coupond version   print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coupond/coupond/app"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `usage: coupond <command> [flags]

commands:
  serve     run the service (defaults: SQLite in ./data, in-memory engine, embedded NATS)
  migrate   apply the store's migrations and exit
  loadgen   drive a running coupond with flash-sale claims and report
  audit     check every invariant against the deployment; exit 1 on a violation
  import    import a partner's codes (CSV) into an external batch of a running coupond
  grant     grant a batch to one user, or to each user of a list (a job), with progress
  version   print the version

Run "coupond <command> -h" for the flags of a command. Every flag can also be
set with its COUPOND_* environment variable.
`

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "coupond", app.Version)
		return 0
	case "loadgen":
		return runLoadgen(ctx, args, environ, stdout, stderr)
	case "audit":
		return runAudit(ctx, args, environ, stdout, stderr)
	case "import":
		return runImport(ctx, args, environ, stdout, stderr)
	case "grant":
		return runGrant(ctx, args, environ, stdout, stderr)
	case "serve", "migrate":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "coupond: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	fs := flag.NewFlagSet("coupond "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, warnings, err := config.Load(fs, args, environ)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "coupond:", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	for _, w := range warnings {
		log.Warn(w)
	}

	switch cmd {
	case "migrate":
		if err := app.Migrate(ctx, cfg, log); err != nil {
			log.Error("migrate", "err", err)
			return 1
		}
		log.Info("migrations applied")
		return 0
	default: // serve
		a := app.New(cfg, log, stderr)
		if err := a.Run(ctx); err != nil {
			log.Error("start", "err", err)
			return 1
		}
		<-ctx.Done()
		log.Info("shutting down")
		a.Close()
		return 0
	}
}

// newLogger logs readable text to a terminal and JSON elsewhere, unless
// told, with request and trace ids and without secrets.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	return telemetry.NewLogger(cfg.Log.Format, cfg.Log.Level, w)
}
