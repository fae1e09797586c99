-- Hot and cold claims: settled claims (used, expired, refunded) older than
-- the archive age move from claims to claims_archive in small transactions
-- (store/sqlite/archive.go), so the hot table, its indexes and "my coupons"
-- hold live and recent claims only. The hot table keeps every constraint it
-- had: the claim path's per-row outcomes come from them.
--
-- A claim is in exactly one of the two tables at any moment (it moves in
-- one transaction), so claims_all, their union, is every claim ever made:
-- the engine's rebuild, the pool, the per-user sequence numbers and the
-- idempotent replays read it, and a code or sequence number that went to
-- the archive is never handed out again.
--
-- redemption_claims loses its foreign key to claims (rebuilt below, SQLite
-- cannot drop a constraint): a confirmed line's claim may be archived. The
-- line keeps the claim's id, batch and code; Reserve still writes a line
-- only for a claim it has just locked in the hot table.

-- +goose Up
CREATE TABLE claims_archive (
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
    archived_at     INTEGER NOT NULL,
    CONSTRAINT claims_archive_batch_user_seq UNIQUE (batch_id, user_id, user_seq)
) STRICT;

CREATE INDEX claims_archive_idempotency ON claims_archive (batch_id, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- History of "my coupons", in the hot list's order.
CREATE INDEX claims_archive_user ON claims_archive (user_id, valid_to, id);
-- Retention: the oldest claims go first.
CREATE INDEX claims_archive_claimed ON claims_archive (claimed_at);

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

CREATE TABLE redemption_claims_new (
    redemption_id TEXT    NOT NULL REFERENCES redemptions (id),
    claim_id      TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    batch_id      TEXT    NOT NULL,
    code          TEXT    NOT NULL,
    discount      INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    lines         TEXT    NOT NULL, -- JSON []coupon.Line
    PRIMARY KEY (redemption_id, claim_id),
    CONSTRAINT redemption_claims_discount CHECK (discount >= 0),
    CONSTRAINT redemption_claims_status CHECK (status IN ('reserved', 'confirmed', 'released', 'returned', 'refunded'))
) STRICT;
INSERT INTO redemption_claims_new SELECT redemption_id, claim_id, position, batch_id, code, discount, status, lines
    FROM redemption_claims;
DROP TABLE redemption_claims;
ALTER TABLE redemption_claims_new RENAME TO redemption_claims;
CREATE UNIQUE INDEX redemption_claims_held ON redemption_claims (claim_id) WHERE status IN ('reserved', 'confirmed');
CREATE INDEX redemption_claims_batch ON redemption_claims (batch_id, redemption_id);

-- +goose Down
-- Archived claims go back to the hot table first: nothing is lost.
INSERT INTO claims (id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
    status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
    batch_name, merchant_id, type, min_spend, percent_off, usage_platforms)
    SELECT id, batch_id, code, user_id, user_seq, user_limit, phone, open_id,
    status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key,
    batch_name, merchant_id, type, min_spend, percent_off, usage_platforms FROM claims_archive;
CREATE TABLE redemption_claims_old (
    redemption_id TEXT    NOT NULL REFERENCES redemptions (id),
    claim_id      TEXT    NOT NULL REFERENCES claims (id),
    position      INTEGER NOT NULL,
    batch_id      TEXT    NOT NULL,
    code          TEXT    NOT NULL,
    discount      INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    lines         TEXT    NOT NULL,
    PRIMARY KEY (redemption_id, claim_id),
    CONSTRAINT redemption_claims_discount CHECK (discount >= 0),
    CONSTRAINT redemption_claims_status CHECK (status IN ('reserved', 'confirmed', 'released', 'returned', 'refunded'))
) STRICT;
INSERT INTO redemption_claims_old SELECT redemption_id, claim_id, position, batch_id, code, discount, status, lines
    FROM redemption_claims;
DROP TABLE redemption_claims;
ALTER TABLE redemption_claims_old RENAME TO redemption_claims;
CREATE UNIQUE INDEX redemption_claims_held ON redemption_claims (claim_id) WHERE status IN ('reserved', 'confirmed');
CREATE INDEX redemption_claims_batch ON redemption_claims (batch_id, redemption_id);
DROP VIEW claims_all;
DROP TABLE claims_archive;
