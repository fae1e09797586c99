package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var _ store.DistributionStore = (*Store)(nil)

// Every method here reads and writes the primary: jobs and imports decide
// on what they read.

// ImportCodes adds partner codes to a batch with their file lines. Under the
// lock of the batch row (imports of one batch take turns) it reads which
// codes exist, numbers the others after the generated count in Go and
// inserts them with one statement over arrays. A code of another batch
// committed in between is skipped by ON CONFLICT and leaves a hole in the
// numbering: the attempt is rolled back and run again, seeing that code.
func (s *Store) ImportCodes(ctx context.Context, batchID string, version int64, codes []store.ImportCode) ([]store.ImportOutcome, error) {
	op := "import codes into batch " + batchID
	for _, c := range codes {
		if c.Amount < 1 {
			return nil, fmt.Errorf("postgres: %s: code %q has amount %d, below 1", op, c.Code, c.Amount)
		}
	}
	for attempt := 0; ; attempt++ {
		out, err := s.importCodes(ctx, op, batchID, version, codes)
		if !errors.Is(err, errSeqGap) || attempt == 4 {
			return out, err
		}
	}
}

func (s *Store) importCodes(ctx context.Context, op, batchID string, version int64, codes []store.ImportCode) ([]store.ImportOutcome, error) {
	now := coupon.UTC(s.now())
	out := make([]store.ImportOutcome, len(codes))
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		var generated, total, current int64
		err := tx.QueryRow(ctx, `SELECT generated_count, total_quantity, version FROM batches WHERE id = $1 FOR UPDATE`, batchID).
			Scan(&generated, &total, &current)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if version != 0 && current != version {
			return fmt.Errorf("postgres: batch %s is at version %d, not %d: %w", batchID, current, version, store.ErrVersion)
		}
		strs := make([]string, len(codes))
		for i, c := range codes {
			strs[i] = c.Code
		}
		rows, err := tx.Query(ctx, `SELECT code, batch_id, import_line FROM codes WHERE code = ANY($1::text[])`, strs)
		if err != nil {
			return wrap(op, err)
		}
		existing := map[string]store.ImportOutcome{}
		var code, batch string
		var line pgtype.Int8
		_, err = pgx.ForEachRow(rows, []any{&code, &batch, &line}, func() error {
			existing[code] = store.ImportOutcome{Status: store.ImportExists, BatchID: batch, Line: line.Int64}
			return nil
		})
		if err != nil {
			return wrap(op, err)
		}

		var (
			insCodes           []string
			insSeqs, insAmount []int64
			insLines           []int64
			insTags            []*string
			insCreated         []time.Time
			amount             int64
		)
		seen := make(map[string]int64, len(codes))
		for i, c := range codes {
			if e, ok := existing[c.Code]; ok {
				out[i] = e
				continue
			}
			if l, ok := seen[c.Code]; ok {
				out[i] = store.ImportOutcome{Status: store.ImportRepeated, Line: l}
				continue
			}
			seen[c.Code] = c.Line
			n := int64(len(insCodes))
			if generated+n >= total {
				out[i] = store.ImportOutcome{Status: store.ImportFull}
				continue
			}
			var tags *string
			if len(c.Tags) > 0 {
				b, err := json.Marshal(c.Tags)
				if err != nil {
					return fmt.Errorf("postgres: encode tags: %w", err)
				}
				t := string(b)
				tags = &t
			}
			createdAt := now
			if !c.CreatedAt.IsZero() {
				createdAt = coupon.UTC(c.CreatedAt)
			}
			seq := generated + n + 1
			insCodes, insSeqs, insAmount = append(insCodes, c.Code), append(insSeqs, seq), append(insAmount, c.Amount)
			insLines, insTags, insCreated = append(insLines, c.Line), append(insTags, tags), append(insCreated, createdAt)
			out[i] = store.ImportOutcome{Status: store.ImportInserted, Seq: seq}
			amount += c.Amount
		}
		n := int64(len(insCodes))
		if n == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `INSERT INTO codes (code, batch_id, seq, amount, tags, created_at, import_line)
			SELECT c, $1, s, a, t::jsonb, ca, l
			FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[], $7::bigint[]) AS u(c, s, a, t, ca, l)
			ON CONFLICT (code) DO NOTHING`,
			batchID, insCodes, insSeqs, insAmount, insTags, insCreated, insLines)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() != n {
			return errSeqGap
		}
		tag, err = tx.Exec(ctx, `UPDATE batches
			SET generated_count = generated_count + $2, generated_amount = generated_amount + $3, updated_at = $4
			WHERE id = $1 AND generated_count = $5 AND generated_count + $2 <= total_quantity`,
			batchID, n, amount, now, generated)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: batch %s holds %d of %d codes, cannot add %d: %w",
				batchID, generated, total, n, store.ErrTotalExceeded)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateGrantJob inserts a job in status uploading, with its batch's merchant.
