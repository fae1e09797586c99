-- Codes the store generated with sequence numbers in (from, through] loaded
-- into the pool, if the batch's loaded sequence number is still from
-- (engine.Engine.AddCodes): a compare-and-set, so a range is loaded once.
--
-- KEYS: meta, pool, staging (one hash tag)
-- ARGV: from, through, the number of entries staged, then the last entries,
--       each "<amount>:<code>"
--
-- A large load stages all but its last entries in the staging list first;
-- they go to the pool before the entries of ARGV, and the staging list is
-- dropped whatever the outcome.
--
-- Reply: -1 unknown batch (or one loaded before sequence numbers were
-- kept: reload it from the store), -5 the staged entries are incomplete
-- (lost with a restart or a flush), -6 stale: loaded is not from; 0 done.

local staged = tonumber(ARGV[3])
local function drop()
  if staged > 0 then
    redis.call('UNLINK', KEYS[3])
  end
end

local loaded = redis.call('HGET', KEYS[1], 'loaded')
if not loaded then
  drop()
  return -1
end
if tonumber(loaded) ~= tonumber(ARGV[1]) then
  drop()
  return -6
end
if staged > 0 then
  if redis.call('LLEN', KEYS[3]) ~= staged then
    drop()
    return -5
  end
  for i = 0, staged - 1, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(redis.call('LRANGE', KEYS[3], i, i + 999)))
  end
end
drop()
-- unpack is bounded by Lua's stack: push in slices.
for i = 4, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'loaded', ARGV[2])
return 0
