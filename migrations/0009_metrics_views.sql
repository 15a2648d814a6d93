-- Hand-written (drizzle-kit generate --custom): the documented SQL views of the operational
-- metrics (docs/analytics.md), over the hourly rollups. Percentiles come from the merged
-- duration sketches (src/metrics/sketch.ts): the bucket midpoint of the nearest-rank value,
-- exact below 128 ms, else within 1/128 of the exact value. Money is integer nano-USD.
-- v_run_metrics_daily: runs by the UTC day they were created, per customer, project, run type and pool: volume, outcomes, success and failure rates (of the finished runs), failures by type, average duration
CREATE VIEW `v_run_metrics_daily` AS
SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, customer_id, project_id, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, pool,
  SUM(runs) AS runs, SUM(succeeded + failed + cancelled) AS finished, SUM(unfinished) AS unfinished,
  SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(cancelled) AS cancelled,
  ROUND(SUM(succeeded) * 1.0 / NULLIF(SUM(succeeded + failed + cancelled), 0), 4) AS success_rate,
  ROUND(SUM(failed) * 1.0 / NULLIF(SUM(succeeded + failed + cancelled), 0), 4) AS failure_rate,
  SUM(failures_transient) AS failures_transient, SUM(failures_timeout) AS failures_timeout, SUM(failures_worker_error) AS failures_worker_error, SUM(failures_permanent) AS failures_permanent, SUM(failures_budget_exceeded) AS failures_budget_exceeded, SUM(failures_cancelled) AS failures_cancelled,
  ROUND(SUM(duration_sum_ms) * 1.0 / NULLIF(SUM(timed), 0), 1) AS avg_duration_ms
FROM run_rollups GROUP BY 1, 2, 3, 4, 5;
--> statement-breakpoint
-- v_run_failure_types: failed and cancelled runs per UTC day, run type and failure type, and their share of the day's finished runs of that run type
CREATE VIEW `v_run_failure_types` AS
WITH d AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, SUM(succeeded + failed + cancelled) AS finished,
    SUM(failures_transient) AS transient, SUM(failures_timeout) AS timeout, SUM(failures_worker_error) AS worker_error, SUM(failures_permanent) AS permanent, SUM(failures_budget_exceeded) AS budget_exceeded, SUM(failures_cancelled) AS cancelled
  FROM run_rollups GROUP BY 1, 2),
u AS (
  -- one row per failure type (D1 limits compound SELECTs: the types come from a JSON list)
  SELECT d.day, d.run_type, t.value AS failure_type, d.finished,
    CASE t.value WHEN 'transient' THEN d.transient WHEN 'timeout' THEN d.timeout WHEN 'worker_error' THEN d.worker_error WHEN 'permanent' THEN d.permanent WHEN 'budget_exceeded' THEN d.budget_exceeded WHEN 'cancelled' THEN d.cancelled END AS runs
  FROM d, json_each('["transient","timeout","worker_error","permanent","budget_exceeded","cancelled"]') AS t)
SELECT day, run_type, failure_type, runs, finished, ROUND(runs * 1.0 / NULLIF(finished, 0), 4) AS rate FROM u WHERE runs > 0;
--> statement-breakpoint
-- v_run_volume: runs created per UTC day, week (from Monday) and month
CREATE VIEW `v_run_volume` AS
SELECT p.value AS period,
  CASE p.value WHEN 'day' THEN strftime('%Y-%m-%d', hour / 1000, 'unixepoch')
               WHEN 'week' THEN strftime('%Y-%m-%d', hour / 1000, 'unixepoch', '-6 days', 'weekday 1')
               ELSE strftime('%Y-%m', hour / 1000, 'unixepoch') END AS period_start,
  SUM(runs) AS runs, SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(cancelled) AS cancelled
FROM run_rollups, json_each('["day","week","month"]') AS p GROUP BY 1, 2;
--> statement-breakpoint
-- v_run_duration_percentiles: duration of the finished runs per UTC day and run type: average, p50 and p95 from the merged sketches (exact below 128 ms, else within 1/128), max
CREATE VIEW `v_run_duration_percentiles` AS
WITH h AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, CAST(j.key AS INTEGER) AS idx, SUM(j.value) AS n
  FROM run_rollups, json_each(run_rollups.duration_hist) AS j GROUP BY 1, 2, 3),
c AS (
  SELECT day, run_type, idx, SUM(n) OVER (PARTITION BY day, run_type ORDER BY idx) AS cum, SUM(n) OVER (PARTITION BY day, run_type) AS total FROM h),
