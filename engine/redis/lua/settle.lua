-- Settle: the claims of these codes are committed (engine.Engine.Settle).
--
-- KEYS: meta, pending, pending:info (one hash tag)
-- ARGV: codes
--
-- Reply: -1 unknown batch, 0 done.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
-- unpack is bounded by Lua's stack: remove in slices.
for i = 1, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, j))
  redis.call('HDEL', KEYS[3], unpack(ARGV, i, j))
end
return 0
