-- The claim step of one batch (engine.Engine.Claim), atomic as one script.
--
-- KEYS: meta, pool, users, keys, pending, pending:info (one hash tag)
-- ARGV: user, idempotency key ('' for none), claim id, At in microseconds
--
-- Reply: {0, seq, amount, code} for a new claim;
--        {1, seq, amount, code, claim id} for a replay of the key;
--        {status} for a refusal: -1 unknown batch, -2 not claimable,
--        -3 limit reached, -4 sold out.
--
-- Records (key entries, pending claims) are fields of the form
-- <length>:<bytes>, so no byte of a user, key or code can break them.

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

local function encode(...)
  local out = {}
  for i = 1, select('#', ...) do
    local s = tostring((select(i, ...)))
    out[i] = #s .. ':' .. s
  end
  return table.concat(out)
end

local meta = redis.call('HMGET', KEYS[1], 'active', 'limit')
if not meta[1] then
  return {-1}
end
if meta[1] ~= '1' then
  return {-2}
end

local user, key = ARGV[1], ARGV[2]
local field
if key ~= '' then
  field = #user .. ':' .. user .. key
  local rec = redis.call('HGET', KEYS[4], field)
  if rec then
    local f = decode(rec) -- claim id, code, amount, seq
    return {1, tonumber(f[4]), f[3], f[2], f[1]}
  end
end

-- The user holds 1..high except the holes (ascending), which undos left.
-- The state is "high" or, rarely, "high,hole,hole…".
local limit = tonumber(meta[2])
local state = redis.call('HGET', KEYS[3], user)
local high, holes = 0, {}
if state then
  high = tonumber(state)
  if not high then
    for n in string.gmatch(state, '%d+') do
      holes[#holes + 1] = tonumber(n)
    end
    high = table.remove(holes, 1)
  end
end
if high - #holes >= limit then
  return {-3}
end
local seq = holes[1] or high + 1
if seq > limit then
  return {-3}
end

local elem = redis.call('LPOP', KEYS[2])
if not elem then
  return {-4}
end
local sep = string.find(elem, ':', 1, true)
local amount, code = string.sub(elem, 1, sep - 1), string.sub(elem, sep + 1)

if seq > high then
  high = seq
else
  table.remove(holes, 1)
end
if #holes == 0 then
  redis.call('HSET', KEYS[3], user, high)
else
  redis.call('HSET', KEYS[3], user, high .. ',' .. table.concat(holes, ','))
end
if field then
  redis.call('HSET', KEYS[4], field, encode(ARGV[3], code, amount, seq))
end
redis.call('HINCRBY', KEYS[1], 'claimed', 1)
redis.call('ZADD', KEYS[5], ARGV[4], code)
redis.call('HSET', KEYS[6], code, encode(ARGV[3], user, key, amount, seq))
return {0, seq, amount, code}
