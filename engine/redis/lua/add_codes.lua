-- Codes appended to the pool (engine.Engine.AddCodes).
--
-- KEYS: meta, pool (one hash tag)
-- ARGV: pool entries, each "<amount>:<code>"
--
-- Reply: -1 unknown batch, 0 done.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
-- unpack is bounded by Lua's stack: push in slices.
for i = 1, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
