-- Live figures of a batch (engine.Engine.Stats).
--
-- KEYS: meta, pool (one hash tag)
--
-- Reply: {-1} unknown batch (or one loaded before sequence numbers were
-- kept: reload it from the store), or {0, claimed, pool depth, loaded}.

local meta = redis.call('HMGET', KEYS[1], 'claimed', 'loaded')
if not meta[2] then
  return {-1}
end
return {0, tonumber(meta[1]) or 0, redis.call('LLEN', KEYS[2]), tonumber(meta[2])}
