-- Renew a lease that the token holds (engine.Locker.Extend).
--
-- KEYS: lease
-- ARGV: token, ttl in milliseconds
--
-- Reply: 1 renewed, 0 not held by the token.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
