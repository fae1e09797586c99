package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/store"
)

var _ store.DistributionStore = (*Store)(nil)

// ImportCodes adds partner codes to a batch with their file lines. The one
// writer connection makes the transaction the only writer, so the codes that
// exist are read first (one json_each lookup for the whole chunk) and the
// others inserted in order until the batch is full.
func (s *Store) ImportCodes(ctx context.Context, batchID string, version int64, codes []store.ImportCode) ([]store.ImportOutcome, error) {
	op := "import codes into batch " + batchID
	for _, c := range codes {
		if c.Amount < 1 {
			return nil, fmt.Errorf("sqlite: %s: code %q has amount %d, below 1", op, c.Code, c.Amount)
		}
	}
	now := coupon.UTC(s.now())
	out := make([]store.ImportOutcome, len(codes))
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		var generated, total, current int64
		err := tx.QueryRowContext(ctx, `SELECT generated_count, total_quantity, version FROM batches WHERE id = ?`, batchID).
			Scan(&generated, &total, &current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: batch %s: %w", batchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		if version != 0 && current != version {
			return fmt.Errorf("sqlite: batch %s is at version %d, not %d: %w", batchID, current, version, store.ErrVersion)
		}
		existing, err := existingCodes(ctx, tx, codes)
		if err != nil {
			return wrap(op, err)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO codes (code, batch_id, seq, amount, tags, created_at, import_line)
			VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return wrap(op, err)
		}
		defer stmt.Close()
		seen := make(map[string]int64, len(codes))
		var n, amount int64
		for i, c := range codes {
			if e, ok := existing[c.Code]; ok {
				out[i] = e
				continue
			}
			if line, ok := seen[c.Code]; ok {
				out[i] = store.ImportOutcome{Status: store.ImportRepeated, Line: line}
				continue
			}
			seen[c.Code] = c.Line
			if generated+n >= total {
				out[i] = store.ImportOutcome{Status: store.ImportFull}
				continue
			}
			createdAt := now
			if !c.CreatedAt.IsZero() {
				createdAt = coupon.UTC(c.CreatedAt)
			}
			tags, err := encodeTags(c.Tags)
			if err != nil {
				return err
			}
			seq := generated + n + 1
			if _, err := stmt.ExecContext(ctx, c.Code, batchID, seq, c.Amount, tags, micros(createdAt), c.Line); err != nil {
				return wrap(op, err)
			}
			out[i] = store.ImportOutcome{Status: store.ImportInserted, Seq: seq}
			n++
			amount += c.Amount
		}
		if n == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE batches
			SET generated_count = generated_count + ?, generated_amount = generated_amount + ?, updated_at = ?
			WHERE id = ? AND generated_count = ? AND generated_count + ? <= total_quantity`,
			n, amount, micros(now), batchID, generated, n)
		if err != nil {
			return wrap(op, err)
		}
		if updated, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if updated == 0 {
			return fmt.Errorf("sqlite: batch %s holds %d of %d codes, cannot add %d: %w",
				batchID, generated, total, n, store.ErrTotalExceeded)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// existingCodes returns the outcome ImportExists for each of codes that the
// store holds.
func existingCodes(ctx context.Context, tx *sql.Tx, codes []store.ImportCode) (map[string]store.ImportOutcome, error) {
	strs := make([]string, len(codes))
	for i, c := range codes {
		strs[i] = c.Code
	}
	arr, err := json.Marshal(strs)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT code, batch_id, import_line FROM codes
		WHERE code IN (SELECT value FROM json_each(?))`, string(arr))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.ImportOutcome{}
	for rows.Next() {
		var code, batch string
		var line sql.NullInt64
		if err := rows.Scan(&code, &batch, &line); err != nil {
			return nil, err
		}
		out[code] = store.ImportOutcome{Status: store.ImportExists, BatchID: batch, Line: line.Int64}
	}
	return out, rows.Err()
}

// CreateGrantJob inserts a job in status uploading, with its batch's
// merchant.
func (s *Store) CreateGrantJob(ctx context.Context, j *store.GrantJob) error {
	op := "create grant job " + j.ID
	return s.writeTx(ctx, op, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT merchant_id FROM batches WHERE id = ?`, j.BatchID).Scan(&j.MerchantID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: batch %s: %w", j.BatchID, store.ErrNotFound)
		}
		if err != nil {
			return wrap(op, err)
		}
		j.Status = store.JobUploading
		j.CreatedAt, j.UpdatedAt = coupon.UTC(j.CreatedAt), coupon.UTC(j.CreatedAt)
		_, err = tx.ExecContext(ctx, `INSERT INTO grant_jobs (id, batch_id, merchant_id, channel, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, j.ID, j.BatchID, j.MerchantID, j.Channel, string(j.Status),
			micros(j.CreatedAt), micros(j.UpdatedAt))
		if code, _, ok := constraint(err); ok && code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return fmt.Errorf("sqlite: grant job %s exists already: %w", j.ID, coupon.ErrConflict)
		}
		if err != nil {
			return wrap(op, err)
		}
		return nil
	})
}

