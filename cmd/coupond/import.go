package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/coupond/coupond/client"
)

// The operator's commands (import, grant) talk to a running coupond over
// its HTTP API with a token, never to the store: imported codes must reach
// the pool of the engine the running instances use, and grants must go
// through their claim path.

// apiFlags are the flags every API command takes.
func apiFlags(fs *flag.FlagSet, environ []string) (url, token *string) {
	url = fs.String("url", orDefault(getenv(environ, "COUPOND_URL"), "http://127.0.0.1:8080"), "base URL of the service (default $COUPOND_URL or http://127.0.0.1:8080)")
	token = fs.String("token", getenv(environ, "COUPOND_ADMIN_TOKEN"), "bearer token: the admin token or an operator's or merchant's API key (default $COUPOND_ADMIN_TOKEN)")
	return url, token
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Exit statuses of import and grant: a refused line or user is not an
// error of the command, but a script may want to know.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitRefused = 3
)

func runImport(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coupond import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url, token := apiFlags(fs, environ)
	batch := fs.String("batch", "", "the external batch to import into (required)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: coupond import -batch ID [flags] FILE.csv   (FILE - reads standard input)")
		fmt.Fprintln(stderr, "Lines: code[,amount][,key=value…]. Exit status 3 if some lines were refused.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if *batch == "" || fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	in, size, closeIn, err := openInput(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "coupond import:", err)
		return exitError
	}
	defer closeIn()
	pr := newProgress(in, size, stderr, "sent")
	stopProgress := pr.start()
	res, err := client.New(*url, *token).ImportCodesFrom(ctx, *batch, pr)
	stopProgress()
	if err != nil {
		fmt.Fprintln(stderr, "coupond import:", err)
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		fmt.Fprintf(stdout, "%d lines: %d imported, %d imported before, %d refused; the batch holds %d codes\n",
			res.Lines, res.Imported, res.Existing, res.Rejected, res.GeneratedCount)
		for _, e := range res.Errors {
			fmt.Fprintf(stdout, "line %d: %s: %s\n", e.Line, e.Code, e.Reason)
		}
		if res.ErrorsTruncated {
			fmt.Fprintf(stdout, "… and %d more refused lines\n", res.Rejected-int64(len(res.Errors)))
		}
	}
	if res.Rejected > 0 {
		return exitRefused
	}
	return exitOK
}

// openInput opens a file, or standard input for "-"; size is -1 if unknown.
func openInput(name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return os.Stdin, -1, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, func() { _ = f.Close() }, nil
}

// progress counts the bytes and lines read through it and prints them
// every second: the server reads the upload as it comes, so what is sent
// is close to what is done.
type progress struct {
	r      io.Reader
	size   int64
	out    io.Writer
	verb   string
	bytes  atomic.Int64
	lines  atomic.Int64
	t0     time.Time
	ticker *time.Ticker
}

func newProgress(r io.Reader, size int64, out io.Writer, verb string) *progress {
	return &progress{r: r, size: size, out: out, verb: verb}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.bytes.Add(int64(n))
	var lines int64
	for _, c := range b[:n] {
		if c == '\n' {
			lines++
		}
	}
	p.lines.Add(lines)
	return n, err
}

func (p *progress) start() (stop func()) {
	p.t0 = time.Now()
	p.ticker = time.NewTicker(time.Second)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-p.ticker.C:
				p.print()
			case <-done:
				return
			}
		}
	}()
	return func() {
		p.ticker.Stop()
		close(done)
		<-finished
		p.print()
	}
}

func (p *progress) print() {
	el := time.Since(p.t0).Seconds()
	lines := p.lines.Load()
	rate := 0.0
	if el > 0 {
		rate = float64(lines) / el
	}
	pct := ""
	if p.size > 0 {
		pct = fmt.Sprintf(" (%.0f%%)", 100*float64(p.bytes.Load())/float64(p.size))
	}
	fmt.Fprintf(p.out, "%s %d lines, %.1f MB%s, %.0f lines/s\n", p.verb, lines, float64(p.bytes.Load())/1e6, pct, rate)
}
