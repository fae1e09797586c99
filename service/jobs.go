package service

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

// Bulk grants: a job grants a batch to every user of an uploaded list. The
// list is streamed into the store (one line a user), then a worker works
// through it under the engine lease job:<id>, a step of GrantJobStep users
// at a time: it grants each user of the step with the idempotency key of
// the user's line, then records the step's outcome — the position, the done
// and failed counts and the failures — in one transaction, on the condition
// that the position is still where it read it. A worker that dies mid-step
// leaves the position where it was; whoever takes the job next grants the
// step again, and the keys return the claims made the first time, so each
// line is granted and counted exactly once.

// Limits of bulk grants.
const (
	GrantJobUploadChunk = 5000
	GrantJobStep        = 200
	grantJobParallel    = 16 // grants of one step in flight at once
	MaxJobFailuresPage  = 1000
)

// GrantJobRequest creates a bulk grant job from a list of users.
type GrantJobRequest struct {
	BatchID string
	Channel string // recorded on the claims; default "grant_job"
	// Users is the list: one user id a line (a line "user_id" first is a
	// header; further comma-separated fields are ignored). Blank lines are
	// skipped but keep their numbers.
	Users io.Reader
	// Progress, if set, is called with the lines read after each chunk stored.
	Progress func(lines int64)
}

// JobView is a grant job as the API shows it.
type JobView struct {
	ID         string               `json:"id" doc:"the job id"`
	Kind       string               `json:"kind" enum:"grant" doc:"what the job does: grant, a bulk grant of a batch"`
	BatchID    string               `json:"batch_id" doc:"the batch granted"`
	Channel    string               `json:"channel" doc:"the channel recorded on the claims"`
	Status     store.GrantJobStatus `json:"status" enum:"uploading,pending,done" doc:"uploading: the list is being received; pending: queued or running; done"`
	Total      int64                `json:"total" doc:"users in the list"`
	Done       int64                `json:"done" doc:"users granted a coupon"`
	Failed     int64                `json:"failed" doc:"users who could not be granted one; see failures"`
	Remaining  int64                `json:"remaining" doc:"users not yet processed"`
	CreatedAt  time.Time            `json:"created_at" doc:"when the job was created"`
	UpdatedAt  time.Time            `json:"updated_at" doc:"when the job last advanced"`
	FinishedAt *time.Time           `json:"finished_at,omitempty" doc:"when the job was done"`
	// Failures is one page of failures, after the requested line.
	Failures []JobFailure `json:"failures" doc:"one page of the users who could not be granted, in line order"`
	// NextFailuresAfter is the line to pass for the next page of failures.
	NextFailuresAfter int64 `json:"next_failures_after,omitempty" doc:"pass as failures_after for the next page of failures; absent on the last page"`
}

// JobFailure is a user a job could not grant the batch to.
type JobFailure struct {
	Line   int64  `json:"line" doc:"line of the list"`
	UserID string `json:"user_id" doc:"the user on that line"`
	Code   string `json:"code" doc:"the problem code of the refusal, e.g. limit_reached, sold_out"`
	Reason string `json:"reason" doc:"why the grant was refused"`
}

