-- node_announce: record (or, with ttl 0, remove) this node's announcement and drop
-- the expired ones. Expiry is by the Redis server's clock: nodes' clocks may differ.
-- KEYS[1] nodes hash (field node id -> "<expires_ms>:<info>")
-- ARGV[1] node id, ARGV[2] info, ARGV[3] ttl_ms
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('HSET', key, ARGV[1], string.format('%d', now + ttl) .. ':' .. ARGV[2])
else
  redis.call('HDEL', key, ARGV[1])
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
-- the hash goes away once every node stopped announcing
if longest > 0 then redis.call('PEXPIRE', key, longest) end
return 1
