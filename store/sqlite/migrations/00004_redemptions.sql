-- Redemption: orders' use of claims, and the expiry sweeper's state.
--
-- A redemption is one order's use of one or more claims; redemption_claims
-- holds one line per claim with the discount split over the cart (JSON). A
-- claim is held by at most one reserved or confirmed line: the unique index
-- redemption_claims_held backs the conditional updates of claims.status
-- (DESIGN.md invariant 2). Nothing here adds an index to claims, so the
-- claim path and "my coupons" cost what they did.

-- +goose Up
CREATE TABLE redemptions (
    id               TEXT    NOT NULL PRIMARY KEY,
    order_id         TEXT    NOT NULL,
    user_id          TEXT    NOT NULL DEFAULT '', -- '' for a cancellation that came before any reservation
    status           TEXT    NOT NULL,
    platform         TEXT    NOT NULL DEFAULT '',
    node             TEXT    NOT NULL DEFAULT '',
    discount         INTEGER NOT NULL DEFAULT 0,
    cart             TEXT    NOT NULL,            -- JSON coupon.Cart
    refunds          TEXT,                        -- JSON []coupon.Refund, NULL when none
    reason           TEXT    NOT NULL DEFAULT '',
    order_system_url TEXT    NOT NULL DEFAULT '',
    request_hash     TEXT    NOT NULL DEFAULT '',
    reserved_at      INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    confirmed_at     INTEGER,
    cancelled_at     INTEGER,
    refunded_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    check_attempts   INTEGER NOT NULL DEFAULT 0,
    next_check_at    INTEGER NOT NULL,
    review_reason    TEXT,
    review_since     INTEGER,
    version          INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT redemptions_order UNIQUE (order_id),
    CONSTRAINT redemptions_status CHECK (status IN ('reserved', 'confirmed', 'cancelled', 'partially_refunded', 'refunded')),
    CONSTRAINT redemptions_discount CHECK (discount >= 0)
) STRICT;

-- The reconciler: reservations whose next check is due, not waiting for an operator.
CREATE INDEX redemptions_due ON redemptions (next_check_at, id) WHERE status = 'reserved' AND review_reason IS NULL;
-- The review list.
CREATE INDEX redemptions_review ON redemptions (id) WHERE review_reason IS NOT NULL;
-- Pruning old tombstones.
CREATE INDEX redemptions_tombstones ON redemptions (updated_at) WHERE user_id = '';

CREATE TABLE redemption_claims (
    redemption_id TEXT    NOT NULL REFERENCES redemptions (id),
    claim_id      TEXT    NOT NULL REFERENCES claims (id),
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

-- A claim is in at most one reserved or confirmed line.
CREATE UNIQUE INDEX redemption_claims_held ON redemption_claims (claim_id) WHERE status IN ('reserved', 'confirmed');

-- Where the expiry sweeper is with each batch. Times as elsewhere; 0 is "never".
CREATE TABLE claim_expiry (
    batch_id    TEXT    NOT NULL PRIMARY KEY REFERENCES batches (id),
    next_at     INTEGER NOT NULL DEFAULT 0, -- the next pass is due
    noticed_to  INTEGER NOT NULL DEFAULT 0, -- claim.expiring written for claims ending up to here
    pass_from   INTEGER,                    -- the notice window of the pass in progress
    pass_to     INTEGER,
    cursor_user TEXT,                       -- the last claim the pass swept
    cursor_seq  INTEGER,
    finished    INTEGER NOT NULL DEFAULT 0
) STRICT;

-- +goose Down
DROP TABLE claim_expiry;
DROP TABLE redemption_claims;
DROP TABLE redemptions;