// CreateGrantJob stores the list of users and queues the job; the workers
// (worker.GrantJobs) run it. A read error of the list leaves the job
// uploading, never run.
func (s *Service) CreateGrantJob(ctx context.Context, req GrantJobRequest) (*JobView, error) {
	if req.Channel == "" {
		req.Channel = ChannelJob
	}
	if err := validChannel(req.Channel); err != nil {
		return nil, err
	}
	if !coupon.ValidID(req.BatchID) {
		return nil, fmt.Errorf("batch %q: %w", req.BatchID, coupon.ErrNotFound)
	}
	b, err := s.store.GetBatch(ctx, req.BatchID)
	if err != nil {
		return nil, unavailable("get batch", notFound("batch", req.BatchID, err))
	}
	if !auth.Sees(ctx, b.MerchantID) {
		return nil, hidden("batch", b.ID)
	}
	if b.Status == coupon.StatusEnded {
		return nil, fmt.Errorf("batch %s has ended: %w", b.ID, coupon.ErrConflict)
	}
	now := s.clock()
	j := &store.GrantJob{ID: coupon.NewID(now), BatchID: b.ID, Channel: req.Channel, CreatedAt: now}
	if err := s.store.CreateGrantJob(ctx, j); err != nil {
		return nil, unavailable("create grant job", err)
	}
	r := bufio.NewReaderSize(req.Users, MaxImportLineBytes)
	chunk := make([]store.GrantUser, 0, GrantJobUploadChunk)
	var n int64
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := s.store.AddGrantUsers(ctx, j.ID, chunk); err != nil {
			return unavailable("store users of grant job", err)
		}
		chunk = chunk[:0]
		if req.Progress != nil {
			req.Progress(n)
		}
		return nil
	}
	for {
		line, err := readLine(r)
		if len(line) > 0 || err == nil || errors.Is(err, errLongLine) {
			n++
			user, _, _ := bytes.Cut(line, []byte{','})
			user = bytes.TrimSpace(user)
			if n == 1 {
				user = bytes.TrimPrefix(user, []byte("\xef\xbb\xbf"))
			}
			switch {
			case errors.Is(err, errLongLine):
				// Kept, so that the job reports it as a failure.
				chunk = append(chunk, store.GrantUser{Line: n, UserID: "(line too long)"})
			case len(user) == 0, n == 1 && string(user) == "user_id":
			default:
				chunk = append(chunk, store.GrantUser{Line: n, UserID: string(user)})
			}
		}
		if err != nil && !errors.Is(err, errLongLine) {
			if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read line %d of the list: %w: %w", n+1, coupon.ErrUnavailable, err)
			}
			break
		}
		if len(chunk) == GrantJobUploadChunk {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	sealed, err := s.store.SealGrantJob(ctx, j.ID, s.clock())
	if err != nil {
		return nil, unavailable("seal grant job", err)
	}
	s.log.InfoContext(ctx, "grant job queued", "job", j.ID, "batch", b.ID, "users", sealed.Total)
	return jobView(sealed, nil, 0), nil
}

// GetJob returns a job with one page of its failures, those after the line
// failuresAfter (at most limit, ≤ 0: 100).
func (s *Service) GetJob(ctx context.Context, id string, failuresAfter int64, limit int) (*JobView, error) {
	if !coupon.ValidID(id) {
		return nil, fmt.Errorf("job %q: %w", id, coupon.ErrNotFound)
	}
	j, err := s.store.GetGrantJob(ctx, id)
	if err != nil {
		return nil, unavailable("get job", notFound("job", id, err))
	}
	if !auth.Sees(ctx, j.MerchantID) {
		return nil, hidden("job", id)
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxJobFailuresPage)
	fs, err := s.store.GrantFailures(ctx, id, failuresAfter, limit+1)
	if err != nil {
		return nil, unavailable("list job failures", err)
	}
	var next int64
	if len(fs) > limit {
		fs = fs[:limit]
		next = fs[limit-1].Line
	}
	return jobView(j, fs, next), nil
}

func jobView(j *store.GrantJob, fs []store.GrantFailure, next int64) *JobView {
	v := &JobView{
		ID: j.ID, Kind: "grant", BatchID: j.BatchID, Channel: j.Channel, Status: j.Status,
		Total: j.Total, Done: j.Done, Failed: j.Failed, Remaining: max(j.Total-j.Done-j.Failed, 0),
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, Failures: make([]JobFailure, len(fs)), NextFailuresAfter: next,
	}
	if !j.FinishedAt.IsZero() {
		t := j.FinishedAt
		v.FinishedAt = &t
	}
	for i, f := range fs {
		v.Failures[i] = JobFailure{Line: f.Line, UserID: f.UserID, Code: f.Code, Reason: f.Reason}
	}
	return v
}

