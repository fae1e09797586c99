-- Hot and cold claims: settled claims (used, expired, refunded) older than
-- the archive age move from claims to claims_archive in small transactions
-- (store/postgres/archive.go: DELETE … RETURNING into the archive in one
-- statement), so the hot table, its indexes and "my coupons" hold live and
-- recent claims only. The hot table keeps every constraint it had: the
-- claim path's per-row outcomes come from them.
--
-- claims_archive is partitioned by month of claimed_at. Its partitions are
-- made ahead and dropped past the retention by worker.Archiver
-- (store/postgres/partition.go); claims_archive_default takes any claim no
-- monthly partition covers, so archival never fails for want of one. A
-- partitioned table's unique indexes must hold the partition key, so the
-- archive's indexes are plain: a claim reaches it once, from the hot table,
-- whose constraints made it unique.
--
-- A claim is in exactly one of the two tables at any moment, so claims_all,
-- their union, is every claim ever made: the engine's rebuild, the pool, the
-- per-user sequence numbers and the idempotent replays read it.
--
-- redemption_claims loses its foreign key to claims: a confirmed line's
-- claim may be archived. Reserve still writes a line only for a claim it
-- has just locked in the hot table.

-- +goose Up
ALTER TABLE redemption_claims DROP CONSTRAINT redemption_claims_claim_fk;

CREATE TABLE claims_archive (
    id              text COLLATE "C" NOT NULL,
    batch_id        text COLLATE "C" NOT NULL,
    code            text COLLATE "C" NOT NULL,
    user_id         text COLLATE "C" NOT NULL,
    user_seq        integer     NOT NULL,
    user_limit      integer     NOT NULL,
    phone           text        NOT NULL DEFAULT '',
    open_id         text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    amount          bigint      NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz NOT NULL,
    claimed_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    platform        text        NOT NULL DEFAULT '',
    channel         text        NOT NULL DEFAULT '',
    idempotency_key text COLLATE "C",
    batch_name      text        NOT NULL,
    merchant_id     text        NOT NULL DEFAULT '',
    type            text        NOT NULL,
    min_spend       bigint      NOT NULL DEFAULT 0,
    percent_off     integer     NOT NULL DEFAULT 0,
    usage_platforms text[]      NOT NULL DEFAULT '{}',
    archived_at     timestamptz NOT NULL
) PARTITION BY RANGE (claimed_at);

CREATE TABLE claims_archive_default PARTITION OF claims_archive DEFAULT;

CREATE INDEX claims_archive_id ON claims_archive (id);
CREATE INDEX claims_archive_code ON claims_archive (code);
CREATE INDEX claims_archive_batch_user_seq ON claims_archive (batch_id, user_id, user_seq);
CREATE INDEX claims_archive_idempotency ON claims_archive (batch_id, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- History of "my coupons", in the hot list's order.
CREATE INDEX claims_archive_user ON claims_archive (user_id, valid_to, id);

CREATE VIEW claims_all AS
    SELECT id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
        status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
        batch_name, merchant_id, type, min_spend, percent_off, usage_platforms
    FROM claims
    UNION ALL
    SELECT id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
        status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
        batch_name, merchant_id, type, min_spend, percent_off, usage_platforms
    FROM claims_archive;

-- +goose Down
-- Archived claims go back to the hot table first: nothing is lost.
INSERT INTO claims (id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
        status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
        batch_name, merchant_id, type, min_spend, percent_off, usage_platforms)
    SELECT id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
        status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
        batch_name, merchant_id, type, min_spend, percent_off, usage_platforms
    FROM claims_archive;
DROP VIEW claims_all;
DROP TABLE claims_archive;
ALTER TABLE redemption_claims ADD CONSTRAINT redemption_claims_claim_fk FOREIGN KEY (claim_id) REFERENCES claims (id);
