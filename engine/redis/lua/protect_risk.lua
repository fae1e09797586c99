-- Records one claim attempt in the sliding windows of a device or an IP and
-- counts them (engine.Protection.ObserveRisk, one run per identity).
--
-- KEYS: users (sorted set: user → last seen µs), claims (sorted set:
--       attempt → µs), in the identity's hash tag
-- ARGV: now µs, horizon µs, user, attempt id, most events kept,
--       k, then k windows µs of users, then windows µs of claims
--
-- Reply: the counts, users' windows first, each over (now − window, now].
local function num(x)
  return string.format('%.0f', x)
end
local now, horizon, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. num(now - horizon))
  local size = redis.call('ZCARD', key)
  if size > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, size - cap - 1)
  end
  redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 1000)
end
local out, k = {}, tonumber(ARGV[6])
for i = 7, #ARGV do
  local key = KEYS[2]
  if i <= 6 + k then
    key = KEYS[1]
  end
  out[#out + 1] = redis.call('ZCOUNT', key, '(' .. num(now - tonumber(ARGV[i])), '+inf')
end
return out
