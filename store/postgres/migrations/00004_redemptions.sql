-- Redemption: orders' use of claims, and the expiry sweeper's state; the
-- tables of the SQLite schema in PostgreSQL's own types (jsonb for the cart,
-- the refunds and the lines).
--
-- A claim is held by at most one reserved or confirmed line: the unique index
-- redemption_claims_held backs the conditional updates of claims.status
-- (DESIGN.md invariant 2). Nothing here adds an index to claims, so the
-- claim path and "my coupons" cost what they did.

-- +goose Up
CREATE TABLE redemptions (
    id               text COLLATE "C" NOT NULL,
    order_id         text COLLATE "C" NOT NULL,
    user_id          text COLLATE "C" NOT NULL DEFAULT '', -- '' for a cancellation that came before any reservation
    status           text        NOT NULL,
    platform         text        NOT NULL DEFAULT '',
    node             text        NOT NULL DEFAULT '',
    discount         bigint      NOT NULL DEFAULT 0,
    cart             jsonb       NOT NULL,
    refunds          jsonb,
    reason           text        NOT NULL DEFAULT '',
    order_system_url text        NOT NULL DEFAULT '',
    request_hash     text        NOT NULL DEFAULT '',
    reserved_at      timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    confirmed_at     timestamptz,
    cancelled_at     timestamptz,
    refunded_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    check_attempts   integer     NOT NULL DEFAULT 0,
    next_check_at    timestamptz NOT NULL,
    review_reason    text,
    review_since     timestamptz,
    version          bigint      NOT NULL DEFAULT 1,
    CONSTRAINT redemptions_pkey PRIMARY KEY (id),
    CONSTRAINT redemptions_order UNIQUE (order_id),
    CONSTRAINT redemptions_status CHECK (status IN ('reserved', 'confirmed', 'cancelled', 'partially_refunded', 'refunded')),
    CONSTRAINT redemptions_discount CHECK (discount >= 0)
);

-- The reconciler: reservations whose next check is due, not waiting for an operator.
CREATE INDEX redemptions_due ON redemptions (next_check_at, id) WHERE status = 'reserved' AND review_reason IS NULL;
-- The review list.
CREATE INDEX redemptions_review ON redemptions (id) WHERE review_reason IS NOT NULL;
-- Pruning old tombstones.
CREATE INDEX redemptions_tombstones ON redemptions (updated_at) WHERE user_id = '';

CREATE TABLE redemption_claims (
    redemption_id text COLLATE "C" NOT NULL,
    claim_id      text COLLATE "C" NOT NULL,
    position      integer NOT NULL,
    batch_id      text COLLATE "C" NOT NULL,
    code          text COLLATE "C" NOT NULL,
    discount      bigint  NOT NULL,
    status        text    NOT NULL,
    lines         jsonb   NOT NULL,
    CONSTRAINT redemption_claims_pkey PRIMARY KEY (redemption_id, claim_id),
    CONSTRAINT redemption_claims_redemption_fk FOREIGN KEY (redemption_id) REFERENCES redemptions (id),
    CONSTRAINT redemption_claims_claim_fk FOREIGN KEY (claim_id) REFERENCES claims (id),
    CONSTRAINT redemption_claims_discount CHECK (discount >= 0),
    CONSTRAINT redemption_claims_status CHECK (status IN ('reserved', 'confirmed', 'released', 'returned', 'refunded'))
);

-- A claim is in at most one reserved or confirmed line.
CREATE UNIQUE INDEX redemption_claims_held ON redemption_claims (claim_id) WHERE status IN ('reserved', 'confirmed');

-- Where the expiry sweeper is with each batch; NULL times are "never".
CREATE TABLE claim_expiry (
    batch_id    text COLLATE "C" NOT NULL,
    next_at     timestamptz,          -- the next pass is due
    noticed_to  timestamptz,          -- claim.expiring written for claims ending up to here
    pass_from   timestamptz,          -- the notice window of the pass in progress
    pass_to     timestamptz,
    cursor_user text COLLATE "C",     -- the last claim the pass swept
    cursor_seq  integer,
    finished    boolean NOT NULL DEFAULT false,
    CONSTRAINT claim_expiry_pkey PRIMARY KEY (batch_id),
    CONSTRAINT claim_expiry_batch_fk FOREIGN KEY (batch_id) REFERENCES batches (id)
);

-- +goose Down
DROP TABLE claim_expiry;
DROP TABLE redemption_claims;
DROP TABLE redemptions;
