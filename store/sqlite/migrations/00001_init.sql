-- The first schema of coupond on SQLite.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; a nullable time
-- column is NULL for the zero time. String lists and tag maps are JSON TEXT,
-- NULL when empty. Tables are STRICT so that a value of the wrong type is an
-- error rather than silently stored.

-- +goose Up
CREATE TABLE batches (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL,
    merchant_id      TEXT    NOT NULL DEFAULT '',
    type             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    total_quantity   INTEGER NOT NULL,
    generated_count  INTEGER NOT NULL DEFAULT 0,
    generated_amount INTEGER NOT NULL DEFAULT 0,
    per_user_limit   INTEGER NOT NULL,
    claim_start      INTEGER,
    claim_end        INTEGER,
    claim_platforms  TEXT,
    channel          TEXT    NOT NULL DEFAULT '',
    ad_copy          TEXT    NOT NULL DEFAULT '',
    validity_days    INTEGER NOT NULL DEFAULT 0,
    validity_start   INTEGER,
    validity_end     INTEGER,
    amount_type      TEXT    NOT NULL,
    amount_value     INTEGER NOT NULL DEFAULT 0,
    amount_min       INTEGER NOT NULL DEFAULT 0,
    amount_max       INTEGER NOT NULL DEFAULT 0,
    amount_budget    INTEGER NOT NULL DEFAULT 0,
    min_spend        INTEGER NOT NULL DEFAULT 0,
    percent_off      INTEGER NOT NULL DEFAULT 0,
    usage_platforms  TEXT,
    code_prefix      TEXT    NOT NULL DEFAULT '',
    code_length      INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT batches_status CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    CONSTRAINT batches_total CHECK (total_quantity > 0),
    CONSTRAINT batches_generated CHECK (generated_count >= 0 AND generated_count <= total_quantity)
) STRICT;

-- ListBatches: newest first (IDs sort by creation time), optionally by status or merchant.
CREATE INDEX batches_status_id ON batches (status, id);
CREATE INDEX batches_merchant_id ON batches (merchant_id, id);

CREATE TABLE rules (
    id       INTEGER PRIMARY KEY,
    batch_id TEXT    NOT NULL REFERENCES batches (id),
    ref_type TEXT    NOT NULL,
    ref_id   TEXT    NOT NULL,
    use_type TEXT    NOT NULL,
    value    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX rules_batch ON rules (batch_id, id);
CREATE INDEX rules_ref ON rules (ref_type, ref_id);

-- codes is WITHOUT ROWID: its rows are small and always found by code, so
-- the primary key is the table itself. (batch_id, code) is unique so that a
-- claim's foreign key can demand that its code belongs to its batch.
CREATE TABLE codes (
    code       TEXT    NOT NULL PRIMARY KEY,
    batch_id   TEXT    NOT NULL REFERENCES batches (id),
    seq        INTEGER NOT NULL,
    amount     INTEGER NOT NULL,
    tags       TEXT,
    created_at INTEGER NOT NULL,
    CONSTRAINT codes_seq CHECK (seq > 0),
    CONSTRAINT codes_amount CHECK (amount > 0),
    CONSTRAINT codes_batch_seq UNIQUE (batch_id, seq),
    CONSTRAINT codes_batch_code UNIQUE (batch_id, code)
) STRICT, WITHOUT ROWID;

-- claims carries the batch attributes "my coupons" shows, so listing needs no join.
-- Every constraint here is one per-row outcome of InsertClaims:
--   UNIQUE (code)                         code already claimed
--   UNIQUE (batch_id, user_id, user_seq)  user sequence number taken
--   claims_idempotency                    idempotency key used
--   claims_code_fk                        code not of this batch (or unknown)
--   claims_user_seq                       sequence number beyond the per-user limit
CREATE TABLE claims (
    id              TEXT    NOT NULL PRIMARY KEY,
    batch_id        TEXT    NOT NULL,
    code            TEXT    NOT NULL UNIQUE,
    user_id         TEXT    NOT NULL,
    user_seq        INTEGER NOT NULL,
    user_limit      INTEGER NOT NULL,
    phone           TEXT    NOT NULL DEFAULT '',
    open_id         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    amount          INTEGER NOT NULL,
    valid_from      INTEGER NOT NULL,
    valid_to        INTEGER NOT NULL,
    claimed_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    platform        TEXT    NOT NULL DEFAULT '',
    channel         TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT,
    batch_name      TEXT    NOT NULL,
    merchant_id     TEXT    NOT NULL DEFAULT '',
    type            TEXT    NOT NULL,
    min_spend       INTEGER NOT NULL DEFAULT 0,
    percent_off     INTEGER NOT NULL DEFAULT 0,
    usage_platforms TEXT,
    CONSTRAINT claims_user_seq CHECK (user_seq BETWEEN 1 AND user_limit),
    CONSTRAINT claims_batch_user_seq UNIQUE (batch_id, user_id, user_seq),
    CONSTRAINT claims_code_fk FOREIGN KEY (batch_id, code) REFERENCES codes (batch_id, code)
) STRICT;

CREATE UNIQUE INDEX claims_idempotency ON claims (batch_id, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- "My coupons", ordered by expiry.
CREATE INDEX claims_user ON claims (user_id, valid_to, id);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    published_at INTEGER
) STRICT;

CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
DROP TABLE claims;
DROP TABLE codes;
DROP TABLE rules;
DROP TABLE batches;
