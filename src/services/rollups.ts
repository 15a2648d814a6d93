/**
 * The metrics' hourly rollups, recomputed from the raw rows by the minute cron: runs (by the
 * hour they were created), step attempts (by the hour they started), cost_rollups (summed over
 * runs), API timing samples, pool samples and uptime probes. A recomputation of an hour SETS each
 * key's row from everything the raw table holds for that hour (an upsert that writes only rows
 * whose figures changed), so it is idempotent: replays, redeliveries and two crons at once change
 * nothing. Which hours: those the events consumer marked dirty (rollup_dirty, in the same batch
 * as the raw rows), the current hour, and the previous one in the first minutes of an hour (for
 * rows the control plane wrote directly, such as a new run's index row). The recomputation and the
 * removal of its mark are one batch, so a mark set after it is kept for the next tick.
 *
 * An hour older than its raw rows' retention is never recomputed (the sweep may have thinned
 * it): its rollup is final. Rollups are kept RETENTION_COST_MONTHS, like money.
 */
import { HOUR_MS, hourOf } from "../metrics/buckets";
import { sqlBucketIndex } from "../metrics/sketch";
import { retentionCutoffs, retentionSettings } from "../domain/retention";
import { FAILURE_TYPES } from "../domain/run-status";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";
import { ROLLUP_SOURCES, type RollupSource } from "./metrics-ingest";

/** Dirty hours recomputed per tick at most (newest first); the rest wait for the next ticks. */
export const MAX_DIRTY_PER_TICK = 60;
/** In this many first minutes of an hour the previous hour is recomputed too. */
const PREVIOUS_HOUR_GRACE_MS = 5 * 60_000;

const failureSums = (condition: string) =>
  FAILURE_TYPES.map((t) => `SUM(${condition} AND failure_type = '${t}') AS failures_${t}`).join(",\n      ");
const FAILURE_COLUMN_NAMES = FAILURE_TYPES.map((t) => `failures_${t}`);

/**
 * `INSERT INTO table (hour, keys…, figures…, computed_at) SELECT ?1, … FROM (select) WHERE 1`
 * with an upsert that rewrites a row only when one of its figures changed.
 */
function upsert(table: string, keys: readonly string[], figures: readonly string[], select: string, withClause = ""): string {
  const columns = ["hour", ...keys, ...figures, "computed_at"];
  return `${withClause}
    INSERT INTO ${table} (${columns.join(", ")})
    SELECT ?1, ${[...keys, ...figures].map((c) => `q.${c}`).join(", ")}, ?3 FROM (${select}) AS q WHERE 1
    ON CONFLICT (${["hour", ...keys].join(", ")}) DO UPDATE SET ${[...figures, "computed_at"].map((c) => `${c} = excluded.${c}`).join(", ")}
    WHERE ${figures.map((c) => `${c} IS NOT excluded.${c}`).join(" OR ")}`;
}

const RUN_KEYS = ["customer_id", "project_id", "run_type", "pool"] as const;
const TERMINAL = "('succeeded', 'failed', 'cancelled')";

const RUNS_SQL = upsert(
  "run_rollups",
  RUN_KEYS,
  ["runs", "succeeded", "failed", "cancelled", "unfinished", ...FAILURE_COLUMN_NAMES, "timed", "duration_sum_ms", "duration_max_ms", "duration_hist"],
  `SELECT c.*, COALESCE(h.hist, '{}') AS duration_hist FROM c LEFT JOIN h
     ON h.customer_id = c.customer_id AND h.project_id = c.project_id AND h.run_type = c.run_type AND h.pool = c.pool`,
  `WITH r AS (
     SELECT customer_id, project_id, COALESCE(run_type, '') AS run_type, pool, status, failure_type, duration_ms,
       CASE WHEN status IN ${TERMINAL} AND duration_ms IS NOT NULL THEN ${sqlBucketIndex("duration_ms")} END AS idx
     FROM runs WHERE created_at >= ?1 AND created_at < ?2),
   c AS (
     SELECT customer_id, project_id, run_type, pool, COUNT(*) AS runs,
       SUM(status = 'succeeded') AS succeeded, SUM(status = 'failed') AS failed, SUM(status = 'cancelled') AS cancelled,
       SUM(status NOT IN ${TERMINAL}) AS unfinished,
       ${failureSums("status IN ('failed', 'cancelled')")},
       COUNT(idx) AS timed, COALESCE(SUM(CASE WHEN idx IS NOT NULL THEN duration_ms END), 0) AS duration_sum_ms,
       MAX(CASE WHEN idx IS NOT NULL THEN duration_ms END) AS duration_max_ms
     FROM r GROUP BY customer_id, project_id, run_type, pool),
   h AS (
     SELECT customer_id, project_id, run_type, pool, json_group_object(idx, n) AS hist
     FROM (SELECT customer_id, project_id, run_type, pool, idx, COUNT(*) AS n FROM r WHERE idx IS NOT NULL GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5)
     GROUP BY 1, 2, 3, 4)`,
);

