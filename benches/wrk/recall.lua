-- wrk script: POST /v1/recall for a random known user.
-- Arguments (after `--`): k, number of users (ids "0".."users-1"), optional mean delay in ms between
-- a connection's requests (a crude rate limit: rate ~= connections * 1000 / (delay + latency)).
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  k = tonumber(args[1] or "10")
  users = tonumber(args[2] or "20000")
  pause = tonumber(args[3] or "0")
  math.randomseed(12345 + 7919 * (id or 0))
  local headers = { ["Content-Type"] = "application/json" }
  -- Every request is formatted once here, so that per request wrk only picks one: formatting in
  -- request() cost wrk (which shares the cores with the server) CPU that get.lua's static request
  -- does not, and that was counted against the recall rows.
  requests = {}
  for u = 0, users - 1 do
    local body = string.format('{"user_id":"%d","k":%d}', u, k)
    requests[u + 1] = wrk.format("POST", "/v1/recall", headers, body)
  end
  -- wrk checks for a global delay() after init: define it only when pacing. Exponential pauses
  -- (mean `pause`), as independent users would send: equal pauses kept all connections in
  -- lockstep, so the "half rate" arrived in bursts of every connection at once.
  if pause > 0 then
    delay = function() return -math.log(1 - math.random()) * pause end
  end
end

function request()
  return requests[math.random(1, users)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
