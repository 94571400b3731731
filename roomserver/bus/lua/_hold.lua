-- hold (prepended to the scripts that give a room's keys their lifetime; see
-- "Idle rooms" in roomserver/bus/redis.py): keep each key alive at least ttl ms
-- from now. A key without a TTL gets one, a shorter TTL is extended, a longer one
-- is left alone (never shortened), a missing key stays missing.
local function hold(names, ttl)
  if ttl <= 0 then return end
  for i = 1, #names do
    if redis.call('PEXPIRE', names[i], ttl, 'NX') == 0 then redis.call('PEXPIRE', names[i], ttl, 'GT') end
  end
end

-- A dynamic key (tally, stock, red packet) was made to live ttl ms: the room's life
-- keys, KEYS[first..#KEYS] (dynamic keys set first), must live at least as long,
-- so the set still names the key when the room is deleted and the key never
-- outlives its room; and the room was used now, so at least idle_ttl too.
-- idle_ttl 0: rooms never expire, their keys get no TTL.
local function hold_room_for(first, ttl, idle)
  if idle <= 0 then return end
  local names = {}
  for i = first, #KEYS do names[#names + 1] = KEYS[i] end
  hold(names, math.max(ttl, idle))
end
