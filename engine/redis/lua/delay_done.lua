-- Remove a taken job unless it moved since (engine.DelayQueue.Done).
--
-- KEYS: the queue's sorted set
-- ARGV: job id, the lease's end (milliseconds)
--
-- Reply: 1 removed, 0 left alone.

local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
