-- stock_take: the whole flash-sale rule in one atomic step; never oversells.
-- The first failing check decides, in core.flashsale.decide_buy's order.
-- KEYS[1] stock hash, KEYS[2] records list (see stock_create.lua),
-- KEYS[3] the room's cid hash: "<len user>:<user><cid>" ->
--   "<stock exp ms>|<len stock key>:<stock key><len fp>:<fp><record>"
--   (room-wide: a cid names one take in the room while its stock lives),
-- KEYS[4] the room's dynamic keys set
-- ARGV[1] user, ARGV[2] qty, ARGV[3] per_user_limit, ARGV[4] record, ARGV[5] cid
-- ('' = none), ARGV[6] fingerprint, ARGV[7] stock key
-- Returns {status, left, user total, record or false}
local stock, records, cids = KEYS[1], KEYS[2], KEYS[3]
local user, qty, limit, record = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local cid, fp, key = ARGV[5], ARGV[6], ARGV[7]
local st = redis.call('HMGET', stock, 'left', 'opens', 'closes', 'exp', 'u:' .. user)
if not st[1] then return {'not_found', 0, 0, false} end
local left, opens, closes, exp = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), st[4]
local held = tonumber(st[5]) or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function field(s, pos) -- "<len>:<bytes>" at pos -> bytes, next pos
  local n = string.match(s, '^(%d+):', pos)
  local from = pos + #n + 1
  return string.sub(s, from, from + tonumber(n) - 1), from + tonumber(n)
end

local cid_field = nil
if cid ~= '' then
  cid_field = #user .. ':' .. user .. cid
  local hit = redis.call('HGET', cids, cid_field)
  if hit then
    local bar = string.find(hit, '|', 1, true)
    if tonumber(string.sub(hit, 1, bar - 1)) > now then -- its stock still lives
      local first_key, pos = field(hit, bar + 1)
      local first_fp, pos2 = field(hit, pos)
      if first_key == key and first_fp == fp then
        -- A write, so that a WAIT after this call covers the first take too (WAIT
        -- waits for this connection's last write): the first call may have failed
        -- its WAIT, and this replay must not acknowledge an unreplicated order.
        redis.call('HINCRBY', stock, 'replays', 1)
        return {'replayed', left, held, string.sub(hit, pos2)}
      end
      return {'conflict', left, held, false}
    end
  end
end
if now < opens or (closes > 0 and now >= closes) then return {'not_open', left, held, false} end
if left == 0 then return {'sold_out', left, held, false} end
if held + qty > limit then return {'limit_reached', left, held, false} end
if left < qty then return {'sold_out', left, held, false} end
left = left - qty
held = held + qty
redis.call('HSET', stock, 'left', left, 'u:' .. user, held)
redis.call('RPUSH', records, record)
redis.call('PEXPIREAT', records, exp)
if cid_field then
  redis.call('HSET', cids, cid_field, exp .. '|' .. #key .. ':' .. key .. #fp .. ':' .. fp .. record)
  -- the hash lives as long as the longest-lived stock that wrote to it
  if redis.call('PTTL', cids) < tonumber(exp) - now then
    redis.call('PEXPIREAT', cids, exp)
    redis.call('SADD', KEYS[4], cids)
  end
end
return {'ok', left, held, record}
