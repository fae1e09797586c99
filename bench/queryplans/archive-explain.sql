-- The plans of the searches over hot and archived claims (and redemptions),
-- as store/postgres/query.go writes them: each side's first page from its
-- own index, the union cut to the page. Generic plans, as the store runs.
SET search_path = plansarch;
SET plan_cache_mode = force_generic_plan;
\set cols 'id, batch_id, code, user_id, user_seq, user_limit, phone, open_id, status, amount, valid_from, valid_to, claimed_at, updated_at, platform, channel, idempotency_key, batch_name, merchant_id, type, min_spend, percent_off, usage_platforms'
\set rcols 'id, order_id, user_id, status, platform, node, discount, cart, refunds, reason, order_system_url, request_hash, reserved_at, expires_at, confirmed_at, cancelled_at, refunded_at, updated_at, check_attempts, next_check_at, review_reason, review_since, version'
SELECT (SELECT count(*) FROM claims) AS hot, (SELECT count(*) FROM claims_archive) AS archived,
  (SELECT count(*) FROM pg_inherits WHERE inhparent = 'claims_archive'::regclass) AS partitions;
\echo '### claims of a batch, first page (the newest are hot)'
PREPARE a1(text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE batch_id = $1 ORDER BY id DESC LIMIT $2)
  UNION ALL (SELECT :cols FROM claims_archive WHERE batch_id = $1 ORDER BY id DESC LIMIT $2)) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a1('b00042', 21);
\echo '### claims of a batch, a page deep in the archive (cursor in June)'
SELECT id AS cursor FROM claims_archive WHERE batch_id = 'b00042' AND claimed_at < '2026-06-15Z' ORDER BY id DESC LIMIT 1 \gset
PREPARE a2(text, text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE batch_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
  UNION ALL (SELECT :cols FROM claims_archive WHERE batch_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)) u ORDER BY id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a2('b00042', :'cursor', 21);
\echo '### claims of a merchant in a claim-time week (in the archive)'
PREPARE a3(text, text, timestamptz, text, timestamptz, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE merchant_id = $1 AND id >= $2 AND claimed_at >= $3 AND id < $4 AND claimed_at < $5 ORDER BY id DESC LIMIT $6)
  UNION ALL (SELECT :cols FROM claims_archive WHERE merchant_id = $1 AND id >= $2 AND claimed_at >= $3 AND id < $4 AND claimed_at < $5 ORDER BY id DESC LIMIT $6)) u ORDER BY id DESC LIMIT $6;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a3('m-12', b32((extract(epoch from timestamptz '2026-03-01Z')*1000)::bigint,10) || '0000000000000000', '2026-03-01Z', b32((extract(epoch from timestamptz '2026-03-08Z')*1000)::bigint,10) || '0000000000000000', '2026-03-08Z', 21);
\echo '### claims of a user'
PREPARE a4(text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE user_id = $1 ORDER BY id DESC LIMIT $2)
  UNION ALL (SELECT :cols FROM claims_archive WHERE user_id = $1 ORDER BY id DESC LIMIT $2)) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a4('u191900', 21);
\echo '### claims of a phone'
PREPARE a5(text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE phone = $1 ORDER BY id DESC LIMIT $2)
  UNION ALL (SELECT :cols FROM claims_archive WHERE phone = $1 ORDER BY id DESC LIMIT $2)) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a5('10000031000', 21);
\echo '### the claim of a code (archived)'
PREPARE a6(text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE code = $1 ORDER BY id DESC LIMIT $2)
  UNION ALL (SELECT :cols FROM claims_archive WHERE code = $1 ORDER BY id DESC LIMIT $2)) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a6('C0000123456', 21);
\echo '### claims of a status alone (refunded; led by the status)'
PREPARE a7(text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE status >= $1 AND status <= $1 ORDER BY status DESC, id DESC LIMIT $2)
  UNION ALL (SELECT :cols FROM claims_archive WHERE status >= $1 AND status <= $1 ORDER BY status DESC, id DESC LIMIT $2)) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a7('refunded', 21);