q AS (
  SELECT day, run_type, MAX(total) AS runs,
    MIN(CASE WHEN cum >= (total * 50 + 99) / 100 THEN idx END) AS p50_idx,
    MIN(CASE WHEN cum >= (total * 95 + 99) / 100 THEN idx END) AS p95_idx
  FROM c GROUP BY 1, 2),
s AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, SUM(timed) AS timed, SUM(duration_sum_ms) AS sum_ms, MAX(duration_max_ms) AS max_ms
  FROM run_rollups GROUP BY 1, 2)
SELECT q.day, q.run_type, q.runs, ROUND(s.sum_ms * 1.0 / NULLIF(s.timed, 0), 1) AS avg_ms, (CASE WHEN q.p50_idx IS NULL THEN NULL WHEN q.p50_idx < 128 THEN q.p50_idx * 1.0 ELSE (1 << (7 + (q.p50_idx - 128) / 64)) + ((q.p50_idx - 128) % 64) * (1 << (1 + (q.p50_idx - 128) / 64)) + ((1 << (1 + (q.p50_idx - 128) / 64)) - 1) / 2.0 END) AS p50_ms, (CASE WHEN q.p95_idx IS NULL THEN NULL WHEN q.p95_idx < 128 THEN q.p95_idx * 1.0 ELSE (1 << (7 + (q.p95_idx - 128) / 64)) + ((q.p95_idx - 128) % 64) * (1 << (1 + (q.p95_idx - 128) / 64)) + ((1 << (1 + (q.p95_idx - 128) / 64)) - 1) / 2.0 END) AS p95_ms, s.max_ms
FROM q JOIN s ON s.day = q.day AND s.run_type = q.run_type;
--> statement-breakpoint
-- v_cost_per_run: cost per UTC day and run type: runs (each counted in the hour of its first cost), total, AI and infrastructure nano-USD, and cost per run (integer nano-USD, rounded down; the API rounds half to even)
CREATE VIEW `v_cost_per_run` AS
SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, SUM(CASE WHEN model = '' THEN runs ELSE 0 END) AS runs,
  SUM(nano_usd) AS total_nano_usd, SUM(ai_nano_usd) AS ai_nano_usd, SUM(infra_nano_usd) AS infra_nano_usd,
  SUM(nano_usd) / NULLIF(SUM(CASE WHEN model = '' THEN runs ELSE 0 END), 0) AS cost_per_run_nano_usd
FROM cost_hourly GROUP BY 1, 2;
--> statement-breakpoint
-- v_cost_per_customer: cost per UTC month and customer: runs, total, AI, infrastructure, and cost per run
CREATE VIEW `v_cost_per_customer` AS
SELECT strftime('%Y-%m', hour / 1000, 'unixepoch') AS month, customer_id, SUM(CASE WHEN model = '' THEN runs ELSE 0 END) AS runs,
  SUM(nano_usd) AS total_nano_usd, SUM(ai_nano_usd) AS ai_nano_usd, SUM(infra_nano_usd) AS infra_nano_usd,
  SUM(nano_usd) / NULLIF(SUM(CASE WHEN model = '' THEN runs ELSE 0 END), 0) AS cost_per_run_nano_usd
FROM cost_hourly GROUP BY 1, 2;
--> statement-breakpoint
-- v_cost_trends: cost per UTC day with the change from the day before that had cost, and cost per run
CREATE VIEW `v_cost_trends` AS
WITH d AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, SUM(nano_usd) AS total_nano_usd, SUM(ai_nano_usd) AS ai_nano_usd, SUM(infra_nano_usd) AS infra_nano_usd,
    SUM(CASE WHEN model = '' THEN runs ELSE 0 END) AS runs
  FROM cost_hourly GROUP BY 1)
SELECT day, runs, total_nano_usd, ai_nano_usd, infra_nano_usd, total_nano_usd / NULLIF(runs, 0) AS cost_per_run_nano_usd,
  LAG(total_nano_usd) OVER (ORDER BY day) AS previous_nano_usd,
  total_nano_usd - LAG(total_nano_usd) OVER (ORDER BY day) AS change_nano_usd
FROM d;
--> statement-breakpoint
-- v_ai_tokens: AI token use and cost per UTC day, model and customer (uncached input, cached input, output, reasoning)
CREATE VIEW `v_ai_tokens` AS
SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, model, customer_id, SUM(runs) AS runs, SUM(input_tokens) AS input_tokens, SUM(cached_input_tokens) AS cached_input_tokens,
  SUM(output_tokens) AS output_tokens, SUM(reasoning_tokens) AS reasoning_tokens, SUM(ai_nano_usd) AS ai_nano_usd
