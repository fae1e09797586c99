-- Passive distribution: the file line each partner code was imported from,
-- and bulk grant jobs with their uploaded lists and failures.

-- +goose Up
-- import_line is the line of the CSV file a partner code came from (NULL for
-- a generated code): a later import of the same file tells a re-run of a
-- line (nothing to add) from a duplicate of another line.
ALTER TABLE codes ADD COLUMN import_line bigint;

-- A grant job grants batch_id to each user of its list, in line order;
-- position is the last line whose outcome is recorded, so a worker that
-- takes over a job after a crash resumes after it; total counts the users and
-- last_line is the line of the last one (blank lines keep their numbers).
CREATE TABLE grant_jobs (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    batch_id     text COLLATE "C" NOT NULL REFERENCES batches (id),
    merchant_id  text        NOT NULL DEFAULT '',
    channel      text        NOT NULL DEFAULT '',
    status       text        NOT NULL,
    total        bigint      NOT NULL DEFAULT 0,
    last_line    bigint      NOT NULL DEFAULT 0,
    position     bigint      NOT NULL DEFAULT 0,
    done_count   bigint      NOT NULL DEFAULT 0,
    failed_count bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    CONSTRAINT grant_jobs_status CHECK (status IN ('uploading', 'pending', 'done')),
    CONSTRAINT grant_jobs_position CHECK (position >= 0 AND position <= last_line)
);

CREATE INDEX grant_jobs_status ON grant_jobs (status, id);

CREATE TABLE grant_job_users (
    job_id  text COLLATE "C" NOT NULL REFERENCES grant_jobs (id),
    line    bigint NOT NULL,
    user_id text   NOT NULL,
    PRIMARY KEY (job_id, line)
);

CREATE TABLE grant_job_failures (
    job_id  text COLLATE "C" NOT NULL REFERENCES grant_jobs (id),
    line    bigint NOT NULL,
    user_id text   NOT NULL,
    code    text   NOT NULL,
    reason  text   NOT NULL,
    PRIMARY KEY (job_id, line)
);

-- +goose Down
DROP TABLE grant_job_failures;
DROP TABLE grant_job_users;
DROP TABLE grant_jobs;
ALTER TABLE codes DROP COLUMN import_line;
