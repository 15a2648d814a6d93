/**
 * Metrics end to end, with nothing fed by hand: real runs through the API, the run objects, the
 * job and events queues; the minute cron (the Worker's scheduled handler) samples the pools,
 * probes the control plane, flushes the isolate's API timings and refreshes the rollups; every
 * /v1/metrics/* endpoint then shows those runs, and GET /metrics parses as Prometheus text and
 * as OpenMetrics with a real parser.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { poolNames } from "../../src/config/pools";
import { usageTotals } from "../../src/lib/usage";
import { api, createRun, d1Count, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const realFetch = globalThis.fetch;
beforeAll(() => {
  // The alert webhook is outside the platform.
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url === "http://127.0.0.1:9/alerts") return new Response(null, { status: 204 });
    return realFetch(input, init);
  });
});
afterAll(() => vi.restoreAllMocks());

async function cron() {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime: Date.now(), cron: "* * * * *" }), env, ctx);
  await waitOnExecutionContext(ctx);
}

let customer: Awaited<ReturnType<typeof newCustomer>>;
let runIds: string[] = [];
const HOUR_RANGE = () => {
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  return `from=${new Date(hour - 3_600_000).toISOString()}&to=${new Date(hour + 3_600_000).toISOString()}&bucket=hour`;
};

beforeAll(async () => {
  customer = await newCustomer("ingest");
  const usage = { model: "gpt-4o-mini", inputTokens: 1000, outputTokens: 100 };
  const bodies = [
    { steps: [synthetic("a", { usage }), synthetic("b")] },
    { steps: [synthetic("flaky", { failTimes: 1 }, { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10, backoffFactor: 1 } })] },
    { steps: [synthetic("broken", { failKind: "permanent", failTimes: 5 })] },
  ];
  for (const body of bodies) {
    const res = await createRun(customer.key, body);
    expect(res.status).toBe(202);
    runIds.push(res.body.run.id);
  }
  for (const id of runIds) await waitForRun(customer.key, id, isFinished);
  // The events queue carries the index rows, the costs and the dead letter to D1.
  await vi.waitUntil(async () => (await d1Count("runs", "customer_id = ? AND status IN ('succeeded', 'failed')", customer.id)) === 3 && (await d1Count("dlq_entries", "customer_id = ?", customer.id)) === 1, { timeout: 15_000, interval: 100 });
  await vi.waitUntil(async () => (await d1Count("cost_rollups", "customer_id = ?", customer.id)) >= 3, { timeout: 15_000, interval: 100 });
  // One tick samples and probes (through the queue) and flushes this isolate's API timings; once
  // those have landed, the next tick rolls them up.
  await cron();
  await vi.waitUntil(async () => (await d1Count("uptime_probes")) >= 1 && (await d1Count("pool_samples")) >= 1 && (await d1Count("api_samples")) >= 1, { timeout: 15_000, interval: 100 });
  await cron();
});

describe("after real runs and the minute cron", () => {
  it("every /v1/metrics endpoint shows them", async () => {
    const runs = (await api("GET", `/v1/metrics/runs?${HOUR_RANGE()}`, { key: customer.key })).body;
    expect(runs.totals).toMatchObject({ runs: 3, finished: 3, succeeded: 2, failed: 1, failuresByType: { permanent: 1 } });
    expect(runs.totals.durationMs.p95).toBeGreaterThan(0);

    const costs = (await api("GET", `/v1/metrics/costs?${HOUR_RANGE()}&groupBy=model`, { key: customer.key })).body;
    expect(costs.series.find((r: any) => r.key === "gpt-4o-mini")).toMatchObject({ runs: 1, inputTokens: 1000, outputTokens: 100, aiNanoUsd: 210_000 }); // 1000 × 0.15 + 100 × 0.60 per M
    expect(costs.totals.runs).toBe(3);
    expect(Number(costs.totals.costPerRunNanoUsd)).toBeGreaterThan(0);

    const queues = (await api("GET", `/v1/metrics/queues?${HOUR_RANGE()}`)).body;
    expect(queues.totals.samples).toBeGreaterThanOrEqual(1);
    const own = (await api("GET", `/v1/metrics/queues?${HOUR_RANGE()}`, { key: customer.key })).body;
    // a: 2 steps, flaky: 2 attempts, broken: 1 (permanent: no retry)
    expect(own.totals).toMatchObject({ attempts: 5, processed: 5, retries: 1, retryRate: 1 / 4, deadLettered: 1, dlqOpen: 1 });
    expect(own.totals.processingRatePerSecond).toBeGreaterThan(0);

    const workers = (await api("GET", `/v1/metrics/workers?${HOUR_RANGE()}&groupBy=pool`)).body;
    expect(workers.series.find((r: any) => r.key === "standard").utilization).toBeGreaterThan(0);

    const apiMetrics = (await api("GET", `/v1/metrics/api?${HOUR_RANGE()}&groupBy=route`, { key: customer.key })).body;
    const creates = apiMetrics.series.find((r: any) => r.key === "POST /v1/runs");
    expect(creates).toMatchObject({ requests: 3, serverErrors: 0 });
    expect(creates.latencyMs.p99).toBeGreaterThanOrEqual(0);
    expect(apiMetrics.series.find((r: any) => r.key === "GET /v1/runs/:id").requests).toBeGreaterThan(0);

    const reliability = (await api("GET", `/v1/metrics/reliability?${HOUR_RANGE()}`, { key: customer.key })).body;
    expect(reliability.totals.uptime.okProbes).toBeGreaterThanOrEqual(1);
    expect(reliability.totals).toMatchObject({ runFailureRate: 1 / 3, retryRate: 1 / 4, deadLettered: 1, dlqOpen: 1 });
  });

  it("the probe does not count as API traffic", async () => {
    const health = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_samples WHERE route = '/health/ready'").first<{ n: number }>();
    expect(health!.n).toBe(0);
  });
});

describe("GET /metrics", () => {
  it("parses as the Prometheus text format, with the current gauges and counters", async () => {
    const res = await api("GET", "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const families = parsePrometheusTextFormat(res.body.text) as { name: string; type: string; help: string; metrics: { value: string; labels?: Record<string, string> }[] }[];
    const family = (name: string) => {
      const f = families.find((x) => x.name === name);
      expect(f, name).toBeDefined();
      return f!;
    };
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number(family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value);
    for (const name of ["runplane_runs_unfinished", "runplane_dlq_entries", "runplane_queue_depth", "runplane_in_flight", "runplane_max_concurrency", "runplane_worker_utilization", "runplane_up"]) {
      expect(family(name).type, name).toBe("GAUGE");
    }
    for (const name of ["runplane_runs_created_total", "runplane_runs_finished_total", "runplane_steps_started_total", "runplane_step_retries_total", "runplane_spend_nano_usd_total", "runplane_api_requests_total"]) {
      expect(family(name).type, name).toBe("COUNTER");
    }
    const open = await d1Count("dlq_entries", "state = 'open' AND pool = 'standard'");
    expect(value("runplane_dlq_entries", { pool: "standard" })).toBe(open);
    expect(value("runplane_max_concurrency", { pool: "standard" })).toBe(10);
    expect(value("runplane_runs_created_total")).toBeGreaterThanOrEqual(3);
    expect(value("runplane_runs_finished_total", { status: "failed" })).toBeGreaterThanOrEqual(1);
    expect(value("runplane_step_retries_total", { pool: "standard" })).toBeGreaterThanOrEqual(1);
    expect(value("runplane_spend_nano_usd_total", { customer: customer.id })).toBeGreaterThan(210_000);
    expect(value("runplane_up")).toBe(1);
    expect(value("runplane_api_requests_total", { route: "/v1/runs", method: "POST", code: "2xx" })).toBeGreaterThanOrEqual(3);
  });

  it("speaks OpenMetrics when the scraper asks: counter families without _total, samples with it, # EOF last", async () => {
    const res = await api("GET", "/metrics", { headers: { accept: "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5" } });
    expect(res.headers.get("content-type")).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8");
    const text: string = res.body.text;
    expect(text.endsWith("# EOF\n")).toBe(true);
    const families = parsePrometheusTextFormat(text.replace(/# EOF\n$/, "")) as { name: string; type?: string; metrics: unknown[] }[];
    // The parser reads a TYPE line's family and its samples apart when their names differ, as
    // OpenMetrics counters do: each counter family is declared and followed by its _total samples.
    const declared = families.filter((f) => f.type === "COUNTER");
    expect(declared.map((f) => f.name)).toContain("runplane_runs_created");
    for (const f of declared) {
      expect(f.name.endsWith("_total"), f.name).toBe(false);
      const samples = families.find((s) => s.name === `${f.name}_total`);
      if (f.metrics.length === 0 && samples) expect(samples.metrics.length).toBeGreaterThan(0);
    }
    expect(families.find((f) => f.name === "runplane_runs_created_total")!.metrics).toHaveLength(1);
  });
});

describe("what the metrics cost", () => {
  it("a cron tick writes only rollup rows that changed, and nothing when nothing did", async () => {
    await cron(); // settle: the samples of the previous tick
    await new Promise((r) => setTimeout(r, 300));
    await cron();
    // The usage counters are the isolate's: the pool controllers' own sampling (active for their
    // down-cooldown after this file's runs) and other suites' work add to them. Background work
    // only adds, so the quietest of a few ticks is the tick's own.
    let written = Infinity;
    let queued = Infinity;
    for (let i = 0; i < 4; i++) {
      const before = usageTotals();
      await cron();
      const after = usageTotals();
      written = Math.min(written, after.d1_rows_written - before.d1_rows_written);
      queued = Math.min(queued, after.queue_operations - before.queue_operations);
      await new Promise((r) => setTimeout(r, 300));
    }
    // Nothing changed since the last tick but the new minute's pool sample and probe, which are
    // still on the queue: the reconcilers and the refresh write (almost) nothing.
    expect(written).toBeLessThan(10);
    // Its messages: one pool sample per pool and one probe, 3 operations each (written, read,
    // deleted: the events consumer may take them before the tick ends).
    expect(queued).toBeLessThanOrEqual(3 * (poolNames().length + 1));
  });
});
