-- tally_close: freeze a tally (later entries get 'closed') and return its members.
-- A tally never opened is created closed, for a day, like an opened one.
-- KEYS as in tally.lua; ARGV[1] idle_ttl ms
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = 86400000 end
redis.call('SET', KEYS[3], '1', 'PX', ttl)
redis.call('SADD', KEYS[4], KEYS[3])
hold_room_for(4, ttl, tonumber(ARGV[1]))
return redis.call('HKEYS', KEYS[1])
