-- The first schema of coupond on PostgreSQL: the tables and constraints of
-- the SQLite schema, in PostgreSQL's own types.
--
-- Times are timestamptz (microseconds, the precision the domain keeps); a
-- nullable time column is NULL for the zero time. Money is bigint minor
-- units. String lists are text[], empty rather than NULL; a code's tags are
-- jsonb, NULL when there are none. Identifiers (IDs, codes, users, keys) use
-- the "C" collation: byte order, as Go sorts them, which keyset pagination
-- relies on, and cheaper to compare than a linguistic collation.

-- +goose Up
CREATE TABLE batches (
    id               text COLLATE "C" NOT NULL,
    name             text        NOT NULL,
    merchant_id      text COLLATE "C" NOT NULL DEFAULT '',
    type             text        NOT NULL,
    status           text        NOT NULL,
    total_quantity   bigint      NOT NULL,
    generated_count  bigint      NOT NULL DEFAULT 0,
    generated_amount bigint      NOT NULL DEFAULT 0,
    per_user_limit   integer     NOT NULL,
    claim_start      timestamptz,
    claim_end        timestamptz,
    claim_platforms  text[]      NOT NULL DEFAULT '{}',
    channel          text        NOT NULL DEFAULT '',
    ad_copy          text        NOT NULL DEFAULT '',
    validity_days    integer     NOT NULL DEFAULT 0,
    validity_start   timestamptz,
    validity_end     timestamptz,
    amount_type      text        NOT NULL,
    amount_value     bigint      NOT NULL DEFAULT 0,
    amount_min       bigint      NOT NULL DEFAULT 0,
    amount_max       bigint      NOT NULL DEFAULT 0,
    amount_budget    bigint      NOT NULL DEFAULT 0,
    min_spend        bigint      NOT NULL DEFAULT 0,
    percent_off      integer     NOT NULL DEFAULT 0,
    usage_platforms  text[]      NOT NULL DEFAULT '{}',
    code_prefix      text        NOT NULL DEFAULT '',
    code_length      integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT batches_pkey PRIMARY KEY (id),
    CONSTRAINT batches_status CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    CONSTRAINT batches_total CHECK (total_quantity > 0),
    CONSTRAINT batches_generated CHECK (generated_count >= 0 AND generated_count <= total_quantity)
);

-- ListBatches: newest first (IDs sort by creation time), optionally by status or merchant.
CREATE INDEX batches_status_id ON batches (status, id);
CREATE INDEX batches_merchant_id ON batches (merchant_id, id);

CREATE TABLE rules (
    id       bigint GENERATED ALWAYS AS IDENTITY,
    batch_id text COLLATE "C" NOT NULL,
    ref_type text   NOT NULL,
    ref_id   text   NOT NULL,
    use_type text   NOT NULL,
    value    bigint NOT NULL DEFAULT 0,
    CONSTRAINT rules_pkey PRIMARY KEY (id),
    CONSTRAINT rules_batch_fk FOREIGN KEY (batch_id) REFERENCES batches (id)
);

CREATE INDEX rules_batch ON rules (batch_id, id);
CREATE INDEX rules_ref ON rules (ref_type, ref_id);

-- (batch_id, code) is unique so that a claim's foreign key can demand that
-- its code belongs to its batch; (batch_id, seq) gives the pool its order.
CREATE TABLE codes (
    code       text COLLATE "C" NOT NULL,
    batch_id   text COLLATE "C" NOT NULL,
    seq        bigint      NOT NULL,
    amount     bigint      NOT NULL,
    tags       jsonb,
    created_at timestamptz NOT NULL,
    CONSTRAINT codes_pkey PRIMARY KEY (code),
    CONSTRAINT codes_batch_fk FOREIGN KEY (batch_id) REFERENCES batches (id),
    CONSTRAINT codes_seq CHECK (seq > 0),
    CONSTRAINT codes_amount CHECK (amount > 0),
    CONSTRAINT codes_batch_seq UNIQUE (batch_id, seq),
    CONSTRAINT codes_batch_code UNIQUE (batch_id, code)
);

-- claims carries the batch attributes "my coupons" shows, so listing needs no join.
-- Every constraint here is one per-row outcome of InsertClaims, told apart by
-- its name (the store reads pgconn.PgError.ConstraintName):
--   claims_pkey            23505  the claim exists already (coupon.ErrConflict)
--   claims_code            23505  code already claimed
--   claims_batch_user_seq  23505  user sequence number taken
--   claims_idempotency     23505  idempotency key used
--   claims_code_fk         23503  code not of this batch (or unknown)
--   claims_user_seq        23514  sequence number beyond the per-user limit
-- The unique indexes are created in this order, which is the order in which
-- PostgreSQL checks them; the store's own diagnosis follows it too.
CREATE TABLE claims (
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
    CONSTRAINT claims_pkey PRIMARY KEY (id),
    CONSTRAINT claims_code UNIQUE (code),
    -- Also the (batch_id) prefix index that ClaimedCount and Snapshot read.
    CONSTRAINT claims_batch_user_seq UNIQUE (batch_id, user_id, user_seq),
    CONSTRAINT claims_user_seq CHECK (user_seq BETWEEN 1 AND user_limit),
    CONSTRAINT claims_code_fk FOREIGN KEY (batch_id, code) REFERENCES codes (batch_id, code)
);

CREATE UNIQUE INDEX claims_idempotency ON claims (batch_id, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- "My coupons", ordered by expiry.
CREATE INDEX claims_user ON claims (user_id, valid_to, id);

-- Ids are taken from the sequence when a row is inserted, not when it is
-- committed, so a smaller id can become visible after a larger one; the relay
-- therefore reads every unpublished row (published_at IS NULL) rather than
-- the rows above a high-water mark, and misses none. payload is json rather
-- than jsonb: validated, but kept byte for byte as the writer made it.
CREATE TABLE outbox (
    id           bigserial,
    type         text        NOT NULL,
    aggregate_id text        NOT NULL,
    payload      json        NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz,
    CONSTRAINT outbox_pkey PRIMARY KEY (id)
);

CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
DROP TABLE claims;
DROP TABLE codes;
DROP TABLE rules;
DROP TABLE batches;
