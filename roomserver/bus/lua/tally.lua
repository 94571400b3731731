-- tally: record members' single entries for an option (poll votes, lottery entries),
-- a batch of them in arrival order (concurrent entries share a call: bus/coalesce.py).
-- KEYS[1] members hash (member -> option), KEYS[2] counts hash (option -> n),
-- KEYS[3] closed marker (exists = closed), KEYS[4..8] the room's life keys (dynamic
-- keys set first: see _hold.lua)
-- ARGV[1] ttl_ms (set when the tally is created), ARGV[2] n, then n times: member, option,
-- then idle_ttl ms (0 = rooms never expire)
-- Returns {status 1, ..., status n, option, count, option, count, ...}: the counts
-- after the whole batch
local members, counts = KEYS[1], KEYS[2]
local n = tonumber(ARGV[2])
local out = {}
local closed = redis.call('EXISTS', KEYS[3]) == 1
for i = 1, n do
  local member, option = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local status = 'exists'
  if closed then
    status = 'closed'
  elseif redis.call('HSETNX', members, member, option) == 1 then
    status = 'added'
    redis.call('HINCRBY', counts, option, 1)
    if redis.call('PTTL', members) == -1 then -- created just now
      redis.call('PEXPIRE', members, ARGV[1])
      redis.call('PEXPIRE', counts, ARGV[1])
      redis.call('SADD', KEYS[4], members, counts, KEYS[3])
      hold_room_for(4, tonumber(ARGV[1]), tonumber(ARGV[#ARGV]))
    end
  end
  out[i] = status
end
local all = redis.call('HGETALL', counts)
for i = 1, #all do out[#out + 1] = all[i] end
return out
