-- media_origins: a room's live origin entries (publisher, info), flat; expired ones are dropped.
-- KEYS[1] the room's origins hash (field publisher -> "<expires_ms>:<info>")
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  local expires, info = string.match(all[i + 1], '^(%d+):(.*)$')
  if expires and tonumber(expires) > now then
    out[#out + 1] = all[i]
    out[#out + 1] = info
  else
    redis.call('HDEL', key, all[i])
  end
end
return out
