package store

import (
	"context"
	"errors"
	"time"
)

// DistributionStore is the part of the store that passive distribution
// uses: partner code imports and grant jobs. It is embedded in Store.
type DistributionStore interface {
	// ImportCodes adds partner codes to a batch, like AddCodes — numbered
	// after the generated count, the count raised in the same transaction
	// by a statement bounded by the total — and remembers the file line of
	// each code, so that a later import can say which line a code came
	// from. It returns one outcome per code, in order: inserted; already
	// held (by this batch or another, with the line it was imported from,
	// 0 for a generated code); a repeat of an earlier code of the same
	// call; or refused because the batch is full, once the codes inserted
	// reach its total. ErrNotFound if there is no such batch; ErrVersion,
	// changing nothing, if version is set and the batch is at another (an
	// edit of a draft made since the codes' amounts were drawn). It is
	// idempotent: a second call with the same codes inserts none.
	ImportCodes(ctx context.Context, batchID string, version int64, codes []ImportCode) ([]ImportOutcome, error)

	// CreateGrantJob inserts a grant job in status uploading. j.ID is set by
	// the caller; an ID that exists already is coupon.ErrConflict, an
	// unknown batch ErrNotFound.
	CreateGrantJob(ctx context.Context, j *GrantJob) error
	// AddGrantUsers stores users of an uploading job's list, each under its
	// line number; a line stored already is kept as it is, so an upload
	// retried from any line adds nothing twice. ErrStatus if the job is not
	// uploading, ErrNotFound if there is no such job.
	AddGrantUsers(ctx context.Context, jobID string, users []GrantUser) error
	// SealGrantJob ends a job's upload: its total becomes the count of its
	// users, its last line theirs, and its status pending, ready for a worker. ErrStatus if the
	// job is not uploading.
	SealGrantJob(ctx context.Context, jobID string, at time.Time) (*GrantJob, error)
	// GetGrantJob returns a job, or ErrNotFound.
	GetGrantJob(ctx context.Context, id string) (*GrantJob, error)
	// PendingGrantJobs lists the ids of the jobs in status pending, oldest
	// first, at most limit (≤ 0: 100).
	PendingGrantJobs(ctx context.Context, limit int) ([]string, error)
	// GrantUsers returns up to limit users of a job with lines after
	// afterLine, in line order.
	GrantUsers(ctx context.Context, jobID string, afterLine int64, limit int) ([]GrantUser, error)
	// AdvanceGrantJob records the outcome of the users of lines (p.From,
	// p.To] in one transaction: the job's position moves to p.To, its done
	// and failed counts grow, the failures are stored, and the job is done
	// when p.To reaches its last line (p.To beyond it is an error). Only if the position is still p.From:
	// otherwise ErrJobMoved and nothing changes, so a worker that lost its
	// lease cannot count a user twice.
	AdvanceGrantJob(ctx context.Context, p AdvanceGrantJob) (*GrantJob, error)
	// GrantFailures returns up to limit failures of a job with lines after
	// afterLine, in line order.
	GrantFailures(ctx context.Context, jobID string, afterLine int64, limit int) ([]GrantFailure, error)
}

// ErrJobMoved: a grant job's position is not where the caller read it;
// another worker advanced it.
var ErrJobMoved = errors.New("store: grant job position moved")

// ImportCode is one partner code and the line of the file it came from.
type ImportCode struct {
	Code      string
	Amount    int64 // ≥ 1
	Tags      map[string]string
	CreatedAt time.Time // zero: now
	Line      int64     // ≥ 1
}

// ImportStatus is what became of one code of ImportCodes.
type ImportStatus int

const (
	ImportInserted ImportStatus = iota
	// ImportExists: a code of this string existed before the call; its
	// BatchID and Line are in the outcome.
	ImportExists
	// ImportRepeated: the code came earlier in the same call (Line is the
	// earlier one's).
	ImportRepeated
	// ImportFull: the batch held its total quantity before this code.
	ImportFull
)

// ImportOutcome is the outcome of one code of ImportCodes.
type ImportOutcome struct {
	Status  ImportStatus
	BatchID string // of the existing code (ImportExists)
	Line    int64  // the line the existing or repeated code came from; 0 if generated
	Seq     int64  // of the inserted code
}

// GrantJobStatus is where a grant job is: uploading → pending → done.
type GrantJobStatus string

const (
	JobUploading GrantJobStatus = "uploading"
	JobPending   GrantJobStatus = "pending"
	JobDone      GrantJobStatus = "done"
)

// GrantJob grants a batch to each user of an uploaded list, in line order.
// Total counts the users, LastLine is the line of the last one (blank lines
// of the list keep their numbers), Position is the last line whose outcome
// is recorded: the job is done when Position reaches LastLine.
type GrantJob struct {
	ID         string
	BatchID    string
	MerchantID string // the batch's, for merchant scoping
	Channel    string
	Status     GrantJobStatus
	Total      int64
	LastLine   int64
	Position   int64
	Done       int64
	Failed     int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero until done
}

// GrantUser is one line of a job's list.
type GrantUser struct {
	Line   int64
	UserID string
}

// GrantFailure is a user a job could not grant the batch to, and why.
type GrantFailure struct {
	Line   int64
	UserID string
	Code   string // the problem code, e.g. limit_reached
	Reason string
}

// AdvanceGrantJob is one step of a grant job, for AdvanceGrantJob.
type AdvanceGrantJob struct {
	JobID    string
	From, To int64
	Done     int64
	Failures []GrantFailure
	At       time.Time
}
