-- The sliding windows of one device or one IP, kept in one sorted set
-- (engine.RiskObservation): a user is the member 'u' .. user, scored by the
-- µs it was last seen; an attempt is the member 'c' .. attempt id, scored by
-- minus its µs. Users are the positive scores and attempts the negative
-- ones, so each count is one ZCOUNT over a range of the one key. This file
-- is the head of protect_risk.lua and of the protected claim script.

local function risk_num(x)
  return string.format('%.0f', x)
end

-- risk_record adds an attempt at now (stamp: now as a decimal string) and
-- keeps the set for horizon µs past its last attempt. With trim, it drops
-- entries past the horizon, then all but the newest cap users and the
-- newest cap attempts: counts are by window and clamped to the cap, so
-- trimming is for memory only, and the caller asks for it on a sample of
-- attempts.
local function risk_record(key, now, stamp, user, event, horizon, cap, trim)
  redis.call('ZADD', key, stamp, 'u' .. user, '-' .. stamp, 'c' .. event)
  if trim then
    redis.call('ZREMRANGEBYSCORE', key, 0, '(' .. risk_num(now - horizon))
    redis.call('ZREMRANGEBYSCORE', key, '(' .. risk_num(horizon - now), '(0')
    local claims = redis.call('ZCOUNT', key, '-inf', '(0')
    if claims > cap then
      -- attempts are in order of minus their time: the oldest rank last
      redis.call('ZREMRANGEBYRANK', key, cap, claims - 1)
      claims = cap
    end
    local users = redis.call('ZCARD', key) - claims
    if users > cap then
      redis.call('ZREMRANGEBYRANK', key, claims, claims + users - cap - 1)
    end
  end
  redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 1000)
end

-- risk_count counts the distinct users (users true) or the attempts of the
-- last window µs before now, at most cap.
local function risk_count(key, now, window, users, cap)
  local n
  if users then
    n = redis.call('ZCOUNT', key, '(' .. risk_num(now - window), '+inf')
  else
    n = redis.call('ZCOUNT', key, '-inf', '(' .. risk_num(window - now))
  end
  return math.min(n, cap)
end
