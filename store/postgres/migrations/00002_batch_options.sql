-- Batch settings that no query filters on, as one JSON object (coupon.BatchOptions):
-- adding such a setting needs no migration.

-- +goose Up
ALTER TABLE batches ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE batches DROP COLUMN options;