func (s *Store) CreateGrantJob(ctx context.Context, j *store.GrantJob) error {
	op := "create grant job " + j.ID
	j.Status = store.JobUploading
	j.CreatedAt = coupon.UTC(j.CreatedAt)
	j.UpdatedAt = j.CreatedAt
	err := s.primary.QueryRow(ctx, `INSERT INTO grant_jobs (id, batch_id, merchant_id, channel, status, created_at, updated_at)
		SELECT $1, id, merchant_id, $3, $4, $5, $5 FROM batches WHERE id = $2
		RETURNING merchant_id`, j.ID, j.BatchID, j.Channel, string(j.Status), j.CreatedAt).Scan(&j.MerchantID)
	switch pe := pgError(err); {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: batch %s: %w", j.BatchID, store.ErrNotFound)
	case pe != nil && pe.Code == uniqueViolation:
		return fmt.Errorf("postgres: grant job %s exists already: %w", j.ID, coupon.ErrConflict)
	case err != nil:
		return wrap(op, err)
	}
	return nil
}

// AddGrantUsers stores users of an uploading job, keeping lines stored already.
func (s *Store) AddGrantUsers(ctx context.Context, jobID string, users []store.GrantUser) error {
	op := "add users to grant job " + jobID
	return inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		// FOR SHARE: a seal waits for the uploads in flight, and an upload
		// after the seal sees its status.
		if err := jobStatusIs(ctx, tx, jobID, store.JobUploading, "FOR SHARE"); err != nil {
			return err
		}
		lines := make([]int64, len(users))
		ids := make([]string, len(users))
		for i, u := range users {
			lines[i], ids[i] = u.Line, u.UserID
		}
		_, err := tx.Exec(ctx, `INSERT INTO grant_job_users (job_id, line, user_id)
			SELECT $1, l, u FROM unnest($2::bigint[], $3::text[]) AS x(l, u)
			ON CONFLICT (job_id, line) DO NOTHING`, jobID, lines, ids)
		if err != nil {
			return wrap(op, err)
		}
		return nil
	})
}

func jobStatusIs(ctx context.Context, tx pgx.Tx, jobID string, want store.GrantJobStatus, lock string) error {
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM grant_jobs WHERE id = $1 `+lock, jobID).Scan(&status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: grant job %s: %w", jobID, store.ErrNotFound)
	case err != nil:
		return wrap("grant job "+jobID, err)
	case store.GrantJobStatus(status) != want:
		return fmt.Errorf("postgres: grant job %s is %s, not %s: %w", jobID, status, want, store.ErrStatus)
	}
	return nil
}

// SealGrantJob ends a job's upload.
func (s *Store) SealGrantJob(ctx context.Context, jobID string, at time.Time) (*store.GrantJob, error) {
	op := "seal grant job " + jobID
	var j *store.GrantJob
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		if err := jobStatusIs(ctx, tx, jobID, store.JobUploading, "FOR UPDATE"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE grant_jobs SET status = 'pending', updated_at = $2,
			total = (SELECT count(*) FROM grant_job_users WHERE job_id = $1),
			last_line = (SELECT coalesce(max(line), 0) FROM grant_job_users WHERE job_id = $1) WHERE id = $1`,
			jobID, coupon.UTC(at)); err != nil {
			return wrap(op, err)
		}
		var err error
		j, err = getGrantJob(ctx, tx, jobID)
		return err
	})
	return j, err
}

// GetGrantJob returns a job.
func (s *Store) GetGrantJob(ctx context.Context, id string) (*store.GrantJob, error) {
	return getGrantJob(ctx, s.primary, id)
}

