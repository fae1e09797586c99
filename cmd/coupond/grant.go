package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/coupond/coupond/client"
)

// runGrant grants a batch to one user (-user, with -key) or to each user of
// a list (-users FILE): the list is uploaded as a job, whose progress it
// follows until the job is done (or only queues it, with -detach).
func runGrant(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coupond grant", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url, token := apiFlags(fs, environ)
	batch := fs.String("batch", "", "the batch to grant (required)")
	user := fs.String("user", "", "grant to this one user")
	key := fs.String("key", "", "idempotency key of a one-user grant (required with -user): the same key never grants twice")
	users := fs.String("users", "", "grant to each user of this file, one id a line (- reads standard input)")
	channel := fs.String("channel", "", "channel recorded on the claims (default grant, or grant_job for a list)")
	job := fs.String("job", "", "follow an existing job instead")
	detach := fs.Bool("detach", false, "with -users: queue the job and print its id without following it")
	every := fs.Duration("every", time.Second, "how often to print a job's progress")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: coupond grant -batch ID -user U -key K      grant one user")
		fmt.Fprintln(stderr, "       coupond grant -batch ID -users FILE          grant each user of a list (a job), following its progress")
		fmt.Fprintln(stderr, "       coupond grant -job ID                        follow a job")
		fmt.Fprintln(stderr, "Exit status 3 if some users could not be granted.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	c := client.New(*url, *token)
	switch {
	case *job != "":
		return followJob(ctx, c, *job, *every, stdout, stderr)
	case *batch == "" || (*user == "") == (*users == ""):
		fs.Usage()
		return exitUsage
	case *user != "":
		if *key == "" {
			fmt.Fprintln(stderr, "coupond grant: -key is required with -user")
			return exitUsage
		}
		res, err := c.Grant(ctx, *batch, &client.GrantParams{IdempotencyKey: *key}, &client.GrantBody{UserID: *user, Channel: *channel})
		if err != nil {
			fmt.Fprintln(stderr, "coupond grant:", err)
			if client.ProblemCode(err) != "" && client.ProblemCode(err) != "unavailable" {
				return exitRefused
			}
			return exitError
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res.Body)
		if res.IdempotentReplayed == "true" {
			fmt.Fprintln(stderr, "granted before with this key: the same claim")
		}
		return exitOK
	}
	in, size, closeIn, err := openInput(*users)
	if err != nil {
		fmt.Fprintln(stderr, "coupond grant:", err)
		return exitError
	}
	defer closeIn()
	pr := newProgress(in, size, stderr, "uploaded")
	stopProgress := pr.start()
	v, err := c.CreateGrantJobFrom(ctx, *batch, *channel, pr)
	stopProgress()
	if err != nil {
		fmt.Fprintln(stderr, "coupond grant:", err)
		return exitError
	}
	fmt.Fprintf(stderr, "job %s queued: %d users\n", v.ID, v.Total)
	if *detach {
		fmt.Fprintln(stdout, v.ID)
		return exitOK
	}
	return followJob(ctx, c, v.ID, *every, stdout, stderr)
}

// followJob prints a job's progress until it is done, then its failures.
func followJob(ctx context.Context, c *client.Client, id string, every time.Duration, stdout, stderr io.Writer) int {
	t0 := time.Now()
	for {
		v, err := c.GetJob(ctx, id, &client.GetJobParams{Limit: 1})
		if err != nil {
			fmt.Fprintln(stderr, "coupond grant:", err)
			if client.ProblemCode(err) == "unavailable" && ctx.Err() == nil {
				time.Sleep(every)
				continue
			}
			return exitError
		}
		rate := float64(v.Done+v.Failed) / max(time.Since(t0).Seconds(), 0.001)
		fmt.Fprintf(stderr, "job %s %s: %d done, %d failed, %d remaining of %d (%.0f users/s)\n",
			id, v.Status, v.Done, v.Failed, v.Remaining, v.Total, rate)
		if v.Status == "done" {
			fmt.Fprintf(stdout, "job %s done: %d granted, %d failed of %d\n", id, v.Done, v.Failed, v.Total)
			return printFailures(ctx, c, id, stdout, stderr, v.Failed)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "stopped following; the job goes on: coupond grant -job %s\n", id)
			return exitError
		case <-time.After(every):
		}
	}
}

func printFailures(ctx context.Context, c *client.Client, id string, stdout, stderr io.Writer, failed int64) int {
	var after int64
	for failed > 0 {
		v, err := c.GetJob(ctx, id, &client.GetJobParams{FailuresAfter: after, Limit: 1000})
		if err != nil {
			fmt.Fprintln(stderr, "coupond grant:", err)
			return exitError
		}
		for _, f := range v.Failures {
			fmt.Fprintf(stdout, "line %d: %s: %s: %s\n", f.Line, f.UserID, f.Code, f.Reason)
		}
		if v.NextFailuresAfter == 0 {
			break
		}
		after = v.NextFailuresAfter
	}
	if failed > 0 {
		return exitRefused
	}
	return exitOK
}
