-- stock_take: a batch of takes of one stock, each the whole flash-sale rule in
-- one atomic step, in order; never oversells. The first failing check decides,
-- in core.flashsale.decide_buy's order. (A batch: concurrent buyers of one sale
-- share a script call and its WAIT; see bus/coalesce.py.)
-- KEYS[1] stock hash, KEYS[2] records list (see stock_create.lua),
-- KEYS[3] the room's cid hash: "<len user>:<user><cid>" ->
--   "<stock exp ms>|<len stock key>:<stock key><len fp>:<fp><record>"
--   (room-wide: a cid names one take in the room while its stock lives),
-- KEYS[4..8] the room's life keys (dynamic keys set first: see _hold.lua)
-- ARGV[1] stock key, ARGV[2] n, then n times: user, qty, per_user_limit,
-- record, cid ('' = none), fingerprint; then idle_ttl ms (0 = rooms never expire)
-- Returns n replies {status, left, user total, record or false}
local stock, records, cids = KEYS[1], KEYS[2], KEYS[3]
local key, n = ARGV[1], tonumber(ARGV[2])
local st = redis.call('HMGET', stock, 'left', 'opens', 'closes', 'exp')
local out = {}
if not st[1] then
  for i = 1, n do out[i] = {'not_found', 0, 0, false} end
  return out
end
local left, opens, closes, exp = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), st[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open = now >= opens and (closes == 0 or now < closes)

local function field(s, pos) -- "<len>:<bytes>" at pos -> bytes, next pos
  local m = string.match(s, '^(%d+):', pos)
  local from = pos + #m + 1
  return string.sub(s, from, from + tonumber(m) - 1), from + tonumber(m)
end

local cids_ttl_checked = false
local function take(user, qty, limit, record, cid, fp)
  local held = tonumber(redis.call('HGET', stock, 'u:' .. user)) or 0
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
  if not open then return {'not_open', left, held, false} end
  if left == 0 then return {'sold_out', left, held, false} end
  if held + qty > limit then return {'limit_reached', left, held, false} end
  if left < qty then return {'sold_out', left, held, false} end
  left = left - qty
  held = held + qty
  redis.call('HSET', stock, 'left', left, 'u:' .. user, held)
  redis.call('RPUSH', records, record)
  if cid_field then
    redis.call('HSET', cids, cid_field, exp .. '|' .. #key .. ':' .. key .. #fp .. ':' .. fp .. record)
    -- the hash lives as long as the longest-lived stock that wrote to it
    if not cids_ttl_checked and redis.call('PTTL', cids) < tonumber(exp) - now then
      redis.call('PEXPIREAT', cids, exp)
      redis.call('SADD', KEYS[4], cids)
      hold_room_for(4, tonumber(exp) - now, tonumber(ARGV[#ARGV]))
    end
    cids_ttl_checked = true
  end
  return {'ok', left, held, record}
end

local took = false
for i = 1, n do
  local a = 2 + (i - 1) * 6
  out[i] = take(ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  if out[i][1] == 'ok' then took = true end
end
if took then redis.call('PEXPIREAT', records, exp) end
return out
