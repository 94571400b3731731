-- tally_remove: take a member's entry back out of an open tally (an unfollow).
-- KEYS[1] members hash (member -> option), KEYS[2] counts hash (option -> n),
-- KEYS[3] closed marker (exists = closed: a drawn lottery's entries stay as drawn)
-- ARGV[1] member
-- Returns 1 if the entry was removed, 0 if there was none or the tally is closed.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local option = redis.call('HGET', KEYS[1], ARGV[1])
if not option then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[2], option, -1) <= 0 then
  redis.call('HDEL', KEYS[2], option)
end
return 1
