-- The data of bench/queryplans/run: claims every 3 seconds from 2025-12-01 (so
-- ids, which are time-ordered, follow claim time), 2,000 batches, 200
-- merchants, 2 million users, 3 million phones, 20 channels, 3 platforms;
-- statuses 70% available, 15% used, 10% expired, 3% locked, 2% refunded.
SET search_path = plans10m;
SET session_replication_role = replica; -- no FK checks while loading
SET maintenance_work_mem = '512MB';
SET synchronous_commit = off;
CREATE OR REPLACE FUNCTION b32(v bigint, n int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((v >> (5*(n-1-k))) & 31)::int + 1, 1), '' ORDER BY k)
  FROM generate_series(0, n-1) k $$;
-- drop the plain indexes; they are rebuilt after the load
DROP INDEX claims_batch_id, claims_channel_id, claims_merchant_id, claims_phone_id, claims_status_id, claims_user,
  claims_idempotency, redemptions_status_id, redemptions_user_id, redemption_claims_batch, redemption_claims_held;
INSERT INTO batches (id, name, merchant_id, type, status, total_quantity, generated_count, per_user_limit, amount_type, amount_value, created_at, updated_at)
SELECT 'b' || lpad(b::text, 5, '0'), 'batch ' || b, 'm-' || (b % 200), 'cash', 'active', 5000, 5000, 10, 'fixed', 500, '2025-11-30Z', '2025-11-30Z'
FROM generate_series(0, 1999) b;
\timing on
INSERT INTO codes (code, batch_id, seq, amount, created_at)
SELECT 'C' || lpad(i::text, 10, '0'), 'b' || lpad((i % 2000)::text, 5, '0'), i / 2000 + 1, 500, '2025-11-30Z'::timestamptz + (i / 2000) * interval '1 second'
FROM generate_series(1, 10000000) i;
INSERT INTO claims (id, batch_id, code, user_id, user_seq, user_limit, phone, status, amount, valid_from, valid_to, claimed_at, updated_at,
  platform, channel, batch_name, merchant_id, type)
SELECT b32((extract(epoch FROM t) * 1000)::bigint, 10) || b32(i::bigint * 2654435761 % 1099511627776, 8) || b32(i, 8),
  'b' || lpad((i % 2000)::text, 5, '0'), 'C' || lpad(i::text, 10, '0'), 'u' || ((i::bigint * 7919) % 2000000), i / 2000000 + 1, 10,
  '1' || lpad(((i::bigint * 31) % 3000000)::text, 10, '0'),
  CASE WHEN i % 100 < 70 THEN 'available' WHEN i % 100 < 85 THEN 'used' WHEN i % 100 < 95 THEN 'expired' WHEN i % 100 < 98 THEN 'locked' ELSE 'refunded' END,
  500, t, t + interval '7 days', t, t,
  (ARRAY['ios','android','web'])[i % 3 + 1], 'ch-' || (i % 20), 'batch', 'm-' || ((i % 2000) % 200), 'cash'
FROM generate_series(1, 10000000) i, LATERAL (SELECT '2025-12-01Z'::timestamptz + i * interval '3 seconds' AS t) x;
INSERT INTO redemptions (id, order_id, user_id, status, cart, reserved_at, expires_at, updated_at, next_check_at)
SELECT c.id, 'o-' || i, c.user_id, (ARRAY['confirmed','confirmed','confirmed','cancelled','reserved','refunded','partially_refunded'])[i % 7 + 1], '{}',
  c.claimed_at + interval '1 hour', c.claimed_at + interval '2 hours', c.claimed_at + interval '1 hour', c.claimed_at + interval '2 hours'
FROM generate_series(1, 1000000) i JOIN claims c ON c.code = 'C' || lpad((i * 10)::text, 10, '0');
INSERT INTO redemption_claims (redemption_id, claim_id, position, batch_id, code, discount, status, lines)
SELECT r.id, r.id, 0, c.batch_id, c.code, 500, CASE r.status WHEN 'cancelled' THEN 'released' WHEN 'reserved' THEN 'reserved' ELSE 'confirmed' END, '[]'
FROM redemptions r JOIN claims c ON c.id = r.id;
CREATE INDEX claims_batch_id ON claims (batch_id, id);
CREATE INDEX claims_merchant_id ON claims (merchant_id, id);
CREATE INDEX claims_status_id ON claims (status, id);
CREATE INDEX claims_phone_id ON claims (phone, id);
CREATE INDEX claims_channel_id ON claims (channel, id);
CREATE INDEX claims_user ON claims (user_id, valid_to, id);
CREATE UNIQUE INDEX claims_idempotency ON claims (batch_id, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX redemptions_user_id ON redemptions (user_id, id);
CREATE INDEX redemptions_status_id ON redemptions (status, id);
CREATE INDEX redemption_claims_batch ON redemption_claims (batch_id, redemption_id);
CREATE UNIQUE INDEX redemption_claims_held ON redemption_claims (claim_id) WHERE status IN ('reserved', 'confirmed');
VACUUM ANALYZE;
SELECT count(*) FROM claims;
