-- The search indexes of the optional claim columns leave out the claims
-- without a value: a claim with no merchant, phone or channel (stored as
-- '') is one index entry fewer to write on the claim path for each. A
-- search repeats the predicate (store/sqlite/query.go, where.sparse), which
-- lets SQLite use the partial index; it never searches for ''.

-- +goose Up
DROP INDEX claims_merchant_id;
DROP INDEX claims_phone_id;
DROP INDEX claims_channel_id;
CREATE INDEX claims_merchant_id ON claims (merchant_id, id) WHERE merchant_id <> '';
CREATE INDEX claims_phone_id ON claims (phone, id) WHERE phone <> '';
CREATE INDEX claims_channel_id ON claims (channel, id) WHERE channel <> '';

-- +goose Down
DROP INDEX claims_channel_id;
DROP INDEX claims_phone_id;
DROP INDEX claims_merchant_id;
CREATE INDEX claims_merchant_id ON claims (merchant_id, id);
CREATE INDEX claims_phone_id ON claims (phone, id);
CREATE INDEX claims_channel_id ON claims (channel, id);
