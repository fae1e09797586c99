-- Time partitions for the tables that grow with every event: the outbox,
-- the record of the events the statistics counted, and settled redemptions
-- (an archive, as for claims). Partitions are made ahead and dropped past
-- their retention by the archiver's maintenance pass (worker.Archiver →
-- store/postgres/partition.go): made as plain tables and ATTACHed, which
-- locks the parent in SHARE UPDATE EXCLUSIVE mode and so blocks none of its
-- writers; dropped under a short lock timeout, only once nothing in them is
-- still needed. Each table has a DEFAULT partition for any row no partition
-- covers, so a write never fails for want of one.
--
-- outbox: by day of created_at. A partitioned table's unique keys must hold
-- the partition key, so the primary key becomes (id, created_at); ids still
-- come from outbox_id_seq, one sequence for all partitions, and stay unique.
-- The relay's reads keep their indexes: PendingEvents merges the partial
-- index outbox_pending (id) WHERE published_at IS NULL of each partition,
-- and MarkPublished probes it by id in each partition (a few days of
-- partitions: a handful of probes of mostly empty indexes). Published events
-- were never deleted before; a day's partition is now dropped whole once
-- the retention has passed and it holds no unpublished event.
--
-- The existing rows are not copied: the old table becomes the partition
-- outbox_before_y<today> (FROM MINVALUE TO today), after today's rows are
-- moved to today's new partition; only its (id, created_at) key is built.
--
-- stats_events: the ids of the counted events, by day of the event's own
-- time (occurred_at), which is the same on every delivery: a redelivered
-- event meets its first record in the same partition, whose primary key
-- (id, occurred_at) refuses it, even when the redelivery comes on another
-- day. Partitioning by the time of counting would put a redelivery after
-- midnight in another partition, where the key could not see the first
-- record. recorded_at (when it was counted) decides retention: a partition
-- is dropped once its days are past the dedupe window and nothing was
-- recorded in it within the window, so a late event (the consumer was
-- paused) keeps its record as long as an early one. Events without a time
-- are recorded with occurred_at = infinity, in the default partition,
-- pruned by recorded_at. The once-only keys of deltas ("k:…") stay in
-- stats_seen: they are not tied to one event's time.
--
-- redemptions_archive and redemption_claims_archive: settled redemptions
-- and their lines, moved out of the hot tables by the archiver once nothing
-- can change them (store/postgres/redemption_archive.go), by month of
-- reserved_at, made ahead and dropped past COUPOND_ARCHIVE_RETENTION with
-- the claims archive. The hot tables keep their constraints: an order id
-- is unique there (redemptions_order), and Reserve and InsertTombstone look
-- up the archive's order index before they commit, so an order is redeemed
-- at most once across both; a claim is held by at most one reserved or
-- confirmed line (redemption_claims_held), and only redemptions none of
-- whose held lines has a hot claim are archived.

