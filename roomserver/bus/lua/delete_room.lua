-- delete_room: the room's fixed keys plus every dynamic key it created
-- (tallies, stocks, shares). Idempotency entries stay: they name their epoch.
-- KEYS: the fixed keys, the last one being the set of dynamic keys
local dyn = KEYS[#KEYS]
local keys = redis.call('SMEMBERS', dyn)
for i = 1, #KEYS do keys[#keys + 1] = KEYS[i] end
for i = 1, #keys, 1000 do
  redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
end
return #keys
