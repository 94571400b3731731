-- shares_create: a red packet's precomputed shares, unless one exists under this key.
-- KEYS[1] meta hash: n (shares), exp (absolute expiry ms), u:<user> -> amount grabbed
-- KEYS[2] remaining shares list (popped from the left), KEYS[3] grab log list
-- ("<amount>:<user>" in grab order), KEYS[4..8] the room's life keys (dynamic keys
-- set first: see _hold.lua)
-- ARGV: ttl_ms, idle_ttl ms (0 = rooms never expire), then the amounts
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = string.format('%d', now + tonumber(ARGV[1]))
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'n', #ARGV - 2, 'exp', exp)
for i = 3, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('PEXPIREAT', KEYS[2], exp)
redis.call('SADD', KEYS[4], KEYS[1], KEYS[2], KEYS[3])
hold_room_for(4, tonumber(ARGV[1]), tonumber(ARGV[2]))
return 1
