-- The data of `bench/queryplans/run archive`: 2 million claims, one every
-- 15.8 seconds over the year to 2026-12-01 (ids follow claim time), 400
-- batches of 40 merchants, 400,000 users, 600,000 phones, 20 channels;
-- claims older than 37 days that were still available are expired (as the
-- sweeper would have), then every settled claim older than 30 days moves to
-- claims_archive, in the monthly partitions the archiver makes: about 1.8
-- million archived, 0.2 million hot. 200,000 redemptions, their settled
-- ones archived the same way.
SET search_path = plansarch;
SET session_replication_role = replica; -- no FK checks while loading
SET maintenance_work_mem = '256MB';
SET synchronous_commit = off;
CREATE OR REPLACE FUNCTION b32(v bigint, n int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((v >> (5*(n-1-k))) & 31)::int + 1, 1), '' ORDER BY k)
  FROM generate_series(0, n-1) k $$;
INSERT INTO batches (id, name, merchant_id, type, status, total_quantity, generated_count, per_user_limit, amount_type, amount_value, created_at, updated_at)
SELECT 'b' || lpad(b::text, 5, '0'), 'batch ' || b, 'm-' || (b % 40), 'cash', 'active', 5000, 5000, 10, 'fixed', 500, '2025-11-30Z', '2025-11-30Z'
FROM generate_series(0, 399) b;
\timing on
INSERT INTO codes (code, batch_id, seq, amount, created_at)
SELECT 'C' || lpad(i::text, 10, '0'), 'b' || lpad((i % 400)::text, 5, '0'), i / 400 + 1, 500, '2025-11-30Z'::timestamptz + (i / 400) * interval '1 second'
FROM generate_series(1, 2000000) i;
INSERT INTO claims (id, batch_id, code, user_id, user_seq, user_limit, phone, status, amount, valid_from, valid_to, claimed_at, updated_at,
  platform, channel, batch_name, merchant_id, type)
SELECT b32((extract(epoch FROM t) * 1000)::bigint, 10) || b32(i::bigint * 2654435761 % 1099511627776, 8) || b32(i, 8),
  'b' || lpad((i % 400)::text, 5, '0'), 'C' || lpad(i::text, 10, '0'), 'u' || ((i::bigint * 7919) % 400000), i / 400000 + 1, 10,
  '1' || lpad(((i::bigint * 31) % 600000)::text, 10, '0'),
  CASE WHEN t < '2026-10-25Z' AND i % 100 < 73 THEN 'expired'
    WHEN i % 100 < 70 THEN 'available' WHEN i % 100 < 85 THEN 'used' WHEN i % 100 < 95 THEN 'expired' WHEN i % 100 < 98 THEN 'locked' ELSE 'refunded' END,
  500, t, t + interval '7 days', t, t + interval '1 day',
  (ARRAY['ios','android','web'])[i % 3 + 1], 'ch-' || (i % 20), 'batch', 'm-' || ((i % 400) % 40), 'cash'
FROM generate_series(1, 2000000) i, LATERAL (SELECT '2025-12-01Z'::timestamptz + i * interval '15.768 seconds' AS t) x;
INSERT INTO redemptions (id, order_id, user_id, status, cart, reserved_at, expires_at, updated_at, next_check_at)
SELECT c.id, 'o-' || i, c.user_id, CASE WHEN c.status = 'locked' THEN 'reserved' WHEN c.status = 'refunded' THEN 'refunded' ELSE 'confirmed' END, '{}',
  c.claimed_at + interval '1 hour', c.claimed_at + interval '2 hours', c.claimed_at + interval '1 hour', c.claimed_at + interval '2 hours'
FROM generate_series(1, 200000) i JOIN claims c ON c.code = 'C' || lpad((i * 10)::text, 10, '0');
INSERT INTO redemption_claims (redemption_id, claim_id, position, batch_id, code, discount, status, lines)
SELECT r.id, r.id, 0, c.batch_id, c.code, 500, CASE r.status WHEN 'reserved' THEN 'reserved' WHEN 'refunded' THEN 'refunded' ELSE 'confirmed' END, '[]'
FROM redemptions r JOIN claims c ON c.id = r.id;
-- The archiver's monthly partitions (store/postgres/partition.go names them so).
DO $$
DECLARE m timestamptz;
BEGIN
    FOR m IN SELECT generate_series('2025-11-01Z'::timestamptz, '2027-03-01Z', interval '1 month') LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF claims_archive FOR VALUES FROM (%L) TO (%L)',
            'claims_archive_' || to_char(m AT TIME ZONE 'UTC', '"y"YYYY"m"MM'), m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE %I PARTITION OF redemptions_archive FOR VALUES FROM (%L) TO (%L)',
            'redemptions_archive_' || to_char(m AT TIME ZONE 'UTC', '"y"YYYY"m"MM'), m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE %I PARTITION OF redemption_claims_archive FOR VALUES FROM (%L) TO (%L)',
            'redemption_claims_archive_' || to_char(m AT TIME ZONE 'UTC', '"y"YYYY"m"MM'), m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
    END LOOP;
END $$;
-- What the archiver would have moved by 2026-12-01 with COUPOND_ARCHIVE_AFTER=720h.
WITH moved AS (DELETE FROM claims WHERE status IN ('used', 'expired', 'refunded') AND updated_at < '2026-11-01Z' RETURNING *)
INSERT INTO claims_archive SELECT *, '2026-11-02Z' FROM moved;
WITH picked AS (SELECT r.id FROM redemptions r WHERE r.status <> 'reserved' AND r.updated_at < '2026-11-01Z'
    AND NOT EXISTS (SELECT 1 FROM redemption_claims rc JOIN claims c ON c.id = rc.claim_id WHERE rc.redemption_id = r.id)),
lines AS (DELETE FROM redemption_claims rc USING picked p WHERE rc.redemption_id = p.id RETURNING rc.*),
moved AS (DELETE FROM redemptions r USING picked p WHERE r.id = p.id RETURNING r.*),
archived_lines AS (INSERT INTO redemption_claims_archive SELECT l.*, m.reserved_at FROM lines l JOIN moved m ON m.id = l.redemption_id)
INSERT INTO redemptions_archive SELECT *, '2026-11-02Z' FROM moved;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM claims) AS hot, (SELECT count(*) FROM claims_archive) AS archived,
  (SELECT count(*) FROM redemptions) AS hot_redemptions, (SELECT count(*) FROM redemptions_archive) AS archived_redemptions;
