-- shares_grab: pop the next share for a user, at most one per user.
-- KEYS as in shares_create.lua; ARGV[1] user
-- Returns {status, amount, left, best user or false, best amount}
local meta, queue, grabs, user = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local m = redis.call('HMGET', meta, 'exp', 'u:' .. user)
if not m[1] then return {'not_found', 0, 0, false, 0} end
if m[2] then return {'replayed', tonumber(m[2]), redis.call('LLEN', queue), false, 0} end
local amount = redis.call('LPOP', queue)
if not amount then return {'sold_out', 0, 0, false, 0} end
redis.call('HSET', meta, 'u:' .. user, amount)
redis.call('RPUSH', grabs, amount .. ':' .. user)
redis.call('PEXPIREAT', grabs, m[1])
local left = redis.call('LLEN', queue)
if left > 0 then return {'ok', tonumber(amount), left, false, 0} end
-- the last share: name the best grab (ties go to the earliest)
local best_user, best = false, -1
for _, g in ipairs(redis.call('LRANGE', grabs, 0, -1)) do
  local a, u = string.match(g, '^(%d+):(.*)$')
  if tonumber(a) > best then best, best_user = tonumber(a), u end
end
return {'ok', tonumber(amount), 0, best_user, best}
