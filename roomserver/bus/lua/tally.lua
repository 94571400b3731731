-- tally: record a member's single entry for an option (poll votes, lottery entries).
-- KEYS[1] members hash (member -> option), KEYS[2] counts hash (option -> n),
-- KEYS[3] closed marker (exists = closed), KEYS[4] the room's dynamic keys set
-- ARGV[1] member, ARGV[2] option, ARGV[3] ttl_ms (set when the tally is created)
-- Returns {status, option, count, option, count, ...}
local members, counts = KEYS[1], KEYS[2]
local status = 'exists'
if redis.call('EXISTS', KEYS[3]) == 1 then
  status = 'closed'
elseif redis.call('HSETNX', members, ARGV[1], ARGV[2]) == 1 then
  status = 'added'
  redis.call('HINCRBY', counts, ARGV[2], 1)
  if redis.call('PTTL', members) == -1 then -- created just now
    redis.call('PEXPIRE', members, ARGV[3])
    redis.call('PEXPIRE', counts, ARGV[3])
    redis.call('SADD', KEYS[4], members, counts, KEYS[3])
  end
end
local out = {status}
local all = redis.call('HGETALL', counts)
for i = 1, #all do out[#out + 1] = all[i] end
return out
