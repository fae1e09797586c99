-- The end of protect_claim.lua: the claim step, and the identity counts of
-- a claim that took a code.
local r = claim_step(ckeys, cargs)
if r[1] == 0 then
  for i = 1, ni do
    redis.call('HINCRBY', kIdn, ids[i], 1)
  end
end
return r
