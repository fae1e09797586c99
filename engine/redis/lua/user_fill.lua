-- Fill a user's cached claims if no change came since the miss
-- (engine.Cache.FillUserClaims).
--
-- KEYS: version, value (one hash tag: the user's)
-- ARGV: the version the miss returned, the value, its ttl in milliseconds,
--       the version's ttl in milliseconds
--
-- Reply: 1 stored, 0 refused (the version moved).

local have = redis.call('GET', KEYS[1]) or '0'
if have ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if have ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
