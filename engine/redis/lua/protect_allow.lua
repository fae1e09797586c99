-- One event of a rate limit (GCRA) on a global key (engine.Protection.Allow).
--
-- KEYS: the limit's key
-- ARGV: now µs, interval µs, burst
--
-- Reply: 0 admitted (the key holds the new theoretical arrival time), or
--        the wait in µs before an event would be admitted (nothing changed).
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local newTAT = tat + interval
local allowAt = newTAT - interval * burst
if now < allowAt then
  return allowAt - now
end
redis.call('SET', KEYS[1], string.format('%.0f', newTAT), 'PX', math.floor((newTAT - now) / 1000) + 1)
return 0
