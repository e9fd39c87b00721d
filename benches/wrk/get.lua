-- wrk script: GET (the URL's path), printing a one-line JSON summary.
-- Optional argument (after `--`): mean pause in ms between a connection's requests.
function init(args)
  pause = tonumber(args[1] or "0")
  if pause > 0 then
    -- Exponential pauses of mean `pause`, as recall.lua's, so that paced runs compare.
    math.randomseed(4242)
    delay = function() return -math.log(1 - math.random()) * pause end
  end
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
