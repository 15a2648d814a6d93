/**
 * The cron's retention sweep: deletes what has outlived its retention (src/domain/retention.ts)
 * from D1, in bounded batches per table per tick, each by an index; a backlog drains over
 * several ticks. Run objects delete their own storage when their retention ends (their alarm);
 * the customer ledger keeps per-run totals 62 days; cost rollups go by the month, never with
 * the step detail.
 */
import { poolNames } from "../config/pools";
import { retentionCutoffs, retentionSettings } from "../domain/retention";
import { log } from "../lib/log";
import { countD1 } from "../lib/usage";

const BATCH = 1_000;

/** [table, time column, primary key, raw (step-detail retention) or rollup (cost retention)] */
const METRIC_TABLES: [string, string, string, boolean][] = [
  ["api_samples", "minute", "minute, sample_id, route, method, status_class, customer_id", true],
  ["pool_samples", "minute", "minute, pool", true],
  ["uptime_probes", "minute", "minute", true],
  ["run_rollups", "hour", "hour, customer_id, project_id, run_type, pool", false],
  ["attempt_rollups", "hour", "hour, customer_id, project_id, run_type, pool", false],
  ["cost_hourly", "hour", "hour, customer_id, project_id, run_type, pool, model", false],
  ["api_rollups", "hour", "hour, route, method, customer_id", false],
  ["pool_rollups", "hour", "hour, pool", false],
  ["uptime_rollups", "hour", "hour", false],
];

export async function sweepRetention(env: Env, now = Date.now()): Promise<Record<string, number>> {
  const cut = retentionCutoffs(now, retentionSettings(env));
  const db = env.DB;
  // Each statement deletes at most BATCH rows, found through an index on its time column.
  const statements: [string, D1PreparedStatement][] = [
    ["runs", db.prepare(`DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE created_at < ?1 AND status IN ('succeeded', 'failed', 'cancelled') LIMIT ?2)`).bind(cut.stepDetail, BATCH)],
    ["step_attempts", db.prepare(`DELETE FROM step_attempts WHERE (run_id, step_index, attempt) IN (SELECT run_id, step_index, attempt FROM step_attempts WHERE started_at < ?1 LIMIT ?2)`).bind(cut.stepDetail, BATCH)],
    ["dead_events", db.prepare(`DELETE FROM dead_events WHERE id IN (SELECT id FROM dead_events WHERE received_at < ?1 LIMIT ?2)`).bind(cut.stepDetail, BATCH)],
    ["dlq_entries (retried)", db.prepare(`DELETE FROM dlq_entries WHERE id IN (SELECT id FROM dlq_entries WHERE state = 'retried' AND dead_at < ?1 LIMIT ?2)`).bind(cut.resolvedDlq, BATCH)],
    ["dlq_entries (discarded)", db.prepare(`DELETE FROM dlq_entries WHERE id IN (SELECT id FROM dlq_entries WHERE state = 'discarded' AND dead_at < ?1 LIMIT ?2)`).bind(cut.resolvedDlq, BATCH)],
    ["alerts", db.prepare(`DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < ?1 LIMIT ?2)`).bind(cut.alerts, BATCH)],
    // Pool samples go with the step detail, scaling decisions with the alerts; both by their (pool, at) keys.
    ...poolNames().flatMap((pool): [string, D1PreparedStatement][] => [
      [`pool_concurrency_samples (${pool})`, db.prepare(
        `DELETE FROM pool_concurrency_samples WHERE (pool, at, shard) IN (SELECT pool, at, shard FROM pool_concurrency_samples WHERE pool = ?1 AND at < ?2 LIMIT ?3)`,
      ).bind(pool, cut.stepDetail, BATCH)],
      [`pool_scaling_decisions (${pool})`, db.prepare(
        `DELETE FROM pool_scaling_decisions WHERE id IN (SELECT id FROM pool_scaling_decisions WHERE pool = ?1 AND at < ?2 LIMIT ?3)`,
      ).bind(pool, cut.alerts, BATCH)],
    ]),
    ["cost_rollups", db.prepare(
      `DELETE FROM cost_rollups WHERE (hour, customer_id, run_id, model, part) IN
         (SELECT hour, customer_id, run_id, model, part FROM cost_rollups WHERE hour < ?1 LIMIT ?2)`,
    ).bind(cut.costs, BATCH)],
    // The metrics: raw samples go with the step detail, rollups are kept as long as money.
    ...METRIC_TABLES.map(([table, time, key, raw]): [string, D1PreparedStatement] => [
      table,
      db.prepare(`DELETE FROM ${table} WHERE (${key}) IN (SELECT ${key} FROM ${table} WHERE ${time} < ?1 LIMIT ?2)`).bind(raw ? cut.stepDetail : cut.costs, BATCH),
    ]),
  ];
  const results = await db.batch(statements.map(([, s]) => s));
  countD1(results);
  const deleted = Object.fromEntries(statements.map(([name], i) => [name, results[i]?.meta.changes ?? 0]));
  if (Object.values(deleted).some((n) => n > 0)) log("retention.swept", { deleted });
  return deleted;
}
