-- A batch's configuration version: 1 at creation, one more at each edit of the draft. Edits and
-- publications are conditioned on it, so codes drawn from one version never go out under another.

-- +goose Up
ALTER TABLE batches ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);

-- +goose Down
ALTER TABLE batches DROP COLUMN version;