-- +goose Up
-- The outbox.
ALTER TABLE outbox RENAME TO outbox_history;
ALTER TABLE outbox_history DROP CONSTRAINT outbox_pkey;
ALTER TABLE outbox_history ALTER COLUMN id DROP DEFAULT;
ALTER INDEX outbox_pending RENAME TO outbox_history_pending;
CREATE TABLE outbox (
    id           bigint      NOT NULL DEFAULT nextval('outbox_id_seq'),
    type         text        NOT NULL,
    aggregate_id text        NOT NULL,
    payload      json        NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz,
    CONSTRAINT outbox_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE TABLE outbox_default PARTITION OF outbox DEFAULT;

-- The record of counted events.
CREATE TABLE stats_events (
    id          bigint      NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    CONSTRAINT stats_events_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- Rows arrive in the order they are recorded: a BRIN index answers "was
-- anything recorded here lately" for the retention at almost no cost.
CREATE INDEX stats_events_recorded ON stats_events USING brin (recorded_at);
CREATE TABLE stats_events_default PARTITION OF stats_events DEFAULT;

-- +goose StatementBegin
DO $$
DECLARE
    today timestamptz := date_trunc('day', now(), 'UTC');
    parent text;
    d int;
BEGIN
    -- Today and the next two days, until the maintenance pass makes more.
    FOREACH parent IN ARRAY ARRAY['outbox', 'stats_events'] LOOP
        FOR d IN 0..2 LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                parent || '_' || to_char((today + d * interval '24 hours') AT TIME ZONE 'UTC', '"y"YYYY"m"MM"d"DD'), parent,
                today + d * interval '24 hours', today + (d + 1) * interval '24 hours');
        END LOOP;
    END LOOP;

    -- The outbox's rows of today and later move to the new partitions; the
    -- old table, left with the rows before today, becomes a partition.
    WITH moved AS (DELETE FROM outbox_history WHERE created_at >= today RETURNING *)
    INSERT INTO outbox (id, type, aggregate_id, payload, created_at, published_at)
        SELECT id, type, aggregate_id, payload, created_at, published_at FROM moved;
    ALTER TABLE outbox_history ADD CONSTRAINT outbox_history_pkey PRIMARY KEY (id, created_at);
    EXECUTE format('ALTER TABLE outbox_history RENAME TO %I',
        'outbox_before_' || to_char(today AT TIME ZONE 'UTC', '"y"YYYY"m"MM"d"DD'));
    EXECUTE format('ALTER TABLE outbox ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
        'outbox_before_' || to_char(today AT TIME ZONE 'UTC', '"y"YYYY"m"MM"d"DD'), today);
    EXECUTE format('CREATE TABLE %I PARTITION OF stats_events FOR VALUES FROM (MINVALUE) TO (%L)',
        'stats_events_before_' || to_char(today AT TIME ZONE 'UTC', '"y"YYYY"m"MM"d"DD'), today);
END $$;
-- +goose StatementEnd

-- The events' records leave stats_seen, each at the time of its event (the
-- outbox row's creation time, which its envelope carries).
INSERT INTO stats_events (id, occurred_at, recorded_at)
    SELECT e.id, coalesce(o.created_at, 'infinity'), e.at
    FROM (SELECT substr(key, 3)::bigint AS id, at FROM stats_seen WHERE key LIKE 'e:%') e
    LEFT JOIN outbox o ON o.id = e.id;
DELETE FROM stats_seen WHERE key LIKE 'e:%';

-- The redemption archive.
CREATE TABLE redemptions_archive (
    id               text COLLATE "C" NOT NULL,
    order_id         text COLLATE "C" NOT NULL,
    user_id          text COLLATE "C" NOT NULL,
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
    archived_at      timestamptz NOT NULL
) PARTITION BY RANGE (reserved_at);
CREATE TABLE redemptions_archive_default PARTITION OF redemptions_archive DEFAULT;
CREATE INDEX redemptions_archive_id ON redemptions_archive (id);
CREATE INDEX redemptions_archive_order ON redemptions_archive (order_id);
CREATE INDEX redemptions_archive_user_id ON redemptions_archive (user_id, id);
CREATE INDEX redemptions_archive_status_id ON redemptions_archive (status, id);

CREATE TABLE redemption_claims_archive (
    redemption_id text COLLATE "C" NOT NULL,
    claim_id      text COLLATE "C" NOT NULL,
    position      integer     NOT NULL,
    batch_id      text COLLATE "C" NOT NULL,
    code          text COLLATE "C" NOT NULL,
    discount      bigint      NOT NULL,
    status        text        NOT NULL,
    lines         jsonb       NOT NULL,
    reserved_at   timestamptz NOT NULL -- its redemption's: the two are dropped together
) PARTITION BY RANGE (reserved_at);
CREATE TABLE redemption_claims_archive_default PARTITION OF redemption_claims_archive DEFAULT;
CREATE INDEX redemption_claims_archive_redemption ON redemption_claims_archive (redemption_id, position);
CREATE INDEX redemption_claims_archive_batch ON redemption_claims_archive (batch_id, redemption_id);

-- +goose Down
-- Archived redemptions go back to the hot tables first: nothing is lost.
INSERT INTO redemptions (id, order_id, user_id, status, platform, node, discount, cart, refunds, reason,
        order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at,
        check_attempts, next_check_at, review_reason, review_since, version)
    SELECT id, order_id, user_id, status, platform, node, discount, cart, refunds, reason,
        order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at,
        check_attempts, next_check_at, review_reason, review_since, version
    FROM redemptions_archive;
INSERT INTO redemption_claims (redemption_id, claim_id, position, batch_id, code, discount, status, lines)
    SELECT redemption_id, claim_id, position, batch_id, code, discount, status, lines FROM redemption_claims_archive;
DROP TABLE redemption_claims_archive;
DROP TABLE redemptions_archive;

INSERT INTO stats_seen (key, at) SELECT 'e:' || id, recorded_at FROM stats_events ON CONFLICT DO NOTHING;
DROP TABLE stats_events;

CREATE TABLE outbox_plain (
    id           bigint      NOT NULL DEFAULT nextval('outbox_id_seq'),
    type         text        NOT NULL,
    aggregate_id text        NOT NULL,
    payload      json        NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz,
    CONSTRAINT outbox_plain_pkey PRIMARY KEY (id)
);
INSERT INTO outbox_plain (id, type, aggregate_id, payload, created_at, published_at)
    SELECT id, type, aggregate_id, payload, created_at, published_at FROM outbox;
ALTER SEQUENCE outbox_id_seq OWNED BY outbox_plain.id;
DROP TABLE outbox;
ALTER TABLE outbox_plain RENAME TO outbox;
ALTER TABLE outbox RENAME CONSTRAINT outbox_plain_pkey TO outbox_pkey;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
