-- The last step of a Rebuild (engine.Engine.Rebuild): the staged pool,
-- users and keys replace the batch's, its pending claims are dropped, and
-- its meta is written last.
--
-- KEYS: meta, pool, users, keys, pending, pending:info, then the staged
--       marker, pool, users and keys (one hash tag)
-- ARGV: active ('1' or '0'), per-user limit, claimed, then the staged
--       pool length, number of users and number of keys, then the loaded
--       sequence number
--
-- Reply: 0 done; -5 the staged state is not complete (lost with a restart
-- or a flush of Redis while it was loaded): nothing changed.

local staged = redis.call('EXISTS', KEYS[7]) == 1
  and redis.call('LLEN', KEYS[8]) == tonumber(ARGV[4])
  and redis.call('HLEN', KEYS[9]) == tonumber(ARGV[5])
  and redis.call('HLEN', KEYS[10]) == tonumber(ARGV[6])
if not staged then
  redis.call('UNLINK', KEYS[7], KEYS[8], KEYS[9], KEYS[10])
  return -5
end

redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
for i = 2, 4 do
  if tonumber(ARGV[i + 2]) > 0 then
    redis.call('RENAME', KEYS[i + 6], KEYS[i])
    redis.call('PERSIST', KEYS[i])
  end
end
redis.call('UNLINK', KEYS[7])
redis.call('HSET', KEYS[1], 'active', ARGV[1], 'limit', ARGV[2], 'claimed', ARGV[3], 'loaded', ARGV[7])
return 0
