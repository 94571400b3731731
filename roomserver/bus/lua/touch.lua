-- touch: the room was used now; it lives at least idle_ttl more. Also forgets
-- dynamic keys that expired by themselves, so the set of them stays small.
-- KEYS: the room's life keys (dyn set, room hash, history, counters, gates)
-- ARGV[1] idle_ttl ms (> 0)
-- Returns 1 if the room hash exists (the room was not forgotten), else 0.
local dyn = KEYS[1]
local gone = {}
for _, k in ipairs(redis.call('SMEMBERS', dyn)) do
  if redis.call('PTTL', k) == -2 then gone[#gone + 1] = k end
end
for i = 1, #gone, 1000 do
  redis.call('SREM', dyn, unpack(gone, i, math.min(i + 999, #gone)))
end
hold(KEYS, tonumber(ARGV[1]))
return redis.call('EXISTS', KEYS[2])