\echo '### claims of a channel, expired (led by the channel)'
PREPARE a8(text, text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE channel >= $1 AND channel <= $1 AND status = $2 ORDER BY channel DESC, id DESC LIMIT $3)
  UNION ALL (SELECT :cols FROM claims_archive WHERE channel >= $1 AND channel <= $1 AND status = $2 ORDER BY channel DESC, id DESC LIMIT $3)) u ORDER BY id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a8('ch-7', 'expired', 21);
\echo '### the same, a status none of the channel''s claims has (used): the worst case'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a8('ch-7', 'used', 21);
\echo '### every claim, newest first (no filter)'
PREPARE a9(int) AS SELECT :cols FROM ((SELECT :cols FROM claims ORDER BY id DESC LIMIT $1)
  UNION ALL (SELECT :cols FROM claims_archive ORDER BY id DESC LIMIT $1)) u ORDER BY id DESC LIMIT $1;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a9(21);
\echo '### export: a page of 5,000 of a merchant, deep in the archive'
SELECT id AS mcursor FROM claims_archive WHERE merchant_id = 'm-12' AND claimed_at < '2026-05-01Z' ORDER BY id DESC LIMIT 1 \gset
PREPARE a10(text, text, int) AS SELECT :cols FROM ((SELECT :cols FROM claims WHERE merchant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)
  UNION ALL (SELECT :cols FROM claims_archive WHERE merchant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3)) u ORDER BY id DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE a10('m-12', :'mcursor', 5000);
\echo '### codes of a batch, claimed (most of them archived)'
PREPARE c1(text, int) AS SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, coalesce(cl.id, ca.id), coalesce(cl.claimed_at, ca.claimed_at)
  FROM codes c LEFT JOIN claims cl ON cl.code = c.code
  LEFT JOIN LATERAL (SELECT a.id, a.claimed_at FROM claims_archive a WHERE cl.id IS NULL AND a.code = c.code LIMIT 1) ca ON true
  WHERE c.batch_id = $1 AND coalesce(cl.id, ca.id) IS NOT NULL ORDER BY c.code LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE c1('b00042', 21);
\echo '### codes of a batch, unclaimed (none is: every code of the batch probed in both)'
PREPARE c2(text, int) AS SELECT c.code, c.batch_id, c.seq, c.amount, c.tags, c.created_at, coalesce(cl.id, ca.id), coalesce(cl.claimed_at, ca.claimed_at)
  FROM codes c LEFT JOIN claims cl ON cl.code = c.code
  LEFT JOIN LATERAL (SELECT a.id, a.claimed_at FROM claims_archive a WHERE cl.id IS NULL AND a.code = c.code LIMIT 1) ca ON true
  WHERE c.batch_id = $1 AND cl.id IS NULL AND ca.id IS NULL ORDER BY c.code LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE c2('b00042', 21);
\echo '### redemptions of a user, hot and archived'
SELECT user_id AS ruser FROM redemptions_archive WHERE order_id = 'o-4242' \gset
PREPARE r1(text, int) AS SELECT * FROM (SELECT :rcols, false AS archived FROM (SELECT :rcols FROM redemptions WHERE user_id = $1 AND user_id <> '' ORDER BY id DESC LIMIT $2) h
  UNION ALL SELECT :rcols, true FROM (SELECT :rcols FROM redemptions_archive WHERE user_id = $1 AND user_id <> '' ORDER BY id DESC LIMIT $2) a) u ORDER BY id DESC LIMIT $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE r1(:'ruser', 21);
\echo '### an order of the archive (Reserve''s check)'
PREPARE r2(text) AS SELECT :rcols FROM redemptions_archive WHERE order_id = $1;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE r2('o-4242');
