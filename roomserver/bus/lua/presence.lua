-- presence: record this node's socket count for a room and return the room's
-- total over entries that have not expired (expired ones are removed).
-- KEYS[1] presence hash (field node -> "<count>:<expires_ms>")
-- ARGV[1] node id, ARGV[2] count, ARGV[3] ttl_ms
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', key, ARGV[1], ARGV[2] .. ':' .. string.format('%d', now + ttl))
local all = redis.call('HGETALL', key)
local total = 0
for i = 1, #all, 2 do
  local count, expires = string.match(all[i + 1], '^(-?%d+):(%d+)$')
  if expires and tonumber(expires) > now then
    total = total + tonumber(count)
  else
    redis.call('HDEL', key, all[i])
  end
end
-- an abandoned room's hash goes away once every entry would have expired
if ttl > 0 and redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return total
