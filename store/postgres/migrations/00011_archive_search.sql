-- Back-office search and its CSV export read the archive too (store.
-- QueryStore.SearchClaims): a support agent looking up a code, a phone or a
-- user, or a merchant exporting a batch, gets every claim, hot or archived.
-- The archive gets the hot table's search indexes, each (column, id), so
-- that each partition yields its matches newest first and a page is a
-- Merge Append of index scans, as on the hot table (docs/queries.md). The
-- user and code filters use claims_archive_user and claims_archive_code.

-- +goose Up
CREATE INDEX claims_archive_batch_id ON claims_archive (batch_id, id);
CREATE INDEX claims_archive_merchant_id ON claims_archive (merchant_id, id);
CREATE INDEX claims_archive_status_id ON claims_archive (status, id);
CREATE INDEX claims_archive_phone_id ON claims_archive (phone, id);
CREATE INDEX claims_archive_channel_id ON claims_archive (channel, id);

-- +goose Down
DROP INDEX claims_archive_channel_id;
DROP INDEX claims_archive_phone_id;
DROP INDEX claims_archive_status_id;
DROP INDEX claims_archive_merchant_id;
DROP INDEX claims_archive_batch_id;
