/**
 * GET /metrics: the platform's current gauges and counters for a Prometheus scrape (format in
 * src/metrics/openmetrics.ts). Gauges are read live (unfinished runs and open DLQ entries by
 * index, the pools' state as the minute sampler reads it); counters are sums over this UTC
 * month's hourly rollups, so a scrape reads at most a month of rollup rows, and they restart at
 * each month's start, which Prometheus' rate() and increase() treat as a counter reset.
 * Counters lag the events by up to a minute (the rollups' refresh).
 */
import { FAILURE_TYPES } from "../domain/run-status";
import { formatMetrics, type MetricFamily } from "../metrics/openmetrics";
import { countD1 } from "../lib/usage";
import { samplePools } from "./pool-sampler";

const big = (v: unknown) => BigInt((v as string | null | undefined) ?? "0");

export class OpenMetricsService {
  constructor(private readonly env: Env) {}

  async families(now = Date.now()): Promise<MetricFamily[]> {
    const db = this.env.DB;
    const d = new Date(now);
    const month = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const [unfinished, runs, attempts, spend, api, desired, probe, firing, pools] = await Promise.all([
      db.prepare("SELECT status, COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running', 'waiting') GROUP BY status").all<{ status: string; n: number }>(),
      db
        .prepare("SELECT SUM(runs) AS created, SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(cancelled) AS cancelled FROM run_rollups WHERE hour >= ?1")
        .bind(month)
        .first<Record<string, number | null>>(),
      db
        .prepare(
          `SELECT pool, SUM(first_attempts) AS steps, SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(retries) AS retries, SUM(busy_ms) AS busy_ms,
             ${FAILURE_TYPES.map((t) => `SUM(failures_${t}) AS failures_${t}`).join(", ")}
           FROM attempt_rollups WHERE hour >= ?1 GROUP BY pool`,
        )
        .bind(month)
        .all<Record<string, number | string>>(),
      db
        .prepare(
          `SELECT customer_id, CAST(SUM(nano_usd / 1000000000) AS TEXT) AS usd, CAST(SUM(nano_usd % 1000000000) AS TEXT) AS nano,
             CAST(SUM(ai_nano_usd / 1000000000) AS TEXT) AS ai_usd, CAST(SUM(ai_nano_usd % 1000000000) AS TEXT) AS ai_nano
           FROM cost_hourly WHERE hour >= ?1 GROUP BY customer_id`,
        )
        .bind(month)
        .all<Record<string, string>>(),
      db
        .prepare(
          `SELECT route, method, SUM(responses_2xx) AS c2, SUM(responses_3xx) AS c3, SUM(responses_4xx) AS c4, SUM(responses_5xx) AS c5, SUM(sum_ms) AS sum_ms
           FROM api_rollups WHERE hour >= ?1 GROUP BY route, method`,
        )
        .bind(month)
        .all<Record<string, number | string>>(),
      db
        .prepare("SELECT pool, desired_concurrency FROM pool_samples WHERE minute >= ?1 AND desired_concurrency IS NOT NULL ORDER BY minute DESC")
        .bind(now - 5 * 60_000)
        .all<{ pool: string; desired_concurrency: number }>(),
      db.prepare("SELECT ok, latency_ms, probed_at FROM uptime_probes WHERE minute >= ?1 ORDER BY minute DESC LIMIT 1").bind(now - 10 * 60_000).first<{ ok: number; latency_ms: number; probed_at: number }>(),
      db.prepare("SELECT kind, COUNT(*) AS n FROM alerts WHERE created_at >= ?1 AND episode IS NOT NULL AND severity = 'warning' AND resolved_at IS NULL GROUP BY kind").bind(now - 90 * 86_400_000).all<{ kind: string; n: number }>(),
      samplePools(this.env, now),
    ]);
    countD1([unfinished, attempts, spend, api, desired, firing]);
    const desiredByPool = new Map<string, number>();
    for (const r of desired.results) if (!desiredByPool.has(r.pool)) desiredByPool.set(r.pool, r.desired_concurrency);
    const byPool = (pick: (p: (typeof pools)[number]) => number) => pools.map((p) => ({ labels: { pool: p.pool }, value: pick(p) }));
    const families: MetricFamily[] = [
      {
        name: "runplane_runs_unfinished",
        type: "gauge",
        help: "Runs not finished, by status (the run index)",
        samples: ["queued", "running", "waiting"].map((status) => ({ labels: { status }, value: unfinished.results.find((r) => r.status === status)?.n ?? 0 })),
      },
      { name: "runplane_runs_created", type: "counter", help: "Runs created this UTC month (resets at the month's start)", samples: [{ value: Number(runs?.created ?? 0) }] },
      {
        name: "runplane_runs_finished",
        type: "counter",
        help: "Runs created this UTC month that finished, by status",
        samples: ["succeeded", "failed", "cancelled"].map((status) => ({ labels: { status }, value: Number(runs?.[status] ?? 0) })),
      },
      { name: "runplane_steps_started", type: "counter", help: "Steps started this UTC month (first attempts), by pool", samples: attempts.results.map((r) => ({ labels: { pool: String(r.pool) }, value: Number(r.steps ?? 0) })) },
      {
        name: "runplane_step_attempts",
        type: "counter",
        help: "Finished step attempts this UTC month, by pool and outcome",
        samples: attempts.results.flatMap((r) => ["succeeded", "failed"].map((outcome) => ({ labels: { pool: String(r.pool), outcome }, value: Number(r[outcome] ?? 0) }))),
      },
      {
        name: "runplane_step_failures",
        type: "counter",
        help: "Failed step attempts this UTC month, by pool and failure type",
        samples: attempts.results.flatMap((r) => FAILURE_TYPES.map((t) => ({ labels: { pool: String(r.pool), failure_type: t }, value: Number(r[`failures_${t}`] ?? 0) }))),
      },
      { name: "runplane_step_retries", type: "counter", help: "Step attempts after the first (retries) this UTC month, by pool", samples: attempts.results.map((r) => ({ labels: { pool: String(r.pool) }, value: Number(r.retries ?? 0) })) },
      { name: "runplane_worker_busy_milliseconds", type: "counter", help: "Worker time of finished step attempts this UTC month, by pool", samples: attempts.results.map((r) => ({ labels: { pool: String(r.pool) }, value: Number(r.busy_ms ?? 0) })) },
      { name: "runplane_dlq_entries", type: "gauge", help: "Open dead-letter entries, by pool", samples: byPool((p) => p.dlqOpen) },
      { name: "runplane_queue_depth", type: "gauge", help: "Backlog: runs waiting for or holding a worker (queued + running), by pool", samples: byPool((p) => p.depth) },
      { name: "runplane_in_flight", type: "gauge", help: "Runs the index shows running, by pool", samples: byPool((p) => p.inFlight) },
      { name: "runplane_max_concurrency", type: "gauge", help: "The pool consumer's max_concurrency", samples: byPool((p) => p.concurrency) },
      { name: "runplane_worker_utilization", type: "gauge", help: "Busy ÷ capacity, 0…1, by pool: the controller's measure while it reports, else in flight ÷ max_concurrency", samples: byPool((p) => p.utilization) },
      {
        name: "runplane_desired_concurrency",
        type: "gauge",
        help: "The pool controller's desired concurrency (absent until a controller reports one)",
        samples: [...desiredByPool].map(([pool, value]) => ({ labels: { pool }, value })),
      },
      {
        name: "runplane_spend_nano_usd",
        type: "counter",
        help: "Cost this UTC month in nano-USD (AI + infrastructure), by customer",
        samples: spend.results.map((r) => ({ labels: { customer: r.customer_id! }, value: big(r.usd) * 1_000_000_000n + big(r.nano) })),
      },
      {
        name: "runplane_ai_spend_nano_usd",
        type: "counter",
        help: "AI token cost this UTC month in nano-USD, by customer",
        samples: spend.results.map((r) => ({ labels: { customer: r.customer_id! }, value: big(r.ai_usd) * 1_000_000_000n + big(r.ai_nano) })),
      },
      {
        name: "runplane_api_requests",
        type: "counter",
        help: "API requests this UTC month, by route, method and status class",
        samples: api.results.flatMap((r) => [2, 3, 4, 5].map((k) => ({ labels: { route: String(r.route), method: String(r.method), code: `${k}xx` }, value: Number(r[`c${k}`] ?? 0) }))),
      },
      {
        name: "runplane_api_response_time_milliseconds",
        type: "counter",
        help: "Total API response time this UTC month, by route and method",
        samples: api.results.map((r) => ({ labels: { route: String(r.route), method: String(r.method) }, value: Number(r.sum_ms ?? 0) })),
      },
      { name: "runplane_up", type: "gauge", help: "1 when the last minute probe found the control plane ready (0 when it failed or none ran in 10 minutes)", samples: [{ value: probe?.ok ? 1 : 0 }] },
      { name: "runplane_probe_latency_milliseconds", type: "gauge", help: "The last probe's response time", samples: probe ? [{ value: probe.latency_ms }] : [] },
      { name: "runplane_alerts_firing", type: "gauge", help: "Degradation alerts firing, by kind", samples: firing.results.map((r) => ({ labels: { kind: r.kind }, value: r.n })) },
    ];
    return families;
  }

  async render(openMetrics: boolean, now = Date.now()): Promise<string> {
    return formatMetrics(await this.families(now), openMetrics);
  }
}
