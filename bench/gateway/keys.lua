-- wrk script for bench/gateway/run.sh: every request carries the API key of a
-- key drawn at random from the key file (one key a line), as `X-Api-Key`.
--
--   wrk -t2 -c64 -d10s --latency -s keys.lua URL -- KEYFILE [METHOD [BODY]]
--
-- METHOD (GET by default) and BODY (none by default; sent as JSON) are for
-- scripts/build-pgo's training traffic.
--
-- The requests are built once per thread in init(), so request() costs a table
-- lookup: wrk shares the cores with the servers it measures. done() prints
-- one machine-readable line for run.sh.

local requests = {}
local count = 0

function setup(thread)
  -- Give each thread its own id, to seed its generator.
  thread_count = (thread_count or 0) + 1
  thread:set("thread_id", thread_count - 1)
end

function init(args)
  local path = args[1] or error("keys.lua needs the key file: wrk ... -s keys.lua URL -- KEYFILE")
  local method, body = args[2], args[3]
  for key in io.lines(path) do
    count = count + 1
    local headers = { ["X-Api-Key"] = key }
    if body then headers["Content-Type"] = "application/json" end
    requests[count] = wrk.format(method, nil, headers, body)
  end
  if count == 0 then error("no keys in " .. path) end
  local id = thread_id or 0
  math.randomseed(os.time() * 1000 + id * 7919 + 17)
end

function request()
  return requests[math.random(count)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