const ATTEMPTS_SQL = upsert(
  "attempt_rollups",
  RUN_KEYS,
  ["attempts", "first_attempts", "retried_steps", "retries", "running", "succeeded", "failed", ...FAILURE_COLUMN_NAMES, "busy_ms"],
  `SELECT customer_id, project_id, COALESCE(run_type, '') AS run_type, pool, COUNT(*) AS attempts,
     SUM(attempt = 1) AS first_attempts, SUM(attempt = 2) AS retried_steps, SUM(attempt > 1) AS retries,
     SUM(status = 'running') AS running, SUM(status = 'succeeded') AS succeeded, SUM(status = 'failed') AS failed,
     ${failureSums("status = 'failed'")},
     COALESCE(SUM(CASE WHEN status != 'running' THEN duration_ms END), 0) AS busy_ms
   FROM step_attempts WHERE started_at >= ?1 AND started_at < ?2
   GROUP BY customer_id, project_id, COALESCE(run_type, ''), pool`,
);

const COSTS_SQL = upsert(
  "cost_hourly",
  [...RUN_KEYS, "model"],
  ["runs", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "ai_nano_usd", "infra_nano_usd", "nano_usd"],
  `SELECT customer_id, project_id, COALESCE(run_type, '') AS run_type, pool, model,
     COUNT(DISTINCT CASE WHEN COALESCE(first_hour, hour) = hour THEN run_id END) AS runs,
     SUM(input_tokens) AS input_tokens, SUM(cached_input_tokens) AS cached_input_tokens, SUM(output_tokens) AS output_tokens,
     SUM(reasoning_tokens) AS reasoning_tokens, SUM(ai_nano_usd) AS ai_nano_usd, SUM(infra_nano_usd) AS infra_nano_usd, SUM(nano_usd) AS nano_usd
   FROM cost_rollups WHERE hour = ?1 AND ?2 > 0
   GROUP BY customer_id, project_id, COALESCE(run_type, ''), pool, model`,
);

const API_SQL = upsert(
  "api_rollups",
  ["route", "method", "customer_id"],
  ["requests", "responses_2xx", "responses_3xx", "responses_4xx", "responses_5xx", "sum_ms", "max_ms", "hist"],
  `SELECT c.*, COALESCE(h.hist, '{}') AS hist FROM c LEFT JOIN h ON h.route = c.route AND h.method = c.method AND h.customer_id = c.customer_id`,
  `WITH s AS (SELECT * FROM api_samples WHERE minute >= ?1 AND minute < ?2),
   c AS (
     SELECT route, method, customer_id, SUM(count) AS requests,
       ${[2, 3, 4, 5].map((k) => `SUM(CASE WHEN status_class = ${k} THEN count ELSE 0 END) AS responses_${k}xx`).join(", ")},
       SUM(sum_ms) AS sum_ms, MAX(max_ms) AS max_ms
     FROM s GROUP BY route, method, customer_id),
   h AS (
     SELECT route, method, customer_id, json_group_object(idx, n) AS hist
     FROM (SELECT route, method, customer_id, CAST(j.key AS INTEGER) AS idx, SUM(j.value) AS n FROM s, json_each(s.hist) AS j GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4)
     GROUP BY 1, 2, 3)`,
);

