-- A change of a user's claims (engine.Cache.UserClaimsChanged): bump the
-- version and drop the cached value, atomically.
--
-- KEYS: version, value (one hash tag: the user's)
-- ARGV: the version's ttl in milliseconds
--
-- Reply: the new version.

local v = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return v
