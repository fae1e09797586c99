-- Undo and Reclaim of one claim (engine.Engine.Undo, engine.Engine.Reclaim).
--
-- KEYS: meta, pool, users, keys, pending, pending:info (one hash tag)
-- ARGV: mode ('undo' or 'reclaim'), user, idempotency key, code, amount,
--       seq, then for 'undo' keep code and keep seq ('1' or '0'), for
--       'reclaim' the claim id.
--
-- Reply: -1 unknown batch; 'undo': 1; 'reclaim': 1 reclaimed, 0 the claim
-- is not pending (settled, undone or reclaimed meanwhile).

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
  return -1
end

local user, key, code, amount, seq = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local keepCode, keepSeq = false, false
local rec = redis.call('HGET', KEYS[6], code)
local f = rec and decode(rec) -- claim id, user, key, amount, seq
if ARGV[1] == 'reclaim' then
  if not f or f[1] ~= ARGV[7] or f[2] ~= user or f[3] ~= key or f[4] ~= amount or f[5] ~= seq then
    return 0
  end
else
  keepCode, keepSeq = ARGV[7] == '1', ARGV[8] == '1'
  if f and f[2] ~= user then
    rec = nil -- the code is pending for another claim: leave it
  end
end

if rec then
  redis.call('ZREM', KEYS[5], code)
  redis.call('HDEL', KEYS[6], code)
end
if not keepCode then
  redis.call('LPUSH', KEYS[2], amount .. ':' .. code)
end
if not keepSeq then
  -- Free seq if the user holds it: see claim.lua for the state.
  local s = tonumber(seq)
  local state = redis.call('HGET', KEYS[3], user)
  if state and s then
    local high, holes = tonumber(state), {}
    if not high then
      for n in string.gmatch(state, '%d+') do
        holes[#holes + 1] = tonumber(n)
      end
      high = table.remove(holes, 1)
    end
    local held = s >= 1 and s <= high
    local at = #holes + 1 -- where s goes among the holes
    for i, h in ipairs(holes) do
      if h == s then
        held = false
      end
      if h >= s then
        at = i
        break
      end
    end
    if held then
      if s < high then
        table.insert(holes, at, s)
      else
        high = high - 1
        while #holes > 0 and holes[#holes] == high do
          table.remove(holes)
          high = high - 1
        end
      end
      if high == 0 then
        redis.call('HDEL', KEYS[3], user)
      elseif #holes == 0 then
        redis.call('HSET', KEYS[3], user, high)
      else
        redis.call('HSET', KEYS[3], user, high .. ',' .. table.concat(holes, ','))
      end
    end
  end
end
if key ~= '' then
  redis.call('HDEL', KEYS[4], #user .. ':' .. user .. key)
end
local claimed = tonumber(redis.call('HGET', KEYS[1], 'claimed'))
if claimed and claimed > 0 then
  redis.call('HINCRBY', KEYS[1], 'claimed', -1)
end
return 1
