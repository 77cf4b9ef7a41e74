-- wrk script for bench/push.py: every request a unique SmsReport array of `size` receipts.
--   wrk -s bench/push.lua -t T -c C -d S URL -- SIZE FIRST
-- Receipt ids are FIRST + thread * 10^9 + n: no two requests (of any thread) share one, so the
-- rows stored count the receipts committed. done() prints one JSON line for bench/push.py.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  size = tonumber(args[1] or "1")
  first = tonumber(args[2] or "1")
  sent, refused = 0, 0
end

local element = '{"biz_id":"%015d^0","out_id":"o%d","phone_number":"139%08d",'
  .. '"send_time":"2026-11-25 10:00:00","report_time":"2026-11-25 10:00:04",'
  .. '"success":true,"err_code":"DELIVERED","err_msg":"ok","sms_size":"1"}'
local headers = {["Content-Type"] = "application/json"}

function request()
  local parts = {}
  for j = 0, size - 1 do
    local i = first + id * 1000000000 + sent * size + j
    parts[#parts + 1] = string.format(element, i, i, i % 100000000)
  end
  sent = sent + 1
  return wrk.format("POST", nil, headers, "[" .. table.concat(parts, ",") .. "]")
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"code": *0') then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local refusals = 0
  for _, thread in ipairs(threads) do
    refusals = refusals + thread:get("refused")
  end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, '
      .. '"refused": %d, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, refusals,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
