-- wrk script for bench/auth.py: the invoke of bench/invoke.lua with headers signed by
-- botocore (LAMINA_BENCH_HEADERS, JSON), replayed within their five minutes.
wrk.method = "POST"
wrk.body = "{}"
local given = os.getenv("LAMINA_BENCH_HEADERS") or "{}"
for name, value in string.gmatch(given, '"([^"]+)": "([^"]*)"') do
  wrk.headers[name] = value
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
