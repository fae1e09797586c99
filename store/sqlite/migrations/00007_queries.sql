-- Queries: the indexes of back-office search, the statistics maintained from
-- the event stream, and the record of product tagging.
--
-- Search pages claims newest first by id (ids follow the claim time, so a
-- claim-time range is an id range too); each filter has an index that
-- yields its claims in that order, so a page reads about as many rows as it
-- shows. The user and code filters use claims_user and the unique code.

-- +goose Up
CREATE INDEX claims_batch_id ON claims (batch_id, id);
CREATE INDEX claims_merchant_id ON claims (merchant_id, id);
CREATE INDEX claims_status_id ON claims (status, id);
CREATE INDEX claims_phone_id ON claims (phone, id);
CREATE INDEX claims_channel_id ON claims (channel, id);

-- Partial, or SQLite would prefer it to redemptions_tombstones for pruning;
-- searches repeat its predicate, which lets SQLite use it.
CREATE INDEX redemptions_user_id ON redemptions (user_id, id) WHERE user_id <> '';
-- No (status, id) on redemptions here: SQLite would prefer it to the
-- reconciler's partial index redemptions_due. A status search scans by id.
CREATE INDEX redemption_claims_batch ON redemption_claims (batch_id, redemption_id);

-- The statistics: one row per batch, hour (microseconds, truncated to the
-- hour), platform and channel. Days, batches and merchants are sums of rows.
CREATE TABLE batch_stats (
    batch_id           TEXT    NOT NULL,
    hour               INTEGER NOT NULL,
    platform           TEXT    NOT NULL,
    channel            TEXT    NOT NULL,
    claimed            INTEGER NOT NULL DEFAULT 0,
    claimed_amount     INTEGER NOT NULL DEFAULT 0,
    redeemed           INTEGER NOT NULL DEFAULT 0,
    discount           INTEGER NOT NULL DEFAULT 0,
    discount_platform  INTEGER NOT NULL DEFAULT 0,
    discount_merchant  INTEGER NOT NULL DEFAULT 0,
    expired            INTEGER NOT NULL DEFAULT 0,
    refunded           INTEGER NOT NULL DEFAULT 0,
    refunded_discount  INTEGER NOT NULL DEFAULT 0,
    reserved           INTEGER NOT NULL DEFAULT 0,
    released           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, hour, platform, channel)
) STRICT, WITHOUT ROWID;

-- The events (e:<id>) and once-only deltas (k:<key>) the statistics counted,
-- written in the transaction of the counts: a redelivered event counts once.
CREATE TABLE stats_seen (
    key TEXT    NOT NULL PRIMARY KEY,
    at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX stats_seen_at ON stats_seen (at);

-- Product tagging: whether a batch's last code is claimed, and whether its
-- products are tagged (what the engine must hold).
CREATE TABLE batch_flags (
    batch_id     TEXT    NOT NULL PRIMARY KEY REFERENCES batches (id),
    stock_out_at INTEGER,
    tagged       INTEGER NOT NULL DEFAULT 0,
    changed_at   INTEGER
) STRICT;
CREATE INDEX batch_flags_tagged ON batch_flags (tagged, batch_id);

-- +goose Down
DROP TABLE batch_flags;
DROP TABLE stats_seen;
DROP TABLE batch_stats;
DROP INDEX redemption_claims_batch;
DROP INDEX redemptions_user_id;
DROP INDEX claims_channel_id;
DROP INDEX claims_phone_id;
DROP INDEX claims_status_id;
DROP INDEX claims_merchant_id;
DROP INDEX claims_batch_id;
