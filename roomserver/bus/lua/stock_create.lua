-- stock_create: a stock (flash sale, coupon batch) unless one exists under this key.
-- KEYS[1] stock hash: initial, left, opens, closes, exp (absolute expiry ms),
--   u:<user> -> quantity held, c:<len user>:<user><cid> -> "<len fp>:<fp><record>"
-- KEYS[2] records list (taken records in order), KEYS[3..7] the room's life keys
-- (dynamic keys set first: see _hold.lua)
-- ARGV[1] stock, ARGV[2] opens_at ms, ARGV[3] closes_at ms (0 = none), ARGV[4] ttl_ms,
-- ARGV[5] idle_ttl ms (0 = rooms never expire)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = string.format('%d', now + tonumber(ARGV[4]))
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'initial', ARGV[1], 'left', ARGV[1], 'opens', ARGV[2], 'closes', ARGV[3], 'exp', exp)
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
hold_room_for(3, tonumber(ARGV[4]), tonumber(ARGV[5]))
return 1
