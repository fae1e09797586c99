-- The batch's claimability and per-user limit (engine.Engine.SetBatch).
--
-- KEYS: meta
-- ARGV: active ('1' or '0'), per-user limit
--
-- Reply: -1 unknown batch, 0 done.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], 'active', ARGV[1], 'limit', ARGV[2])
return 0
