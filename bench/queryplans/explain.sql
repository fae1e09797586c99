SET search_path = plans10m;
SET plan_cache_mode = force_generic_plan;
\set cols 'id, batch_id, code, user_id, user_seq, user_limit, phone, open_id, status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key, batch_name, merchant_id, type, min_spend, percent_off, usage_platforms'
\set rcols 'id, order_id, user_id, status, platform, node, discount, cart, refunds, reason, order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at, check_attempts, next_check_at, review_reason, review_since, version'
\echo '### claims by batch, first page'
PREPARE q1(text, int) AS SELECT :cols FROM claims WHERE batch_id = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q1('b00042', 21);
\echo '### claims by batch, a page deep in the batch (cursor)'
SELECT id AS cursor FROM claims WHERE code = 'C0005000042' \gset
PREPARE q1b(text, text, int) AS SELECT :cols FROM claims WHERE batch_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q1b('b00042', :'cursor', 21);
\echo '### claims by merchant and claim-time range'
PREPARE q2(text, text, timestamptz, text, timestamptz, int) AS SELECT :cols FROM claims WHERE merchant_id = $1 AND id >= $2 AND claimed_at >= $3 AND id < $4 AND claimed_at < $5 ORDER BY id DESC LIMIT $6;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q2('m-42', b32((extract(epoch from timestamptz '2026-03-01Z')*1000)::bigint,10) || '0000000000000000', '2026-03-01Z', b32((extract(epoch from timestamptz '2026-03-08Z')*1000)::bigint,10) || '0000000000000000', '2026-03-08Z', 21);
\echo '### claims of a user'
PREPARE q3(text, int) AS SELECT :cols FROM claims WHERE user_id = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q3('u1919000', 21);
\echo '### claims of a phone'
PREPARE q4(text, int) AS SELECT :cols FROM claims WHERE phone = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q4('10000031000', 21);
\echo '### the claim of a code'
PREPARE q5(text, int) AS SELECT :cols FROM claims WHERE code = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q5('C0001234567', 21);
\echo '### claims of a channel, available now (led by the channel: see claimsLead in store/postgres/query.go)'
PREPARE q6(text, timestamptz, int) AS SELECT :cols FROM claims WHERE channel >= $1 AND channel <= $1 AND status = 'available' AND valid_to > $2 ORDER BY channel DESC, id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q6('ch-7', '2026-11-10Z', 21);
\echo '### the same, none matching (no claim of the channel valid at that time): the worst case'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q6('ch-7', '2026-11-26Z', 21);
\echo '### claims by status alone (refunded: 2% of rows; led by the status)'
PREPARE q7(text, int) AS SELECT :cols FROM claims WHERE status >= $1 AND status <= $1 ORDER BY status DESC, id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q7('refunded', 21);
\echo '### claims by status alone, a status no claim has'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q7('gone', 21);
\echo '### claims expired as of now (stored expired, or available past valid_to)'
PREPARE q8(timestamptz, int) AS SELECT :cols FROM claims WHERE (status = 'expired' OR (status = 'available' AND valid_to <= $1)) ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q8('2026-06-01Z', 21);
\echo '### claims of a batch whose validity ends in a range'
PREPARE q9(text, timestamptz, timestamptz, int) AS SELECT :cols FROM claims WHERE batch_id = $1 AND valid_to >= $2 AND valid_to < $3 ORDER BY id DESC LIMIT $4;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q9('b00042', '2026-05-01Z', '2026-06-01Z', 21);
\echo '### export: a page of 5,000 of a merchant'
PREPARE q10(text, int) AS SELECT :cols FROM claims WHERE merchant_id = $1 ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q10('m-42', 5000);
\echo '### codes of a batch, unclaimed'
PREPARE c1(text, int) AS SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, cl.id, cl.claimed_at FROM codes c LEFT JOIN claims cl ON cl.code = c.code WHERE c.batch_id = $1 AND cl.id IS NULL ORDER BY c.code LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE c1('b00042', 21);
\echo '### codes of a merchant'
PREPARE c2(text, int) AS SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, cl.id, cl.claimed_at FROM codes c LEFT JOIN claims cl ON cl.code = c.code WHERE c.batch_id IN (SELECT id FROM batches WHERE merchant_id = $1) ORDER BY c.code LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE c2('m-42', 21);
\echo '### redemptions of a user'
PREPARE r1(text, int) AS SELECT :rcols FROM redemptions WHERE user_id = $1 AND user_id <> '' ORDER BY id DESC LIMIT $2;
SELECT user_id AS ruser FROM redemptions WHERE order_id = 'o-4242' \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE r1(:'ruser', 21);
\echo '### redemptions of a batch, confirmed'
PREPARE r2(text, text, int) AS SELECT :rcols FROM redemptions WHERE status = $1 AND id IN (SELECT redemption_id FROM redemption_claims WHERE batch_id = $2) AND user_id <> '' ORDER BY id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE r2('confirmed', 'b00040', 21);
\echo '### redemptions of a merchant'
PREPARE r3(text, int) AS SELECT :rcols FROM redemptions WHERE id IN (SELECT rc.redemption_id FROM redemption_claims rc JOIN batches b ON b.id = rc.batch_id WHERE b.merchant_id = $1) AND user_id <> '' ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE r3('m-40', 21);
