-- The checks of engine.ClaimProtection, then the claim step, atomic as one
-- script. Before this file come risk_set.lua and claim.lua wrapped as the
-- function claim_step(KEYS, ARGV); after it, protect_claim_tail.lua (see
-- protectedClaimScript in protection.go), so the claim step is the one of
-- claim.lua, whatever it becomes.
--
-- KEYS: the n keys of claim.lua, then (all in the batch's hash tag)
--       idn (identity counts), nonce, sms challenge, keys hash, and one key
--       per rate limit; then, outside the tag (the engine folds risk only
--       on one server, not on a cluster), the risk sets (risk_set.lua) of
--       the device and of the IP (placeholders when the claim has no device
--       or IP, or no risk gate)
-- ARGV: n, m, the m arguments of claim.lua, then
--       nonce ('' none), nonce ttl ms, now µs,
--       sms challenge id ('' none), code hash, user, phone ('' any),
--       replay field ('' none: the claim has no idempotency key),
--       number of identities, the identities,
--       number of limits, then interval µs and burst of each,
--       sms only if challenged (1/0), risk gate (1/0), and with a gate:
--       horizon µs, user, attempt id, most events kept, device (1/0),
--       IP (1/0), trim (1/0), number of windows, then counter (1 device users,
--       2 device claims, 3 IP users, 4 IP claims) and window µs of each,
--       number of thresholds, then window index, above and deny (1/0) of each
--
-- Reply: that of claim.lua, or {status, …} for a refusal of the checks:
--        -10 replayed; {-11, wait µs, limit index} rate limited;
--        {-12, why, attempts left} sms invalid; -13 identities not loaded;
--        -3 an identity holds the limit; {-14, 2 deny or 1 challenge,
--        the counts of the windows} refused by the risk gate.

local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local ckeys, cargs = {}, {}
for i = 1, n do
  ckeys[i] = KEYS[i]
end
for i = 1, m do
  cargs[i] = ARGV[2 + i]
end
local kIdn, kNonce, kSMS, kKeys = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]
local a = 3 + m
local nonce, nonceTTL, now = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
local smsID, smsHash, smsUser, smsPhone = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
local replayField = ARGV[a + 7]
local ni = tonumber(ARGV[a + 8])
local ids = {}
for i = 1, ni do
  ids[i] = ARGV[a + 8 + i]
end
local b = a + 9 + ni
local nl = tonumber(ARGV[b])
local g = b + 2 * nl + 1
local smsIfChallenged, riskGate = ARGV[g] == '1', ARGV[g + 1] == '1'

-- 1. Refusals that change nothing, so that the caller can load and retry.
local meta = redis.call('HMGET', ckeys[1], 'active', 'limit')
if not meta[1] then
  return {-1}
end
if meta[1] ~= '1' then
  return {-2}
end
if ni > 0 and redis.call('HEXISTS', kIdn, 'loaded') == 0 then
  return {-13}
end

-- 2. The nonce.
if nonce ~= '' then
  if not redis.call('SET', kNonce, '1', 'NX', 'PX', nonceTTL) then
    return {-10}
  end
end

-- The risk gate: the attempt goes into the sliding windows of its device
-- and its IP (risk_set.lua, as protect_risk.lua does), and the thresholds
-- decide.
local challenged = false
if riskGate then
  local horizon, user, event, cap = tonumber(ARGV[g + 2]), ARGV[g + 3], ARGV[g + 4], tonumber(ARGV[g + 5])
  local has = {ARGV[g + 6] == '1', ARGV[g + 7] == '1'}
  local trim = ARGV[g + 8] == '1'
  local rk = n + 4 + nl
  for i = 1, 2 do
    if has[i] then
      risk_record(KEYS[rk + i], now, ARGV[a + 2], user, event, horizon, cap, trim)
    end
  end
  local w = g + 9
  local nw = tonumber(ARGV[w])
  local counts = {}
  for i = 1, nw do
    -- counters: 1 device users, 2 device claims, 3 IP users, 4 IP claims
    local c, win = tonumber(ARGV[w + 2 * i - 1]), tonumber(ARGV[w + 2 * i])
    local id = math.floor((c + 1) / 2)
    counts[i] = 0
    if has[id] then
      counts[i] = risk_count(KEYS[rk + id], now, win, c % 2 == 1, cap)
    end
  end
  local t = w + 2 * nw + 1
  local worst = 0
  for i = 1, tonumber(ARGV[t]) do
    local wi, above = tonumber(ARGV[t + 3 * i - 2]), tonumber(ARGV[t + 3 * i - 1])
    if counts[wi] > above then
      if ARGV[t + 3 * i] == '1' then
        worst = 2
      elseif worst < 1 then
        worst = 1
      end
    end
  end
  if worst == 2 or (worst == 1 and smsID == '') then
    local out = {-14, worst}
    for i = 1, nw do
      out[2 + i] = counts[i]
    end
    return out
  end
  challenged = worst == 1
end

-- 3. A replay of the idempotency key skips the checks: claim.lua answers it.
if replayField == '' or redis.call('HEXISTS', kKeys, replayField) == 0 then
  -- 4. Rate limits (GCRA): all must admit; only then does each count.
  local worst, wi, tats, got = 0, 0, {}, {}
  if nl > 0 then
    got = redis.call('MGET', unpack(KEYS, n + 5, n + 4 + nl))
  end
  for i = 1, nl do
    local interval, burst = tonumber(ARGV[b + 2 * i - 1]), tonumber(ARGV[b + 2 * i])
    local tat = tonumber(got[i] or '0')
    if tat < now then
      tat = now
    end
    local newTAT = tat + interval
    local allowAt = newTAT - interval * burst
    if now < allowAt and allowAt - now > worst then
      worst, wi = allowAt - now, i
    end
    tats[i] = newTAT
  end
  if wi > 0 then
    return {-11, worst, wi}
  end
  for i = 1, nl do
    redis.call('SET', KEYS[n + 4 + i], risk_num(tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1)
  end

  -- 5. The SMS challenge.
  if smsID ~= '' and (challenged or not smsIfChallenged) then
    local c = redis.call('HMGET', kSMS, 'user', 'phone', 'hash', 'expires', 'attempts', 'max')
    if not c[1] then
      return {-12, 'unknown', 0}
    end
    if tonumber(c[4]) <= now then
      redis.call('DEL', kSMS)
      return {-12, 'expired', 0}
    end
    if c[1] ~= smsUser or (smsPhone ~= '' and c[2] ~= smsPhone) or c[3] ~= smsHash then
      local used = redis.call('HINCRBY', kSMS, 'attempts', 1)
      local left = tonumber(c[6]) - used
      if left <= 0 then
        redis.call('DEL', kSMS)
        left = 0
      end
      return {-12, 'wrong', left}
    end
    redis.call('DEL', kSMS)
  end

  -- 6. Identities at the per-user limit.
  local limit = tonumber(meta[2])
  for i = 1, ni do
    if tonumber(redis.call('HGET', kIdn, ids[i]) or '0') >= limit then
      return {-3}
    end
  end
end