// AddGrantUsers stores users of an uploading job, keeping lines stored already.
func (s *Store) AddGrantUsers(ctx context.Context, jobID string, users []store.GrantUser) error {
	op := "add users to grant job " + jobID
	return s.writeTx(ctx, op, func(tx *sql.Tx) error {
		if err := jobStatusIs(ctx, tx, jobID, store.JobUploading); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO grant_job_users (job_id, line, user_id) VALUES (?, ?, ?)
			ON CONFLICT (job_id, line) DO NOTHING`)
		if err != nil {
			return wrap(op, err)
		}
		defer stmt.Close()
		for _, u := range users {
			if _, err := stmt.ExecContext(ctx, jobID, u.Line, u.UserID); err != nil {
				return wrap(op, err)
			}
		}
		return nil
	})
}

func jobStatusIs(ctx context.Context, tx *sql.Tx, jobID string, want store.GrantJobStatus) error {
	var status string
	err := tx.QueryRowContext(ctx, `SELECT status FROM grant_jobs WHERE id = ?`, jobID).Scan(&status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: grant job %s: %w", jobID, store.ErrNotFound)
	case err != nil:
		return wrap("grant job "+jobID, err)
	case store.GrantJobStatus(status) != want:
		return fmt.Errorf("sqlite: grant job %s is %s, not %s: %w", jobID, status, want, store.ErrStatus)
	}
	return nil
}

// SealGrantJob ends a job's upload.
func (s *Store) SealGrantJob(ctx context.Context, jobID string, at time.Time) (*store.GrantJob, error) {
	op := "seal grant job " + jobID
	var j *store.GrantJob
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		if err := jobStatusIs(ctx, tx, jobID, store.JobUploading); err != nil {
			return err
		}
		status := store.JobPending
		if _, err := tx.ExecContext(ctx, `UPDATE grant_jobs SET status = ?, updated_at = ?,
			total = (SELECT count(*) FROM grant_job_users WHERE job_id = ?),
			last_line = (SELECT coalesce(max(line), 0) FROM grant_job_users WHERE job_id = ?) WHERE id = ?`,
			string(status), micros(coupon.UTC(at)), jobID, jobID, jobID); err != nil {
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
	var j *store.GrantJob
	err := s.readTx(ctx, "get grant job "+id, func(tx *sql.Tx) error {
		var err error
		j, err = getGrantJob(ctx, tx, id)
		return err
	})
	return j, err
}

func getGrantJob(ctx context.Context, tx *sql.Tx, id string) (*store.GrantJob, error) {
	var j store.GrantJob
	var status string
	var created, updated int64
	var finished sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT id, batch_id, merchant_id, channel, status, total, last_line, position,
		done_count, failed_count, created_at, updated_at, finished_at FROM grant_jobs WHERE id = ?`, id).
		Scan(&j.ID, &j.BatchID, &j.MerchantID, &j.Channel, &status, &j.Total, &j.LastLine, &j.Position,
			&j.Done, &j.Failed, &created, &updated, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: grant job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get grant job "+id, err)
	}
	j.Status = store.GrantJobStatus(status)
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = fromMicros(created), fromMicros(updated), fromNullMicros(finished)
	return &j, nil
}

// PendingGrantJobs lists pending jobs, oldest first.
func (s *Store) PendingGrantJobs(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT id FROM grant_jobs WHERE status = 'pending' ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, wrap("pending grant jobs", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("pending grant jobs", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("pending grant jobs", err)
	}
	return ids, nil
}

// GrantUsers returns users of a job after a line.
func (s *Store) GrantUsers(ctx context.Context, jobID string, afterLine int64, limit int) ([]store.GrantUser, error) {
	op := "users of grant job " + jobID
	rows, err := s.reader.QueryContext(ctx, `SELECT line, user_id FROM grant_job_users
		WHERE job_id = ? AND line > ? ORDER BY line LIMIT ?`, jobID, afterLine, max(limit, 1))
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []store.GrantUser
	for rows.Next() {
		var u store.GrantUser
		if err := rows.Scan(&u.Line, &u.UserID); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// AdvanceGrantJob records one step of a job, if its position is p.From.
func (s *Store) AdvanceGrantJob(ctx context.Context, p store.AdvanceGrantJob) (*store.GrantJob, error) {
	op := "advance grant job " + p.JobID
	var j *store.GrantJob
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		at := micros(coupon.UTC(p.At))
		res, err := tx.ExecContext(ctx, `UPDATE grant_jobs SET position = ?, done_count = done_count + ?,
			failed_count = failed_count + ?, updated_at = ?,
			status = CASE WHEN ? >= last_line THEN 'done' ELSE status END,
			finished_at = CASE WHEN ? >= last_line THEN ? ELSE finished_at END
			WHERE id = ? AND status = 'pending' AND position = ?`,
			p.To, p.Done, len(p.Failures), at, p.To, p.To, at, p.JobID, p.From)
		if err != nil {
			return wrap(op, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return wrap(op, err)
		} else if n == 0 {
			if _, err := getGrantJob(ctx, tx, p.JobID); err != nil {
				return err
			}
			return fmt.Errorf("sqlite: grant job %s is not pending at line %d: %w", p.JobID, p.From, store.ErrJobMoved)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO grant_job_failures (job_id, line, user_id, code, reason)
			VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return wrap(op, err)
		}
		defer stmt.Close()
		for _, f := range p.Failures {
			if _, err := stmt.ExecContext(ctx, p.JobID, f.Line, f.UserID, f.Code, f.Reason); err != nil {
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
	rows, err := s.reader.QueryContext(ctx, `SELECT line, user_id, code, reason FROM grant_job_failures
		WHERE job_id = ? AND line > ? ORDER BY line LIMIT ?`, jobID, afterLine, max(limit, 1))
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []store.GrantFailure
	for rows.Next() {
		var f store.GrantFailure
		if err := rows.Scan(&f.Line, &f.UserID, &f.Code, &f.Reason); err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}
