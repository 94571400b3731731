-- nodes: the live announcements (node id, info, ms left), flat; expired ones are dropped.
-- KEYS[1] nodes hash (field node id -> "<expires_ms>:<info>")
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
    out[#out + 1] = tonumber(expires) - now
  else
    redis.call('HDEL', key, all[i])
  end
end
return out
