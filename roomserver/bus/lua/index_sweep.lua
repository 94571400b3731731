-- index_sweep: forget an app's index entries of rooms found gone (expired), and
-- move the next check of rooms found alive. The caller read the rooms' state in
-- their own slots first; an entry re-registered since (its check moved past now)
-- is kept: the room is being created again.
-- KEYS[1] rooms (lex index), KEYS[2] seen (room -> next check ms), KEYS[3] schedule
-- ARGV[1] now ms, ARGV[2] n gone, then n gone room keys, then pairs (next check ms, room)
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for i = 3, 2 + n do
  local room = ARGV[i]
  local check = tonumber(redis.call('ZSCORE', KEYS[2], room))
  if check and check <= now then
    redis.call('ZREM', KEYS[1], room)
    redis.call('ZREM', KEYS[2], room)
    redis.call('ZREM', KEYS[3], room)
    removed = removed + 1
  end
end
for i = 3 + n, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[i], ARGV[i + 1])
end
return removed
