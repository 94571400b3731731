-- accumulate: add delta to a room counter; flush the pending sum at most once
-- per interval, room-wide.
-- KEYS[1..5] the room's life keys: dynamic keys set, room hash, history, counters, gates
-- (KEYS[4] counters hash: t:<name> total, p:<name> pending, f:<name> last flush ms)
-- ARGV[1] name, ARGV[2] delta, ARGV[3] interval_ms, ARGV[4] idle_ttl ms (0 = never)
-- Returns {total, flushed (0/1), flushed sum}
local key, name = KEYS[4], ARGV[1]
local delta, interval = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = redis.call('HINCRBY', key, 't:' .. name, delta)
local pending = redis.call('HINCRBY', key, 'p:' .. name, delta)
-- a hash created just now: the room was used, it lives at least idle_ttl more
if redis.call('PTTL', key) == -1 then hold(KEYS, tonumber(ARGV[4])) end
local last = tonumber(redis.call('HGET', key, 'f:' .. name)) or 0
if pending ~= 0 and now - last >= interval then
  redis.call('HSET', key, 'p:' .. name, 0, 'f:' .. name, string.format('%d', now))
  return {total, 1, pending}
end
return {total, 0, 0}