// PendingJobs lists the jobs ready to run, oldest first.
func (s *Service) PendingJobs(ctx context.Context) ([]string, error) {
	ids, err := s.store.PendingGrantJobs(ctx, 100)
	if err != nil {
		return nil, unavailable("list pending jobs", err)
	}
	return ids, nil
}

// JobLease is the lease a worker holds while it runs a job: RunJob extends
// it after every step and stops when it is lost.
type JobLease interface {
	Extend(ctx context.Context) (bool, error)
}

// RunJob runs a pending job to its end, a step at a time, while lease
// holds; it returns the job as it left it. A step whose grants meet a
// failure that may pass (the store or engine unavailable) is not recorded
// and RunJob returns the error: the next run does the step again.
func (s *Service) RunJob(ctx context.Context, id string, lease JobLease) (*JobView, error) {
	j, err := s.store.GetGrantJob(ctx, id)
	if err != nil {
		return nil, unavailable("get job", notFound("job", id, err))
	}
	for j.Status == store.JobPending {
		users, err := s.store.GrantUsers(ctx, id, j.Position, GrantJobStep)
		if err != nil {
			return nil, unavailable("read users of job", err)
		}
		step := store.AdvanceGrantJob{JobID: id, From: j.Position, To: j.LastLine, At: s.clock()}
		if len(users) > 0 {
			step.To = users[len(users)-1].Line
			done, failures, err := s.grantStep(ctx, j, users)
			if err != nil {
				return jobView(j, nil, 0), err
			}
			step.Done, step.Failures = done, failures
		}
		if s.beforeAdvance != nil {
			s.beforeAdvance(id, step)
		}
		next, err := s.store.AdvanceGrantJob(ctx, step)
		if errors.Is(err, store.ErrJobMoved) {
			// Another worker advanced it (this one's lease had expired):
			// its count stands; leave the job to it.
			s.log.InfoContext(ctx, "grant job advanced by another worker", "job", id, "from", step.From)
			cur, gerr := s.store.GetGrantJob(ctx, id)
			if gerr != nil {
				return nil, unavailable("get job", gerr)
			}
			return jobView(cur, nil, 0), nil
		}
		if err != nil {
			return jobView(j, nil, 0), unavailable("advance job", err)
		}
		j = next
		if j.Status == store.JobDone {
			s.log.InfoContext(ctx, "grant job done", "job", id, "done", j.Done, "failed", j.Failed)
			break
		}
		if lease != nil {
			ok, err := lease.Extend(ctx)
			if err != nil {
				return jobView(j, nil, 0), unavailable("extend job lease", err)
			}
			if !ok {
				s.log.InfoContext(ctx, "grant job lease lost; another instance carries on", "job", id)
				break
			}
		}
	}
	return jobView(j, nil, 0), nil
}

// grantStep grants the batch to the users of one step, some at a time, and
// sorts the outcomes: done, failed for good (with the refusal's code), or
// an error that may pass, which fails the step.
func (s *Service) grantStep(ctx context.Context, j *store.GrantJob, users []store.GrantUser) (int64, []store.GrantFailure, error) {
	errs := make([]error, len(users))
	sem := make(chan struct{}, grantJobParallel)
	var wg sync.WaitGroup
	for i, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, _, errs[i] = s.Claim(ctx, ClaimRequest{
				BatchID: j.BatchID, Claimant: coupon.Claimant{UserID: u.UserID},
				IdempotencyKey: jobKey(j.ID, u.Line), Channel: j.Channel, Grant: true,
			})
		})
	}
	wg.Wait()
	var done int64
	var failures []store.GrantFailure
	for i, err := range errs {
		switch {
		case err == nil:
			done++
		case Retryable(err):
			return 0, nil, fmt.Errorf("grant line %d of job %s: %w", users[i].Line, j.ID, err)
		default:
			failures = append(failures, store.GrantFailure{
				Line: users[i].Line, UserID: users[i].UserID, Code: coupon.ErrorCode(err), Reason: err.Error(),
			})
		}
	}
	return done, failures, nil
}
