-- Queries: the indexes of back-office search, the statistics maintained from
-- the event stream, and the record of product tagging; the tables of the
-- SQLite schema in PostgreSQL's own types.
--
-- Search pages claims newest first by id (ids follow the claim time, so a
-- claim-time range is an id range too); each filter has a (column, id) index
-- that yields its claims in that order, so a page reads about as many rows
-- as it shows, at any table size (query plans in docs/queries.md). The user
-- and code filters use claims_user and the unique code. The indexes are
-- plain rather than partial: statements are planned generically, and a
-- generic plan cannot prove that a parameter satisfies an index predicate.

-- +goose Up
CREATE INDEX claims_batch_id ON claims (batch_id, id);
CREATE INDEX claims_merchant_id ON claims (merchant_id, id);
CREATE INDEX claims_status_id ON claims (status, id);
CREATE INDEX claims_phone_id ON claims (phone, id);
CREATE INDEX claims_channel_id ON claims (channel, id);

CREATE INDEX redemptions_user_id ON redemptions (user_id, id);
CREATE INDEX redemptions_status_id ON redemptions (status, id);
CREATE INDEX redemption_claims_batch ON redemption_claims (batch_id, redemption_id);

CREATE TABLE batch_stats (
    batch_id           text COLLATE "C" NOT NULL,
    hour               timestamptz NOT NULL,
    platform           text        NOT NULL,
    channel            text        NOT NULL,
    claimed            bigint      NOT NULL DEFAULT 0,
    claimed_amount     bigint      NOT NULL DEFAULT 0,
    redeemed           bigint      NOT NULL DEFAULT 0,
    discount           bigint      NOT NULL DEFAULT 0,
    discount_platform  bigint      NOT NULL DEFAULT 0,
    discount_merchant  bigint      NOT NULL DEFAULT 0,
    expired            bigint      NOT NULL DEFAULT 0,
    refunded           bigint      NOT NULL DEFAULT 0,
    refunded_discount  bigint      NOT NULL DEFAULT 0,
    reserved           bigint      NOT NULL DEFAULT 0,
    released           bigint      NOT NULL DEFAULT 0,
    CONSTRAINT batch_stats_pkey PRIMARY KEY (batch_id, hour, platform, channel)
);

CREATE TABLE stats_seen (
    key text COLLATE "C" NOT NULL,
    at  timestamptz NOT NULL,
    CONSTRAINT stats_seen_pkey PRIMARY KEY (key)
);
CREATE INDEX stats_seen_at ON stats_seen (at);

CREATE TABLE batch_flags (
    batch_id     text COLLATE "C" NOT NULL,
    stock_out_at timestamptz,
    tagged       boolean NOT NULL DEFAULT false,
    changed_at   timestamptz,
    CONSTRAINT batch_flags_pkey PRIMARY KEY (batch_id),
    CONSTRAINT batch_flags_batch_fk FOREIGN KEY (batch_id) REFERENCES batches (id)
);
CREATE INDEX batch_flags_tagged ON batch_flags (batch_id) WHERE tagged;

-- +goose Down
DROP TABLE batch_flags;
DROP TABLE stats_seen;
DROP TABLE batch_stats;
DROP INDEX redemption_claims_batch;
DROP INDEX redemptions_status_id;
DROP INDEX redemptions_user_id;
DROP INDEX claims_channel_id;
DROP INDEX claims_phone_id;
DROP INDEX claims_status_id;
DROP INDEX claims_merchant_id;
DROP INDEX claims_batch_id;
