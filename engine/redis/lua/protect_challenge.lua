-- Stores an SMS challenge until it expires (engine.Protection.PutChallenge).
--
-- KEYS: the challenge's key, in its batch's hash tag
-- ARGV: user, phone, code hash, expires µs, max attempts, ttl ms
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'phone', ARGV[2], 'hash', ARGV[3], 'expires', ARGV[4],
  'attempts', 0, 'max', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 0
