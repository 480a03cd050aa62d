-- wrk script for bench/embeddings.py: `wrk ... -s bench/embeddings.lua URL -- BODIES_FILE`.
-- BODIES_FILE holds one JSON body per line; each request POSTs the next one (in turn) to the
-- URL's path. At the end, prints one line `JSON {...}` with the counts and latencies (µs).
local bodies = {}
local next_body = 1

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  next_body = math.random(#bodies)
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"latency_us": {"p50": %d, "p99": %d}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
