-- Take due jobs of a delay queue (engine.DelayQueue.Take): each goes to
-- now + lease, so another taker does not get it until the lease ends.
--
-- KEYS: the queue's sorted set (member: job id, score: due, milliseconds)
-- ARGV: now, limit, lease (milliseconds)
--
-- Reply: {id, due, id, due, …}, soonest first.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local until_ = tonumber(ARGV[1]) + tonumber(ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], until_, due[i])
end
return due
