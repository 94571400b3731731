-- gate: room-wide throttle; passes (and remembers value) if value differs from
-- the last passed one and interval_ms has passed since then.
-- KEYS[1..5] the room's life keys: dynamic keys set, room hash, history, counters, gates
-- (KEYS[5] gates hash: v:<name> last value, t:<name> last ms)
-- ARGV[1] name, ARGV[2] interval_ms, ARGV[3] value, ARGV[4] idle_ttl ms (0 = never)
local key, name, value = KEYS[5], ARGV[1], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('HMGET', key, 'v:' .. name, 't:' .. name)
if last[1] and (last[1] == value or now - tonumber(last[2]) < tonumber(ARGV[2])) then
  return 0
end
redis.call('HSET', key, 'v:' .. name, value, 't:' .. name, string.format('%d', now))
if redis.call('PTTL', key) == -1 then hold(KEYS, tonumber(ARGV[4])) end
return 1
