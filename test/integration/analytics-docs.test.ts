/**
 * Every `wrangler d1 execute … --command "…"` in docs/analytics.md runs against D1 with the
 * migrations applied, over a small recent data set, and returns rows; the views agree with the
 * API on the same data.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import doc from "../../docs/analytics.md?raw";
import { rollupToWire } from "../../src/data-plane/messages";
import { buildRollup, type CostRecord } from "../../src/domain/cost-records";
import { TimingAggregator } from "../../src/metrics/api-timings";
import { hourOf, minuteOf } from "../../src/metrics/buckets";
import { writeRollups } from "../../src/services/costs-service";
import { recordDeadLetter } from "../../src/services/dead-letters";
import { ROLLUP_SOURCES } from "../../src/services/metrics-ingest";
import { refreshRollups } from "../../src/services/rollups";
import { api } from "../helpers";

const COMMAND = /npx wrangler d1 execute DB --local --command "([^"]+)"/g;
const commands = [...doc.matchAll(COMMAND)].map((m) => m[1]!);

const NOW = Date.now();
const AT = minuteOf(NOW - 10 * 60_000);

beforeAll(async () => {
  const run = env.DB.prepare(
    `INSERT INTO runs (id, customer_id, project_id, run_type, pool, priority, status, created_at, started_at, finished_at, duration_ms, failure_type, updated_at)
     VALUES (?1, 'docs', 'p', 'hello', 'standard', 'normal', ?2, ?3, ?3, ?4, ?5, ?6, ?3)`,
  );
  const attempt = env.DB.prepare(
    `INSERT INTO step_attempts (run_id, step_index, attempt, step, step_type, customer_id, project_id, run_type, pool, status, failure_type, started_at, finished_at, duration_ms)
     VALUES (?1, 0, ?2, 's', 'synthetic', 'docs', 'p', 'hello', 'standard', ?3, ?4, ?5, ?6, ?7)`,
  );
  await env.DB.batch([
    run.bind("docs-1", "succeeded", AT, AT + 1000, 1000, null),
    run.bind("docs-2", "failed", AT + 1, AT + 2001, 2000, "worker_error"),
    run.bind("docs-3", "succeeded", AT + 2, AT + 52, 50, null),
    attempt.bind("docs-1", 1, "succeeded", null, AT, AT + 1000, 1000),
    attempt.bind("docs-2", 1, "failed", "worker_error", AT + 1, AT + 1001, 1000),
    attempt.bind("docs-2", 2, "failed", "worker_error", AT + 1001, AT + 2001, 1000),
    attempt.bind("docs-3", 1, "succeeded", null, AT + 2, AT + 52, 50),
  ]);
  const record = (seq: number, meter: string, model: string | null, nano: number): CostRecord => ({
    seq, kind: "attempt", step: "s", attempt: 1, at: AT, infra: {}, estimated: [], tokens: [], holdId: null, nanoUsd: BigInt(nano), aiNanoUsd: model ? BigInt(nano) : 0n,
    lines: [{ meter: meter as CostRecord["lines"][number]["meter"], model, quantity: 100n, perMillion: 0n, nanoUsd: BigInt(nano), priceVersion: "t", estimated: false }],
  });
  await writeRollups(env.DB, [
    { runId: "docs-1", customerId: "docs", projectId: "p", runType: "hello", pool: "standard", version: 2, rows: buildRollup([record(1, "worker_requests", null, 600), record(2, "input_tokens", "gpt-4o-mini", 15_000)]).map(rollupToWire) },
  ]);
  const timings = new TimingAggregator("iso_docs", AT);
  for (const ms of [20, 40, 300]) timings.record(AT, "/v1/runs", "POST", 202, "docs", ms);
  const [sample] = timings.drain(AT);
  const e = sample!.entries[0]!;
  await env.DB.batch([
    env.DB.prepare("INSERT INTO api_samples (minute, sample_id, route, method, status_class, customer_id, count, sum_ms, max_ms, hist, received_at) VALUES (?1, 'docs:1', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?1)").bind(
      e.minute, e.route, e.method, e.statusClass, e.customerId, e.count, e.sumMs, e.maxMs, JSON.stringify(e.hist),
    ),
    env.DB.prepare("INSERT INTO pool_samples (minute, pool, source, depth, queued, running, waiting, in_flight, processed, concurrency, desired_concurrency, utilization, dlq_open, sampled_at) VALUES (?1, 'standard', 'cron', 4, 3, 1, 0, 1, NULL, 10, NULL, 0.1, 1, ?1)").bind(AT),
    env.DB.prepare("INSERT INTO uptime_probes (minute, ok, status, latency_ms, failed, probed_at) VALUES (?1, 1, 200, 4, '', ?1)").bind(AT),
    env.DB.prepare(
      "INSERT INTO alerts (id, kind, severity, customer_id, message, details, created_at, episode, delivery_status) VALUES ('alert_docs', 'p95_duration', 'warning', NULL, 'p95 run duration of run type hello degraded', '{}', ?1, 'p95_duration:runType:hello', 'none')",
    ).bind(AT),
  ]);
  await recordDeadLetter(env.DB, { id: "dlq_docs", runId: "docs-2", customerId: "docs", runType: "hello", pool: "standard", step: "s", failureType: "worker_error", failureMessage: "boom", attempts: 2, history: [], message: {}, deadAt: AT + 2001 });
  const report = await refreshRollups(env, NOW, { hours: ROLLUP_SOURCES.map((source) => ({ source, hour: hourOf(AT) })) });
  expect(report.failed).toBe(0);
});

describe("docs/analytics.md", () => {
  it("has a command for every view the migrations create", async () => {
    const views = (await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE 'v_%' ORDER BY name").all<{ name: string }>()).results.map((r) => r.name);
    expect(views).toHaveLength(17);
    for (const view of views) expect(commands.some((c) => c.includes(view)), view).toBe(true);
  });

  it.each(commands.map((c, i) => [i + 1, c] as const))("command %i runs and returns rows", async (_i, sql) => {
    const result = await env.DB.prepare(sql).all();
    expect(result.results.length, sql).toBeGreaterThan(0);
  });

  it("the views agree with the API", async () => {
    const day = new Date(AT).toISOString().slice(0, 10);
    const range = `from=${day}T00:00:00Z&to=${new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString()}&bucket=day&groupBy=runType`;
    const runs = (await api("GET", `/v1/metrics/runs?${range}`)).body.series.find((r: any) => r.key === "hello");
    const view = await env.DB.prepare("SELECT * FROM v_run_duration_percentiles WHERE day = ?1 AND run_type = 'hello'").bind(day).first<Record<string, number>>();
    // 50, 1000, 2000 ms: p50 the 2nd (1000 → [1000, 1007]), p95 the 3rd (2000 → [2000, 2015])
    expect(view).toMatchObject({ runs: 3, p50_ms: 1003.5, p95_ms: 2007.5, max_ms: 2000, avg_ms: 1016.7 });
    expect(runs.durationMs).toMatchObject({ p50: view!.p50_ms, p95: view!.p95_ms, max: view!.max_ms });
    const apiView = await env.DB.prepare("SELECT * FROM v_api_response_times WHERE day = ?1 AND route = '/v1/runs'").bind(day).first<Record<string, number>>();
    // 20, 40, 300 ms: p50 40 (exact), p95 and p99 300 → [300, 303] → 301.5
    expect(apiView).toMatchObject({ requests: 3, p50_ms: 40, p95_ms: 301.5, p99_ms: 301.5, avg_ms: 120 });
    const retry = await env.DB.prepare("SELECT * FROM v_retry_rate WHERE day = ?1 AND run_type = 'hello'").bind(day).first<Record<string, number>>();
    expect(retry).toMatchObject({ steps_started: 3, steps_retried: 1, retries: 1, retry_rate: 0.3333 });
    const errors = await env.DB.prepare("SELECT * FROM v_worker_error_rate WHERE day = ?1 AND pool = 'standard'").bind(day).first<Record<string, number>>();
    expect(errors).toMatchObject({ finished_attempts: 4, worker_errors: 2, worker_error_rate: 0.5 });
    const cost = await env.DB.prepare("SELECT * FROM v_cost_per_run WHERE day = ?1 AND run_type = 'hello'").bind(day).first<Record<string, number>>();
    expect(cost).toMatchObject({ runs: 1, total_nano_usd: 15_600, ai_nano_usd: 15_000, cost_per_run_nano_usd: 15_600 });
  });
});
