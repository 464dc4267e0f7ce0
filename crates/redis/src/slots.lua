-- tollgate: the slots of one shared client budget (several sync processes on
-- one API key), as crates/sync's pacer keeps them in memory for one process.
--
-- A provider charges a request somewhere between its send and its answer, so a
-- slot is held from the send until one window after the answer. Each limit is a
-- sorted set of the requests holding a slot, scored by the instant the slot
-- returns (microseconds): at the send, provisionally, the send plus the longest
-- the answer can take plus the window (so a process that dies with a request in
-- flight frees its slot in time); at the answer, the answer plus the window.
-- Beside them, one hash keeps the budget's pause (a 429's retry instant) and
-- each limit's next even-spacing instant.
--
-- KEYS[1]    the hash: field 'paused', and 'next:<label>' per limit.
-- KEYS[1+i]  the sorted set of limit i.
-- ARGV[1]    now in microseconds, or '' to read Redis's TIME.
-- ARGV[2]    'take', 'done' or 'pause'.
--
-- take: ARGV[3] the request's id, then 5 per limit: label, count, window µs,
--       provisional hold µs (window plus the longest answer), spacing µs.
--       Takes a slot of every limit if all have one, the spacing allows it
--       and the budget is not paused: returns {1, 0}; otherwise takes nothing
--       and returns {0, wait µs} (the earliest instant worth asking again).
-- done: ARGV[3] the request's id, then 1 per limit: window µs. The slot now
--       returns one window after now (only ever earlier than provisionally).
-- pause: ARGV[3] the wait µs; nothing is taken before now + wait. Returns the
--       retry instant.
--
-- Every key expires once nothing in it matters any more.

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local op = ARGV[2]

-- Numbers handed to Redis as text: Lua would write '%.14g' and round instants.
local function int(x)
  return string.format('%.0f', x)
end
local pace = KEYS[1]

local function keep_until(key, instant)
  local ms = math.ceil((instant - now) / 1000) + 1000
  if ms > 0 then
    local ttl = redis.call('PTTL', key)
    if ttl < ms then
      redis.call('PEXPIRE', key, ms)
    end
  end
end

if op == 'take' then
  local id = ARGV[3]
  local paused = tonumber(redis.call('HGET', pace, 'paused') or '0')
  if now < paused then
    return {0, paused - now}
  end
  local wait = 0
  local nexts = {}
  for i = 2, #KEYS do
    local a = 4 + (i - 2) * 5
    local label, count = ARGV[a], tonumber(ARGV[a + 1])
    local key = KEYS[i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
    local used = redis.call('ZCARD', key)
    if used >= count then
      local frees = redis.call('ZRANGE', key, used - count, used - count, 'WITHSCORES')
      wait = math.max(wait, tonumber(frees[2]) - now)
    end
    local next_send = tonumber(redis.call('HGET', pace, 'next:' .. label) or '0')
    nexts[i] = next_send
    wait = math.max(wait, next_send - now)
  end
  if wait > 0 then
    return {0, wait}
  end
  local longest = now
  for i = 2, #KEYS do
    local a = 4 + (i - 2) * 5
    local label, hold, spacing = ARGV[a], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local key = KEYS[i]
    redis.call('ZADD', key, int(now + hold), id)
    keep_until(key, now + hold)
    -- Anchored on the schedule, as the in-memory pacer: a send late by less
    -- than a tenth of the spacing does not push every later one back.
    local next_send = nexts[i] + spacing
    if now - nexts[i] > spacing / 10 then
      next_send = now + spacing
    end
    redis.call('HSET', pace, 'next:' .. label, int(next_send))
    longest = math.max(longest, now + hold)
  end
  keep_until(pace, longest)
  return {1, 0}
elseif op == 'done' then
  local id = ARGV[3]
  for i = 1, #KEYS - 1 do
    local window = tonumber(ARGV[3 + i])
    -- XX: only a slot still held; LT: only ever earlier.
    redis.call('ZADD', KEYS[i + 1], 'XX', 'LT', int(now + window), id)
  end
  return {1, 0}
elseif op == 'pause' then
  local until_us = now + tonumber(ARGV[3])
  local paused = tonumber(redis.call('HGET', pace, 'paused') or '0')
  if until_us > paused then
    redis.call('HSET', pace, 'paused', int(until_us))
    keep_until(pace, until_us)
    paused = until_us
  end
  return {1, paused}
end
return redis.error_reply('slots.lua: unknown operation ' .. tostring(op))
