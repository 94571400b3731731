-- history: durable events with seq > since, after dropping entries older than
-- max_age (the read is also a trim, so an idle room's stale tail goes away).
-- KEYS[1] room hash, KEYS[2] history list
-- ARGV[1] since (>= 0), ARGV[2] limit, ARGV[3] max_age_ms
-- Returns {0, epoch, head} .. entries, or {1, reason} when the range is gone,
-- or {0, '', 0} for a room without history.
local room, hist = KEYS[1], KEYS[2]
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local st = redis.call('HMGET', room, 'epoch', 'seq')
if not st[1] then
  if since == 0 then return {0, '', 0} end
  return {1, 'the room has no history'}
end
local head = tonumber(st[2]) or 0
if since > head then return {1, 'seq ' .. since .. ' is beyond the head ' .. head} end
local t = redis.call('TIME')
local oldest_ok = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local len = redis.call('LLEN', hist)
for _ = 1, len do
  local first = redis.call('LINDEX', hist, 0)
  if not first or tonumber(string.match(first, '^(%d+)')) >= oldest_ok then break end
  redis.call('LPOP', hist)
  len = len - 1
end
local out = {0, st[1], head}
if since == head or limit <= 0 then return out end
-- seqs in the list are contiguous and end at head
local oldest = head - len + 1
if since + 1 < oldest then
  return {1, 'events after seq ' .. since .. ' are no longer kept (oldest ' .. oldest .. ')'}
end
local start = since + 1 - oldest
local items = redis.call('LRANGE', hist, start, start + limit - 1)
for i = 1, #items do out[#out + 1] = items[i] end
return out
