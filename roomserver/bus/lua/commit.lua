-- commit: apply a batch of sub-commits to one room atomically, then publish
-- everything they produced as ONE message. See roomserver/bus/redis.py for the
-- record and payload formats (they must match _decode_* there).
--
-- KEYS[1] room hash (epoch, seq, ver, doc, cs = cap second, cn = cap count)
-- KEYS[2] history list (oldest first), entries "<ts>|<record>"
-- KEYS[3] room channel (SPUBLISH)
-- KEYS[4..6] counters hash, gates hash, dynamic keys set (for their idle lifetime)
-- KEYS[7..] idempotency hashes (e = epoch, f = fingerprint, s = seqs csv)
-- ARGV[1] epoch candidate (used only if the room has none), ARGV[2] max_events,
-- ARGV[3] max_age_ms, ARGV[4] number of sub-commits, ARGV[5] '1' = do not publish,
-- return the message instead (the caller publishes it once WAIT confirms a replica
-- has the write, so no subscriber sees an event a failover could still take back),
-- ARGV[6] idle_ttl ms (0 = rooms never expire): a commit that creates the room or
-- writes its document holds the room's keys that long (others leave TTLs alone:
-- the hot path stays one HMGET/HSET/RPUSH/SPUBLISH), then per sub-commit:
--   expect_version ('' = no CAS), doc_op ('1' set doc, '0' delete doc), doc,
--   idem key index in KEYS (0 = none), fingerprint, idem ttl ms, barrage cap,
--   number of drafts, then per draft: flags (1 durable + 2 capped), close code,
--   coalesce key, audience, body (JSON object bytes)
-- Returns {epoch, version, doc_created (0/1), message to publish or false,
--          {status, version, epoch, seq...}...}
-- with status 0 ok, 1 version conflict, 2 replayed, 3 idem conflict and
-- seq -1 for a shed draft, 0 for a published ephemeral one.
local room, hist, chan = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)
local second = math.floor(now / 1000)

local st = redis.call('HMGET', room, 'epoch', 'seq', 'ver', 'cs', 'cn', 'doc')
local epoch = st[1]
local seq = tonumber(st[2]) or 0
local ver = tonumber(st[3]) or 0
local cn = tonumber(st[5]) or 0
if tonumber(st[4]) ~= second then cn = 0 end
local had_doc = st[6] ~= false
local fresh = not st[1]
local doc_op, doc_val = nil, nil

local results, records, entries = {}, {}, {}
local applied, cas_applied = false, false
local a = 7
for _ = 1, tonumber(ARGV[4]) do
  local expect, op, doc = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local ik, fp, ittl = tonumber(ARGV[a + 3]), ARGV[a + 4], tonumber(ARGV[a + 5])
  local cap, n = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  a = a + 8
  local status, seqs = nil, nil
  if ik > 0 then
    local h = redis.call('HMGET', KEYS[ik], 'e', 'f', 's')
    -- An entry from an older epoch (the room was deleted since) does not count.
    if h[1] and epoch and h[1] == epoch then
      if h[2] ~= fp then
        status = 3
      else
        status, seqs = 2, {}
        for s in string.gmatch(h[3], '[^,]+') do seqs[#seqs + 1] = tonumber(s) end
      end
    end
  end
  if not status and expect ~= '' then
    if tonumber(expect) ~= ver then
      status = 1
    else
      ver = ver + 1
      doc_op, doc_val, cas_applied = op, doc, true
    end
  end
  if status then
    a = a + 5 * n
    local r = {status, ver, epoch or ''}
    if seqs then for i = 1, #seqs do r[#r + 1] = seqs[i] end end
    results[#results + 1] = r
  else
    applied = true
    if not epoch then epoch = ARGV[1] end
    local r = {0, ver, epoch}
    for _ = 1, n do
      local flags, close, co, au, body = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
      a = a + 5
      local shed = false
      if flags >= 2 and cap > 0 then
        if cn >= cap then shed = true else cn = cn + 1 end
      end
      if shed then
        r[#r + 1] = -1
      else
        local s = 0
        if flags % 2 == 1 then
          seq = seq + 1
          s = seq
          -- exactly protocol.with_seq: {"seq":N, + body without its "{"
          body = '{"seq":' .. string.format('%d', s) .. ',' .. string.sub(body, 2)
        end
        local rec = string.format('%d|%s|%d|%d|%d\n', s, close, #co, #au, #body) .. co .. au .. body
        records[#records + 1] = rec
        if s > 0 then entries[#entries + 1] = now_s .. '|' .. rec end
        r[#r + 1] = s
      end
    end
    if ik > 0 then
      local csv = {}
      for i = 4, #r do csv[#csv + 1] = string.format('%d', r[i]) end
      redis.call('HSET', KEYS[ik], 'e', epoch, 'f', fp, 's', table.concat(csv, ','))
      redis.call('PEXPIRE', KEYS[ik], ittl)
    end
    results[#results + 1] = r
  end
end

local doc_created = 0
if applied then
  redis.call('HSET', room, 'epoch', epoch, 'seq', seq, 'ver', ver, 'cs', second, 'cn', cn)
  if doc_op == '1' then
    redis.call('HSET', room, 'doc', doc_val)
    if not had_doc then doc_created = 1 end
  elseif doc_op == '0' then
    redis.call('HDEL', room, 'doc')
  end
end

if #entries > 0 then
  -- unpack() is limited by the Lua C stack: push in chunks
  for i = 1, #entries, 1000 do
    redis.call('RPUSH', hist, unpack(entries, i, math.min(i + 999, #entries)))
  end
  local max_events = tonumber(ARGV[2])
  if max_events > 0 then redis.call('LTRIM', hist, -max_events, -1) else redis.call('DEL', hist) end
  local oldest_ok = now - tonumber(ARGV[3])
  for _ = 1, max_events do
    local first = redis.call('LINDEX', hist, 0)
    if not first or tonumber(string.match(first, '^(%d+)')) >= oldest_ok then break end
    redis.call('LPOP', hist)
  end
end

if applied and (fresh or cas_applied) then
  hold({room, hist, KEYS[4], KEYS[5], KEYS[6]}, tonumber(ARGV[6]))
end

local message = false
if #records > 0 or cas_applied then
  local head = string.format('%s|%d|%d\n', epoch, ver, #records)
  message = head .. table.concat(records)
  if ARGV[5] ~= '1' then
    redis.call('SPUBLISH', chan, message)
    message = false
  end
end

local out = {epoch or '', ver, doc_created, message}
for i = 1, #results do out[#out + 1] = results[i] end
return out
