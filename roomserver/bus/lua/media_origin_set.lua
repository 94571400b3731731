-- media_origin_set: record (ttl > 0) where a room's publisher sends its media, or remove
-- that entry (ttl 0) only while it is still the one given (another node's newer entry
-- stays); expired entries go. Expiry is by the Redis server's clock.
-- KEYS[1] the room's origins hash (field publisher -> "<expires_ms>:<info>")
-- ARGV[1] publisher, ARGV[2] info, ARGV[3] ttl_ms
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('HSET', key, ARGV[1], string.format('%d', now + ttl) .. ':' .. ARGV[2])
else
  local current = redis.call('HGET', key, ARGV[1])
  if current and string.match(current, '^%d+:(.*)$') == ARGV[2] then
    redis.call('HDEL', key, ARGV[1])
  end
end
local all = redis.call('HGETALL', key)
local longest = 0
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%d+):'))
  if not expires or expires <= now then
    redis.call('HDEL', key, all[i])
  elseif expires - now > longest then
    longest = expires - now
  end
end
if longest > 0 then redis.call('PEXPIRE', key, longest) end
return 1
