-- tollgate: take back charges that decide.lua reserved, for a request that a
-- limit in another Redis Cluster slot then rejected.
--
-- Exact where it can be, and otherwise takes back nothing: an undo that took
-- back too much would over-admit, one that takes back nothing only keeps a
-- reservation until it expires (under-admission, briefly).
--
-- KEYS[i]  the state of charge i, as decide.lua was given it.
-- ARGV[1]  now in microseconds, or '' to read Redis's TIME (as decide.lua).
-- then 4 per charge: algorithm, window in ns (the state's signature), emission
--   interval in ns (gcra; 0 otherwise), and decide.lua's receipt:
--   * rolling: the slot taken; removes one slot of that value, if still logged;
--   * fixed: the window's index; decrements its count if still that window;
--   * sliding counter: the window's index; decrements the current count if
--     still that window, the previous one if the window has moved on once;
--   * gcra: the arrival time written (whole µs); subtracts one interval from
--     the arrival time if now is still before the receipt. Later charges then
--     all stacked on this one (none found the bucket drained), so the state is
--     exactly as if it had never been charged. Once now reaches the receipt, a
--     later charge may have found the bucket drained past it, after which
--     subtracting would forget a real charge: nothing is taken back.
-- A state whose signature changed (another algorithm or window) is left alone.
--
-- Keys keep their expiry (KEEPTTL): it is at least as long as what remains.
-- Returns how many charges were taken back.

local floor = math.floor
local byte, char, sub = string.byte, string.char, string.sub
local pack, unpack = struct.pack, struct.unpack

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function payload(raw, sig)
  if raw and sub(raw, 1, #sig) == sig then
    return #sig + 1
  end
  return nil
end

local function keep(key, value)
  redis.call('SET', key, value, 'KEEPTTL')
end

local undone = 0
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local tag = ARGV[a + 1]
  local sig = tag .. ARGV[a + 2] .. '|'
  local interval = tonumber(ARGV[a + 3])
  local receipt = tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local raw = redis.call('GET', key)
  local p = payload(raw, sig)
  if p and tag == 'r' then
    local base = unpack('<d', raw, p)
    local slots = {}
    for j = p + 8, #raw - 1, 2 do
      local lo, hi = byte(raw, j, j + 1)
      slots[#slots + 1] = base + lo + hi * 256
    end
    -- The log never goes backwards: search from the newest end.
    local found
    for j = #slots, 1, -1 do
      if slots[j] == receipt then
        found = j
        break
      elseif slots[j] < receipt then
        break
      end
    end
    if found then
      table.remove(slots, found)
      if #slots == 0 then
        redis.call('DEL', key)
      else
        local first = slots[1]
        local parts = {sig, pack('<d', first)}
        for j = 1, #slots do
          local offset = math.min(slots[j] - first, 65535)
          parts[#parts + 1] = char(offset % 256, floor(offset / 256))
        end
        keep(key, table.concat(parts))
      end
      undone = undone + 1
    end
  elseif p and tag == 'f' then
    local index, count = unpack('<dd', raw, p)
    if index == receipt and count > 0 then
      keep(key, sig .. pack('<dd', index, count - 1))
      undone = undone + 1
    end
  elseif p and tag == 's' then
    local index, previous, current = unpack('<ddd', raw, p)
    if index == receipt and current > 0 then
      keep(key, sig .. pack('<ddd', index, previous, current - 1))
      undone = undone + 1
    elseif index == receipt + 1 and previous > 0 then
      keep(key, sig .. pack('<ddd', index, previous - 1, current))
      undone = undone + 1
    end
  elseif p and tag == 'g' and now < receipt then
    local tat_us, tat_ns = unpack('<dd', raw, p)
    local ns = tat_ns - interval
    local whole = floor(ns / 1000)
    keep(key, sig .. pack('<dd', tat_us + whole, ns - whole * 1000))
    undone = undone + 1
  end
end
return undone
