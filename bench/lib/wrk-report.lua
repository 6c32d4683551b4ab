-- wrk script used for every benchmark run.
-- * WRK_POST_BYTES=N in the environment turns requests into POSTs with an
--   N-byte body (the 1 MiB upload case).
-- * done() prints one machine-readable line (latencies in microseconds),
--   including p99.9, which `wrk --latency` does not show.
local post = tonumber(os.getenv("WRK_POST_BYTES") or "")
if post and post > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("c", post)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

-- * WRK_IDEM_KEYS=1 gives every request an Idempotency-Key of its own (the keyed-POST
--   case: each is a first request, none a replay).
if os.getenv("WRK_IDEM_KEYS") == "1" then
  local n, prefix = 0, string.format("%x-%x", os.time(), math.random(1, 2 ^ 30))
  function request()
    n = n + 1
    wrk.headers["Idempotency-Key"] = '"' .. prefix .. "-" .. n .. '"'
    return wrk.format()
  end
end

-- * WRK_STICKY=1 sends an x-user-id of 10,000 users in turn (the sticky split case).
if os.getenv("WRK_STICKY") == "1" then
  local n = 0
  function request()
    n = n + 1
    wrk.headers["x-user-id"] = "user-" .. (n % 10000)
    return wrk.format()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d p50=%d p90=%d p99=%d p999=%d max=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
