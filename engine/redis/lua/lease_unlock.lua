-- Release a lease that the token holds (engine.Locker.Unlock).
--
-- KEYS: lease
-- ARGV: token
--
-- Reply: 1 released, 0 not held by the token.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