const POOLS_SQL = upsert(
  "pool_rollups",
  ["pool"],
  ["samples", "depth_sum", "depth_max", "in_flight_sum", "in_flight_max", "utilization_sum", "concurrency_max", "desired_sum", "desired_samples", "processed_sum", "processed_samples", "dlq_open_sum", "dlq_open_max"],
  `SELECT pool, COUNT(*) AS samples, SUM(depth) AS depth_sum, MAX(depth) AS depth_max, SUM(in_flight) AS in_flight_sum,
     MAX(in_flight) AS in_flight_max, SUM(utilization) AS utilization_sum, MAX(concurrency) AS concurrency_max,
     COALESCE(SUM(desired_concurrency), 0) AS desired_sum, COUNT(desired_concurrency) AS desired_samples,
     COALESCE(SUM(processed), 0) AS processed_sum, COUNT(processed) AS processed_samples,
     SUM(dlq_open) AS dlq_open_sum, MAX(dlq_open) AS dlq_open_max
   FROM pool_samples WHERE minute >= ?1 AND minute < ?2 GROUP BY pool`,
);

const PROBES_SQL = upsert(
  "uptime_rollups",
  [],
  ["probes", "ok", "latency_sum_ms", "latency_max_ms"],
  `SELECT COUNT(*) AS probes, SUM(ok) AS ok, SUM(latency_ms) AS latency_sum_ms, MAX(latency_ms) AS latency_max_ms
   FROM uptime_probes WHERE minute >= ?1 AND minute < ?2 HAVING COUNT(*) > 0`,
);

const SOURCES: Record<RollupSource, { sql: string; retention: "stepDetail" | "costs" }> = {
  runs: { sql: RUNS_SQL, retention: "stepDetail" },
  attempts: { sql: ATTEMPTS_SQL, retention: "stepDetail" },
  costs: { sql: COSTS_SQL, retention: "costs" },
  api: { sql: API_SQL, retention: "stepDetail" },
  pools: { sql: POOLS_SQL, retention: "stepDetail" },
  probes: { sql: PROBES_SQL, retention: "stepDetail" },
};

export interface RefreshReport {
  recomputed: number;
  skipped: number;
  failed: number;
  rowsWritten: number;
}

/** Recomputes the dirty hours (and the current one) of every source; `hours` adds more (tests, backfills). */
export async function refreshRollups(env: Env, now = Date.now(), options: { hours?: { source: RollupSource; hour: number }[] } = {}): Promise<RefreshReport> {
  const db = env.DB;
  const cut = retentionCutoffs(now, retentionSettings(env));
  const marked = await db
    .prepare("SELECT source, hour FROM rollup_dirty ORDER BY hour DESC LIMIT ?1")
    .bind(MAX_DIRTY_PER_TICK)
    .all<{ source: RollupSource; hour: number }>();
  countD1(marked);
  const todo = new Map<string, { source: RollupSource; hour: number }>();
  const add = (source: RollupSource, hour: number) => todo.set(`${source}:${hour}`, { source, hour });
  for (const m of marked.results) if ((ROLLUP_SOURCES as readonly string[]).includes(m.source)) add(m.source, m.hour);
  const current = hourOf(now);
  for (const source of ROLLUP_SOURCES) {
    add(source, current);
    if (now - current < PREVIOUS_HOUR_GRACE_MS) add(source, current - HOUR_MS);
  }
  for (const h of options.hours ?? []) add(h.source, hourOf(h.hour));

  const report: RefreshReport = { recomputed: 0, skipped: 0, failed: 0, rowsWritten: 0 };
  for (const { source, hour } of todo.values()) {
    const spec = SOURCES[source];
    const unmark = db.prepare("DELETE FROM rollup_dirty WHERE source = ?1 AND hour = ?2").bind(source, hour);
    try {
      if (hour < (spec.retention === "costs" ? cut.costs : cut.stepDetail)) {
        // Its raw rows may be partly swept: the rollup as it stands is final.
        countD1(await unmark.run());
        report.skipped += 1;
        continue;
      }
      const results = await db.batch([db.prepare(spec.sql).bind(hour, hour + HOUR_MS, now), unmark]);
      countD1(results);
      report.recomputed += 1;
      report.rowsWritten += results[0]?.meta.rows_written ?? 0;
    } catch (err) {
      report.failed += 1;
      log("metrics.rollup_failed", { source, hour: new Date(hour).toISOString(), error: errorMessage(err) }, "error");
    }
  }
  return report;
}
