-- Loads or releases the identity counts of a batch
-- (engine.Protection.LoadIdentities and ReleaseIdentities).
--
-- KEYS: the batch's idn hash, and for a load a staging hash of the same tag
-- ARGV: 'load', then identity, count pairs: sets the counts, with those
--       staged, and marks them loaded, unless they are loaded already (the
--       staging hash is dropped either way);
--       'release', then identities: lowers each count by one, not below 0,
--       if the counts are loaded.
if ARGV[1] == 'load' then
  if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then
    redis.call('DEL', KEYS[2])
    return 0
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[1])
  end
  for i = 2, #ARGV, 2 do
    if tonumber(ARGV[i + 1]) > 0 then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('HSET', KEYS[1], 'loaded', 1)
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'loaded') == 0 then
  return 0
end
for i = 2, #ARGV do
  local c = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if c <= 1 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], -1)
  end
end
return 0