FROM cost_hourly WHERE model != '' GROUP BY 1, 2, 3;
--> statement-breakpoint
-- v_queue_depth: a pool's state per UTC hour, from the minute samples: average and largest backlog, work in flight, desired concurrency, DLQ size
CREATE VIEW `v_queue_depth` AS
SELECT strftime('%Y-%m-%dT%H:00Z', hour / 1000, 'unixepoch') AS hour, pool, samples, ROUND(depth_sum * 1.0 / samples, 2) AS avg_depth, depth_max AS max_depth,
  ROUND(in_flight_sum * 1.0 / samples, 2) AS avg_in_flight, in_flight_max AS max_in_flight,
  ROUND(desired_sum * 1.0 / NULLIF(desired_samples, 0), 2) AS avg_desired_concurrency,
  ROUND(dlq_open_sum * 1.0 / samples, 2) AS avg_dlq_size, dlq_open_max AS max_dlq_size
FROM pool_rollups WHERE samples > 0;
--> statement-breakpoint
-- v_job_processing_rate: jobs (step attempts) per UTC hour and pool: started, processed (finished), and processed per second
CREATE VIEW `v_job_processing_rate` AS
SELECT strftime('%Y-%m-%dT%H:00Z', hour / 1000, 'unixepoch') AS hour, pool, SUM(attempts) AS attempts, SUM(attempts - running) AS processed, ROUND(SUM(attempts - running) / 3600.0, 4) AS per_second
FROM attempt_rollups GROUP BY hour, pool;
--> statement-breakpoint
-- v_worker_utilization: worker time per UTC hour and pool: busy milliseconds of the finished attempts over capacity (the pool's max_concurrency, as sampled, × the hour), and the sampled in-flight ÷ concurrency
CREATE VIEW `v_worker_utilization` AS
WITH a AS (SELECT hour, pool, SUM(busy_ms) AS busy_ms FROM attempt_rollups GROUP BY 1, 2)
SELECT strftime('%Y-%m-%dT%H:00Z', a.hour / 1000, 'unixepoch') AS hour, a.pool, a.busy_ms, p.concurrency_max * 3600000 AS capacity_ms,
  ROUND(a.busy_ms * 1.0 / NULLIF(p.concurrency_max * 3600000, 0), 6) AS utilization,
  ROUND(p.utilization_sum / NULLIF(p.samples, 0), 4) AS sampled_utilization
FROM a LEFT JOIN pool_rollups p ON p.hour = a.hour AND p.pool = a.pool;
--> statement-breakpoint
-- v_api_response_times: API response times per UTC day and route: requests, errors, average, p50, p95, p99 (sketch) and max
CREATE VIEW `v_api_response_times` AS
WITH h AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, method, route, CAST(j.key AS INTEGER) AS idx, SUM(j.value) AS n
  FROM api_rollups, json_each(api_rollups.hist) AS j GROUP BY 1, 2, 3, 4),
c AS (
  SELECT day, method, route, idx, SUM(n) OVER (PARTITION BY day, method, route ORDER BY idx) AS cum, SUM(n) OVER (PARTITION BY day, method, route) AS total FROM h),
q AS (
  SELECT day, method, route,
    MIN(CASE WHEN cum >= (total * 50 + 99) / 100 THEN idx END) AS p50_idx,
    MIN(CASE WHEN cum >= (total * 95 + 99) / 100 THEN idx END) AS p95_idx,
    MIN(CASE WHEN cum >= (total * 99 + 99) / 100 THEN idx END) AS p99_idx
  FROM c GROUP BY 1, 2, 3),
s AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, method, route, SUM(requests) AS requests, SUM(responses_4xx) AS client_errors, SUM(responses_5xx) AS server_errors,
    SUM(sum_ms) AS sum_ms, MAX(max_ms) AS max_ms
  FROM api_rollups GROUP BY 1, 2, 3)
