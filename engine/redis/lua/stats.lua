-- Live figures of a batch (engine.Engine.Stats).
--
-- KEYS: meta, pool (one hash tag)
--
-- Reply: {-1} unknown batch, or {0, claimed, pool depth}.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local claimed = tonumber(redis.call('HGET', KEYS[1], 'claimed')) or 0
return {0, claimed, redis.call('LLEN', KEYS[2])}