func getGrantJob(ctx context.Context, q querier, id string) (*store.GrantJob, error) {
	var j store.GrantJob
	var status string
	var finished pgtype.Timestamptz
	err := q.QueryRow(ctx, `SELECT id, batch_id, merchant_id, channel, status, total, last_line, position,
		done_count, failed_count, created_at, updated_at, finished_at FROM grant_jobs WHERE id = $1`, id).
		Scan(&j.ID, &j.BatchID, &j.MerchantID, &j.Channel, &status, &j.Total, &j.LastLine, &j.Position,
			&j.Done, &j.Failed, &j.CreatedAt, &j.UpdatedAt, &finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: grant job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get grant job "+id, err)
	}
	j.Status = store.GrantJobStatus(status)
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = utc(j.CreatedAt), utc(j.UpdatedAt), fromNullTime(finished)
	return &j, nil
}

// PendingGrantJobs lists pending jobs, oldest first.
func (s *Store) PendingGrantJobs(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.primary.Query(ctx, `SELECT id FROM grant_jobs WHERE status = 'pending' ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, wrap("pending grant jobs", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("pending grant jobs", err)
	}
	return ids, nil
}

// GrantUsers returns users of a job after a line.
func (s *Store) GrantUsers(ctx context.Context, jobID string, afterLine int64, limit int) ([]store.GrantUser, error) {
	op := "users of grant job " + jobID
	rows, err := s.primary.Query(ctx, `SELECT line, user_id FROM grant_job_users
		WHERE job_id = $1 AND line > $2 ORDER BY line LIMIT $3`, jobID, afterLine, max(limit, 1))
	if err != nil {
		return nil, wrap(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.GrantUser, error) {
		var u store.GrantUser
		err := r.Scan(&u.Line, &u.UserID)
		return u, err
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// AdvanceGrantJob records one step of a job, if its position is p.From.
func (s *Store) AdvanceGrantJob(ctx context.Context, p store.AdvanceGrantJob) (*store.GrantJob, error) {
	op := "advance grant job " + p.JobID
	var j *store.GrantJob
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		at := coupon.UTC(p.At)
		tag, err := tx.Exec(ctx, `UPDATE grant_jobs SET position = $2, done_count = done_count + $3,
			failed_count = failed_count + $4, updated_at = $5,
			status = CASE WHEN $2 >= last_line THEN 'done' ELSE status END,
			finished_at = CASE WHEN $2 >= last_line THEN $5 ELSE finished_at END
			WHERE id = $1 AND status = 'pending' AND position = $6`,
			p.JobID, p.To, p.Done, int64(len(p.Failures)), at, p.From)
		if err != nil {
			return wrap(op, err)
		}
		if tag.RowsAffected() == 0 {
			if _, err := getGrantJob(ctx, tx, p.JobID); err != nil {
				return err
			}
			return fmt.Errorf("postgres: grant job %s is not pending at line %d: %w", p.JobID, p.From, store.ErrJobMoved)
		}
		if len(p.Failures) > 0 {
			lines := make([]int64, len(p.Failures))
			users, codes, reasons := make([]string, len(p.Failures)), make([]string, len(p.Failures)), make([]string, len(p.Failures))
			for i, f := range p.Failures {
				lines[i], users[i], codes[i], reasons[i] = f.Line, f.UserID, f.Code, f.Reason
			}
			if _, err := tx.Exec(ctx, `INSERT INTO grant_job_failures (job_id, line, user_id, code, reason)
				SELECT $1, l, u, c, r FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS x(l, u, c, r)`,
				p.JobID, lines, users, codes, reasons); err != nil {
				return wrap(op, err)
			}
		}
		j, err = getGrantJob(ctx, tx, p.JobID)
		return err
	})
	return j, err
}

// GrantFailures returns failures of a job after a line.
func (s *Store) GrantFailures(ctx context.Context, jobID string, afterLine int64, limit int) ([]store.GrantFailure, error) {
	op := "failures of grant job " + jobID
	rows, err := s.primary.Query(ctx, `SELECT line, user_id, code, reason FROM grant_job_failures
		WHERE job_id = $1 AND line > $2 ORDER BY line LIMIT $3`, jobID, afterLine, max(limit, 1))
	if err != nil {
		return nil, wrap(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.GrantFailure, error) {
		var f store.GrantFailure
		err := r.Scan(&f.Line, &f.UserID, &f.Code, &f.Reason)
		return f, err
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}