SELECT s.day, s.method, s.route, s.requests, s.client_errors, s.server_errors, ROUND(s.server_errors * 1.0 / NULLIF(s.requests, 0), 4) AS error_rate,
  ROUND(s.sum_ms * 1.0 / NULLIF(s.requests, 0), 1) AS avg_ms, (CASE WHEN q.p50_idx IS NULL THEN NULL WHEN q.p50_idx < 128 THEN q.p50_idx * 1.0 ELSE (1 << (7 + (q.p50_idx - 128) / 64)) + ((q.p50_idx - 128) % 64) * (1 << (1 + (q.p50_idx - 128) / 64)) + ((1 << (1 + (q.p50_idx - 128) / 64)) - 1) / 2.0 END) AS p50_ms, (CASE WHEN q.p95_idx IS NULL THEN NULL WHEN q.p95_idx < 128 THEN q.p95_idx * 1.0 ELSE (1 << (7 + (q.p95_idx - 128) / 64)) + ((q.p95_idx - 128) % 64) * (1 << (1 + (q.p95_idx - 128) / 64)) + ((1 << (1 + (q.p95_idx - 128) / 64)) - 1) / 2.0 END) AS p95_ms, (CASE WHEN q.p99_idx IS NULL THEN NULL WHEN q.p99_idx < 128 THEN q.p99_idx * 1.0 ELSE (1 << (7 + (q.p99_idx - 128) / 64)) + ((q.p99_idx - 128) % 64) * (1 << (1 + (q.p99_idx - 128) / 64)) + ((1 << (1 + (q.p99_idx - 128) / 64)) - 1) / 2.0 END) AS p99_ms, s.max_ms
FROM s JOIN q ON q.day = s.day AND q.method = s.method AND q.route = s.route;
--> statement-breakpoint
-- v_uptime: control-plane uptime per UTC day: minutes probed ok ÷ minutes since probing began, up to the minute before the current one (a minute without a probe counts as down)
CREATE VIEW `v_uptime` AS
WITH first AS (SELECT COALESCE((SELECT MIN(minute) FROM uptime_probes), (SELECT MIN(hour) FROM uptime_rollups)) AS at),
d AS (
  SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, (hour / 86400000) * 86400000 AS day_ms, SUM(probes) AS probes, SUM(ok) AS ok
  FROM uptime_rollups GROUP BY 1, 2),
e AS (
  SELECT day, probes, ok,
    MAX(1, probes, (MIN((CAST(strftime('%s', 'now') AS INTEGER) / 60 - 1) * 60000, day_ms + 86400000) - MAX(day_ms, (SELECT at FROM first)) + 59999) / 60000) AS expected
  FROM d)
SELECT day, probes, ok AS ok_probes, expected AS expected_probes, MAX(0, expected - probes) AS missed_probes, ROUND(MIN(1.0, ok * 1.0 / expected), 4) AS uptime
FROM e;
--> statement-breakpoint
-- v_worker_error_rate: step attempts per UTC day and pool that failed as worker_error, over the finished attempts
CREATE VIEW `v_worker_error_rate` AS
SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, pool, SUM(attempts - running) AS finished_attempts, SUM(failures_worker_error) AS worker_errors,
  ROUND(SUM(failures_worker_error) * 1.0 / NULLIF(SUM(attempts - running), 0), 4) AS worker_error_rate
FROM attempt_rollups GROUP BY 1, 2;
--> statement-breakpoint
-- v_retry_rate: steps per UTC day, run type and pool that needed a retry (an attempt numbered 2), over the steps started
CREATE VIEW `v_retry_rate` AS
SELECT strftime('%Y-%m-%d', hour / 1000, 'unixepoch') AS day, CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END AS run_type, pool, SUM(first_attempts) AS steps_started, SUM(retried_steps) AS steps_retried, SUM(retries) AS retries,
  ROUND(SUM(retried_steps) * 1.0 / NULLIF(SUM(first_attempts), 0), 4) AS retry_rate
FROM attempt_rollups GROUP BY 1, 2, 3;
--> statement-breakpoint
-- v_dlq_size: the dead-letter queue now, per pool: open entries, the oldest open one, and those retried or discarded
CREATE VIEW `v_dlq_size` AS
SELECT pool, SUM(state = 'open') AS open_entries, strftime('%Y-%m-%dT%H:%M:%SZ', MIN(CASE WHEN state = 'open' THEN dead_at END) / 1000, 'unixepoch') AS oldest_open,
  SUM(state = 'retried') AS retried, SUM(state = 'discarded') AS discarded
FROM dlq_entries GROUP BY pool;
--> statement-breakpoint
-- v_dead_letters_daily: entries dead-lettered per UTC day, pool and failure type
CREATE VIEW `v_dead_letters_daily` AS
SELECT strftime('%Y-%m-%d', dead_at / 1000, 'unixepoch') AS day, pool, failure_type, COUNT(*) AS entries, SUM(state = 'open') AS still_open
FROM dlq_entries GROUP BY 1, 2, 3;
