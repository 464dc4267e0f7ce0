-- tollgate: decide one request against every limit it matches, atomically.
--
-- The same decisions as tollgate-core's MemoryStore (crates/core/src/algorithm),
-- line for line, with these representation changes, because Lua numbers are
-- doubles (integers exact below 2^53):
--   * instants are microseconds since the Unix epoch (TIME's resolution; exact
--     until the year 2255), windows whole microseconds;
--   * GCRA keeps its arrival time as whole microseconds plus a nanosecond
--     remainder, and computes in nanoseconds relative to now;
--   * durations returned are nanoseconds (all below 2^53).
--
-- KEYS[i]  the state of charge i (one string per (limit, key), with a TTL).
-- ARGV[1]  now in microseconds, or '' to read Redis's TIME.
-- ARGV[2]  extra lifetime, in milliseconds, that every written key keeps past
--          the instant its state stops mattering.
-- ARGV[3]  '1' to charge when every charge admits, '0' to only look, '2' to
--          reserve: charge as '1', and also answer one receipt per charge, what
--          undo.lua needs to take exactly this charge back (Redis Cluster,
--          where one request's charges in several slots are several scripts).
-- then 6 per charge: algorithm ('r' rolling, 'f' fixed, 'g' gcra, 's' sliding
--   counter), count, window in ns (the state's signature: a changed window starts
--   afresh, as in MemoryStore), window in µs, step in µs (rolling) or emission
--   interval in ns (gcra), burst (gcra).
--
-- Returns {charged, then per charge: admitted, remaining, retry ns, reset ns},
-- then, when reserving, per charge a receipt (0 when nothing was charged):
-- rolling, the slot taken; fixed and sliding counter, the window's index; gcra,
-- the arrival time written, in whole µs.
-- Writes only when it charges: when asked to and every charge admits.

local floor = math.floor
local byte, char, sub = string.byte, string.char, string.sub
-- Binary packing (Redis's struct library), not Lua's table unpack.
local pack, unpack = struct.pack, struct.unpack

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  -- Allowed before writes: scripts replicate their effects, not themselves
  -- (the default since Redis 5, the only way since 7).
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local grace_ms = tonumber(ARGV[2])
local commit = ARGV[3] == '1' or ARGV[3] == '2'
local reserve = ARGV[3] == '2'

-- a / b rounded up, for a >= 0, b > 0.
local function ceil_div(a, b)
  return floor((a + b - 1) / b)
end

local function admit(remaining, reset_ns)
  return {1, remaining, 0, reset_ns}
end

local function reject(wait_ns)
  return {0, 0, wait_ns, wait_ns}
end

-- Stores a state that matters for another `live_us` microseconds.
local function store(key, value, live_us)
  redis.call('SET', key, value, 'PX', string.format('%.0f', ceil_div(live_us, 1000) + grace_ms))
end

-- The state's payload (after its signature), or nil for a fresh state.
local function payload(raw, sig)
  if raw and sub(raw, 1, #sig) == sig then
    return #sig + 1
  end
  return nil
end

-- rolling: the instants, in steps, of the admitted requests still in the window,
-- oldest first, as an 8-byte base and one 16-bit offset per slot.
local rolling = {}

function rolling.peek(c, raw)
  local slots = {}
  local p = payload(raw, c.sig)
  if p then
    local base = unpack('<d', raw, p)
    for i = p + 8, #raw - 1, 2 do
      local lo, hi = byte(raw, i, i + 1)
      local slot = base + lo + hi * 256
      -- Slots never go backwards, so this drops exactly a prefix.
      if slot * c.step + c.window > now then
        slots[#slots + 1] = slot
      end
    end
  end
  c.slots = slots
  local len = #slots
  if len < c.count then
    local oldest = slots[1] or ceil_div(now, c.step)
    return admit(c.count - len - 1, (oldest * c.step + c.window - now) * 1000)
  end
  -- The slot whose return brings the count below the limit.
  return reject((slots[len - c.count + 1] * c.step + c.window - now) * 1000)
end

function rolling.charge(c, key)
  local slots = c.slots
  local at = ceil_div(now, c.step)
  -- A clock that stepped back must not make the log go backwards.
  if #slots > 0 and slots[#slots] > at then
    at = slots[#slots]
  end
  slots[#slots + 1] = at
  c.receipt = at
  local base = slots[1]
  local parts = {c.sig, pack('<d', base)}
  for i = 1, #slots do
    -- Live slots span at most one window: at most 60,001 steps.
    local offset = math.min(slots[i] - base, 65535)
    parts[#parts + 1] = char(offset % 256, floor(offset / 256))
  end
  store(key, table.concat(parts), at * c.step + c.window - now)
end

-- fixed: the aligned window's index and its count.
local fixed = {}

function fixed.peek(c, raw)
  local index, count = 0, 0
  local p = payload(raw, c.sig)
  if p then
    index, count = unpack('<dd', raw, p)
  end
  -- A clock that stepped back stays in the newest window seen.
  local current = math.max(floor(now / c.window), index)
  if current ~= index then
    index, count = current, 0
  end
  c.index, c.used = index, count
  c.ends_in = (index + 1) * c.window - now
  if count < c.count then
    return admit(c.count - count - 1, c.ends_in * 1000)
  end
  return reject(c.ends_in * 1000)
end

function fixed.charge(c, key)
  c.receipt = c.index
  store(key, c.sig .. pack('<dd', c.index, c.used + 1), c.ends_in)
end

-- gcra: the theoretical arrival time, as whole µs and a ns remainder.
local gcra = {}

function gcra.peek(c, raw)
  local tat_us, tat_ns = 0, 0
  local p = payload(raw, c.sig)
  if p then
    tat_us, tat_ns = unpack('<dd', raw, p)
  end
  -- max(tat, now) - now, in ns; only its sign matters when it is far negative.
  local ahead = (tat_us - now) * 1000 + tat_ns
  if ahead < 0 then
    ahead = 0
  end
  c.ahead = ahead
  local interval, burst = c.interval, c.burst
  local tolerance = (burst - 1) * interval
  if ahead > tolerance then
    return reject(ahead - tolerance)
  end
  local next_ahead = ahead + interval
  local remaining = floor((burst * interval - next_ahead) / interval)
  local reset = next_ahead - (burst - remaining - 1) * interval
  return admit(math.min(remaining, 4294967295), reset)
end

function gcra.charge(c, key)
  local ahead = c.ahead + c.interval
  local whole_us = floor(ahead / 1000)
  c.receipt = now + whole_us
  store(key, c.sig .. pack('<dd', now + whole_us, ahead - whole_us * 1000), ceil_div(ahead, 1000))
end

-- sliding counter: the current aligned window's index, the previous window's
-- count and the current one's (16-bit, saturating).
local sliding = {}

-- The wait, from `elapsed` into a window of `width` (ns), until
-- previous * (width - e) <= room * width, i.e. e >= width - room * width / previous.
-- room * width / previous is split so that no product exceeds 2^53.
local function wait_for_room(previous, room, width, elapsed)
  if previous == 0 then
    return 0
  end
  local whole = floor(width / previous)
  local part = width - whole * previous
  local fits = math.min(room * whole + floor(room * part / previous), width)
  local needed = width - fits
  if needed > elapsed then
    return needed - elapsed
  end
  return 0
end

function sliding.peek(c, raw)
  local index, previous, current = 0, 0, 0
  local p = payload(raw, c.sig)
  if p then
    index, previous, current = unpack('<ddd', raw, p)
  end
  local w = c.window
  local now_index = floor(now / w)
  local gap = now_index - index
  if gap == 1 then
    previous, current = current, 0
  elseif gap > 1 then
    previous, current = 0, 0
  end
  -- A clock that stepped back stays in the newest window seen.
  c.index, c.previous, c.current = math.max(now_index, index), previous, current
  local elapsed = now - now_index * w
  local limit = math.min(c.count, 65535)
  -- Compared in µs: both sides scale by 1000 from the core's ns.
  local used = previous * (w - elapsed) + (current + 1) * w
  local width_ns, elapsed_ns = w * 1000, elapsed * 1000
  if used <= limit * w then
    local remaining = floor((limit * w - used) / w)
    local reset = width_ns - elapsed_ns
    if previous > 0 then
      reset = math.min(ceil_div(width_ns, previous), reset)
    end
    return admit(remaining, reset)
  end
  local wait
  if current < limit then
    wait = wait_for_room(previous, limit - current - 1, width_ns, elapsed_ns)
  else
    -- Full this window: wait for the next, where this window's count becomes
    -- the weighted previous one.
    wait = (width_ns - elapsed_ns) + wait_for_room(current, limit - 1, width_ns, 0)
  end
  return reject(math.max(wait, 1))
end

function sliding.charge(c, key)
  c.receipt = c.index
  local value = pack('<ddd', c.index, c.previous, math.min(c.current + 1, 65535))
  store(key, c.sig .. value, (c.index + 2) * c.window - now)
end

local algorithms = {r = rolling, f = fixed, g = gcra, s = sliding}

local charges, verdicts = {}, {}
local all = 1
for i = 1, #KEYS do
  local a = 3 + (i - 1) * 6
  local c = {
    algorithm = algorithms[ARGV[a + 1]],
    count = tonumber(ARGV[a + 2]),
    sig = ARGV[a + 1] .. ARGV[a + 3] .. '|',
    window = tonumber(ARGV[a + 4]),
  }
  if ARGV[a + 1] == 'r' then
    c.step = tonumber(ARGV[a + 5])
  elseif ARGV[a + 1] == 'g' then
    c.interval, c.burst = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  end
  local verdict = c.algorithm.peek(c, redis.call('GET', KEYS[i]))
  if verdict[1] == 0 then
    all = 0
  end
  charges[i], verdicts[i] = c, verdict
end

if not commit then
  all = 0
end
if all == 1 then
  for i = 1, #KEYS do
    charges[i].algorithm.charge(charges[i], KEYS[i])
  end
end

local reply = {all}
for i = 1, #KEYS do
  for _, v in ipairs(verdicts[i]) do
    reply[#reply + 1] = v
  end
end
if reserve then
  for i = 1, #KEYS do
    reply[#reply + 1] = charges[i].receipt or 0
  end
end
return reply
