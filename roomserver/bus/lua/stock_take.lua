-- stock_take: the whole flash-sale rule in one atomic step; never oversells.
-- KEYS[1] stock hash, KEYS[2] records list (see stock_create.lua)
-- ARGV[1] user, ARGV[2] qty, ARGV[3] per_user_limit, ARGV[4] record, ARGV[5] cid
-- ('' = none), ARGV[6] fingerprint
-- Returns {status, left, user total, record or false}
local stock, records = KEYS[1], KEYS[2]
local user, qty, limit, record, cid, fp = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local st = redis.call('HMGET', stock, 'left', 'opens', 'closes', 'exp', 'u:' .. user)
if not st[1] then return {'not_found', 0, 0, false} end
local left, opens, closes, exp = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), st[4]
local held = tonumber(st[5]) or 0
local cid_field = nil
if cid ~= '' then
  cid_field = 'c:' .. #user .. ':' .. user .. cid
  local hit = redis.call('HGET', stock, cid_field)
  if hit then
    local n = string.match(hit, '^(%d+):')
    local pos = #n + 2
    local first_fp = string.sub(hit, pos, pos + tonumber(n) - 1)
    local first_record = string.sub(hit, pos + tonumber(n))
    local status = 'conflict'
    if first_fp == fp then status = 'replayed' end
    return {status, left, held, first_record}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < opens or (closes > 0 and now >= closes) then return {'not_open', left, held, false} end
if left < qty then return {'sold_out', left, held, false} end
if held + qty > limit then return {'limit_reached', left, held, false} end
left = left - qty
held = held + qty
redis.call('HSET', stock, 'left', left, 'u:' .. user, held)
if cid_field then redis.call('HSET', stock, cid_field, #fp .. ':' .. fp .. record) end
redis.call('RPUSH', records, record)
redis.call('PEXPIREAT', records, exp)
return {'ok', left, held, record}
