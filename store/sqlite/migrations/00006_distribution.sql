-- Passive distribution: the file line each partner code was imported from,
-- and bulk grant jobs with their uploaded lists and failures.

-- +goose Up
-- import_line is the line of the CSV file a partner code came from (NULL for
-- a generated code): a later import of the same file tells a re-run of a
-- line (nothing to add) from a duplicate of another line.
ALTER TABLE codes ADD COLUMN import_line INTEGER;

-- A grant job grants batch_id to each user of its list, in line order;
-- position is the last line whose outcome is recorded, so a worker that
-- takes over a job after a crash resumes after it; total counts the users and
-- last_line is the line of the last one (blank lines keep their numbers).
CREATE TABLE grant_jobs (
    id           TEXT    NOT NULL PRIMARY KEY,
    batch_id     TEXT    NOT NULL REFERENCES batches (id),
    merchant_id  TEXT    NOT NULL DEFAULT '',
    channel      TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL,
    total        INTEGER NOT NULL DEFAULT 0,
    last_line    INTEGER NOT NULL DEFAULT 0,
    position     INTEGER NOT NULL DEFAULT 0,
    done_count   INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    CONSTRAINT grant_jobs_status CHECK (status IN ('uploading', 'pending', 'done')),
    CONSTRAINT grant_jobs_position CHECK (position >= 0 AND position <= last_line)
) STRICT;

CREATE INDEX grant_jobs_status ON grant_jobs (status, id);

CREATE TABLE grant_job_users (
    job_id  TEXT    NOT NULL REFERENCES grant_jobs (id),
    line    INTEGER NOT NULL,
    user_id TEXT    NOT NULL,
    PRIMARY KEY (job_id, line)
) STRICT, WITHOUT ROWID;

CREATE TABLE grant_job_failures (
    job_id  TEXT    NOT NULL REFERENCES grant_jobs (id),
    line    INTEGER NOT NULL,
    user_id TEXT    NOT NULL,
    code    TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    PRIMARY KEY (job_id, line)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE grant_job_failures;
DROP TABLE grant_job_users;
DROP TABLE grant_jobs;
ALTER TABLE codes DROP COLUMN import_line;
