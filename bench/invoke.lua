-- wrk script for bench/run.py: POST a JSON event, report the figures as one JSON line.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
