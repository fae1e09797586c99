-- Records one claim attempt in the sliding windows of a device or an IP and
-- counts them (engine.Protection.ObserveRisk, one run per identity); the
-- functions are those of risk_set.lua, which comes before this file.
--
-- KEYS: the identity's sorted set (risk_set.lua)
-- ARGV: now µs, horizon µs, user, attempt id, most events kept, trim (1/0),
--       k, then k windows µs of users, then windows µs of attempts
--
-- Reply: the counts, users' windows first, each over (now − window, now].
local now, horizon, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
risk_record(KEYS[1], now, ARGV[1], ARGV[3], ARGV[4], horizon, cap, ARGV[6] == '1')
local out, k = {}, tonumber(ARGV[7])
for i = 8, #ARGV do
  out[#out + 1] = risk_count(KEYS[1], now, tonumber(ARGV[i]), i <= 7 + k, cap)
end
return out
