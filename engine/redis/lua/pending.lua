-- Pending claims made before a time, oldest first (engine.Engine.Pending).
--
-- KEYS: meta, pending, pending:info (one hash tag)
-- ARGV: before (microseconds, exclusive), limit
--
-- Reply: {-1} unknown batch, or {0, then per claim: code, At in
-- microseconds, claim id, user, idempotency key, amount, seq}.

local function decode(s)
  local out, i = {}, 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    local n = tonumber(string.sub(s, i, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local out = {0}
local limit = tonumber(ARGV[2])
if limit <= 0 then
  return out
end
local codes = redis.call('ZRANGE', KEYS[2], '-inf', '(' .. ARGV[1], 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
for i = 1, #codes, 2 do
  local rec = redis.call('HGET', KEYS[3], codes[i])
  if rec then
    local f = decode(rec) -- claim id, user, key, amount, seq
    out[#out + 1] = codes[i]
    out[#out + 1] = codes[i + 1]
    for j = 1, 5 do
      out[#out + 1] = f[j]
    end
  end
end
return out
