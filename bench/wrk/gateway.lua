-- wrk script for bench/run.ts: POST check or deduct bodies (users spread over `users`, a fresh
-- request_id per request: thread id + counter, so threads never collide), or GET a list of paths
-- in turn. Arguments after `--` are key=value:
--   run=<id> token=<bearer> users=<n> paths=<file with one path per line, for GET mode>
--   prefix=<user id prefix> (default bench: users bench0 .. bench<n-1>)
--   batch=<n>: POST /deduct/batch bodies of n items (distinct request ids, users spread)
-- done() prints one JSON line: requests, duration_us, non2xx (wrk's status errors), errors,
-- p50/p90/p99 in ms, and `missed` (send slots a paced run could not keep; see paced.lua).
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local function options(args)
  local o = {}
  for _, a in ipairs(args) do
    local k, v = string.match(a, "^([%w_]+)=(.*)$")
    if k then o[k] = v end
  end
  return o
end

function init(args)
  local o = options(args)
  n = 0
  missed = 0
  run = (o.run or "run") .. "-" .. tostring(tid)
  users = tonumber(o.users or "1000")
  prefix = o.prefix or "bench"
  rate = tonumber(o.rate or "0")
  batch = tonumber(o.batch or "0")
  wrk.headers["Authorization"] = "Bearer " .. (o.token or "bench")
  paths = nil
  if o.paths then
    paths = {}
    for line in io.lines(o.paths) do
      if line ~= "" then table.insert(paths, line) end
    end
  else
    deduct = string.find(wrk.path, "deduct") ~= nil
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  n = n + 1
  if paths then
    return wrk.format("GET", paths[(n - 1) % #paths + 1])
  end
  local body
  if batch > 0 then
    local items = {}
    for i = 1, batch do
      items[i] = string.format('{"request_id":"%s-%d-%d","user_id":"%s%d","service_name":"passport"}', run, n, i, prefix, (n * batch + i) % users)
    end
    body = '{"items":[' .. table.concat(items, ",") .. ']}'
  elseif deduct then
    body = string.format('{"request_id":"%s-%d","user_id":"%s%d","service_name":"passport"}', run, n, prefix, n % users)
  else
    body = string.format('{"user_id":"%s%d","service_name":"passport"}', prefix, n % users)
  end
  return wrk.format("POST", nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local missedAll = 0
  for _, t in ipairs(threads) do missedAll = missedAll + (t:get("missed") or 0) end
  io.write(string.format('{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"missed":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000, missedAll))
end
