-- wrk script for the throughput runs (bench/run.ts): POST check or deduct bodies, users spread over
-- `users`, a fresh request_id per request (thread id + counter, so threads never collide).
--   wrk ... -s bench/gateway.lua <url> -- <run id> <bearer token> <users>
-- done() prints one JSON line: requests, duration_us, non2xx (wrk's status errors), errors, p50/p99 ms.
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  n = 0
  run = (args[1] or "run") .. "-" .. tostring(tid)
  users = tonumber(args[3] or "1000")
  deduct = string.find(wrk.path, "deduct") ~= nil
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (args[2] or "bench")
end

function request()
  n = n + 1
  local body
  if deduct then
    body = string.format('{"request_id":"%s-%d","user_id":"bench%d","service_name":"passport"}', run, n, n % users)
  else
    body = string.format('{"user_id":"bench%d","service_name":"passport"}', n % users)
  end
  return wrk.format("POST", nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50":%.3f,"p99":%.3f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
