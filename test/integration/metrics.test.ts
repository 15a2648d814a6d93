/**
 * The metrics API over a known set of runs, attempts, dead letters, costs, API timings, pool
 * samples and probes, all fed through the real events consumer (as the queue delivers them),
 * rolled up by the cron's refresh, and read back: every figure is the hand-computed one. Then a
 * redelivery of the whole batch, tenancy, and bad parameters.
 */
import type { FailureType, RunStatus } from "../../src/domain/run-status";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import worker from "../../src/index";
import { rollupToWire, type EventMessage } from "../../src/data-plane/messages";
import { buildRollup, type CostRecord } from "../../src/domain/cost-records";
import { TimingAggregator } from "../../src/metrics/api-timings";
import { recordDeadLetter } from "../../src/services/dead-letters";
import { refreshRollups } from "../../src/services/rollups";
import { api } from "../helpers";

const H1 = Date.parse("2025-03-03T10:00:00Z"); // a Monday
const H2 = Date.parse("2025-03-04T09:00:00Z");
const B1 = Date.parse("2025-03-10T00:00:00Z"); // the next Monday
const MIN = 60_000;
/** The refresh runs "as of" a time soon after the data, so its hours are within retention. */
const AS_OF = Date.parse("2025-03-20T00:00:00Z");
const MARCH = "from=2025-03-01T00:00:00Z&to=2025-04-01T00:00:00Z";

interface RunSpec {
  id: string;
  customer: string;
  project?: string;
  runType: string | null;
  pool?: string;
  status: RunStatus;
  createdAt: number;
  durationMs?: number | null;
  failureType?: FailureType | null;
  attempts?: { step?: number; attempt: number; status: string; failureType?: string | null; startOffset?: number; ms?: number }[];
}

function indexMessage(r: RunSpec): EventMessage {
  const started = r.durationMs === undefined || r.durationMs === null ? null : r.createdAt + 100;
  const finished = started !== null && ["succeeded", "failed", "cancelled"].includes(r.status) ? started + r.durationMs! : null;
  return {
    kind: "run.index",
    run: {
      id: r.id, customerId: r.customer, projectId: r.project ?? "p1", runType: r.runType, pool: r.pool ?? "standard", priority: "normal",
      status: r.status, createdAt: r.createdAt, startedAt: started, finishedAt: finished, failureType: r.failureType ?? null,
      failedStep: r.failureType ? "s" : null, idempotencyKey: null, version: 5, dueAt: null,
    },
    attempts: (r.attempts ?? []).map((a) => {
      const at = r.createdAt + 100 + (a.startOffset ?? 0);
      return {
        stepIndex: a.step ?? 0, step: `s${a.step ?? 0}`, stepType: "synthetic", attempt: a.attempt, status: a.status,
        failureType: a.failureType ?? null, failureMessage: a.failureType ? "boom" : null, startedAt: at, finishedAt: a.status === "running" ? null : at + (a.ms ?? 0),
      };
    }),
  };
}

const RUNS: RunSpec[] = [
  // acme, run type "summarize", created in hour H1 (Monday 3 March, 10:00)
  { id: "a1", customer: "acme", runType: "summarize", status: "succeeded", createdAt: H1 + 1 * MIN, durationMs: 1000, attempts: [{ attempt: 1, status: "succeeded", ms: 1000 }] },
  {
    id: "a2", customer: "acme", runType: "summarize", status: "succeeded", createdAt: H1 + 2 * MIN, durationMs: 2000,
    attempts: [{ attempt: 1, status: "failed", failureType: "worker_error", ms: 500 }, { attempt: 2, status: "succeeded", startOffset: 500, ms: 1500 }],
  },
  {
    id: "a3", customer: "acme", runType: "summarize", status: "failed", failureType: "transient", createdAt: H1 + 3 * MIN, durationMs: 3000,
    attempts: [1, 2, 3].map((n) => ({ attempt: n, status: "failed", failureType: "transient", startOffset: (n - 1) * 1000, ms: 1000 })),
  },
  { id: "a4", customer: "acme", runType: "summarize", status: "failed", failureType: "permanent", createdAt: H1 + 4 * MIN, durationMs: 500 },
  { id: "a5", customer: "acme", runType: "summarize", status: "cancelled", failureType: "cancelled", createdAt: H1 + 5 * MIN, durationMs: 100 },
  { id: "a6", customer: "acme", runType: "summarize", status: "queued", createdAt: H1 + 6 * MIN, durationMs: null, attempts: [{ attempt: 1, status: "running" }] },
  // acme, inline steps, Tuesday 4 March 09:00
  { id: "a7", customer: "acme", runType: null, status: "failed", failureType: "timeout", createdAt: H2 + 1 * MIN, durationMs: 4000 },
  { id: "a8", customer: "acme", runType: null, status: "failed", failureType: "worker_error", createdAt: H2 + 2 * MIN, durationMs: 50 },
  // bolt, on pool "gpu", Monday 10 March 00:00
  { id: "b1", customer: "bolt", runType: "summarize", pool: "gpu", status: "succeeded", createdAt: B1 + 1 * MIN, durationMs: 10_000 },
  { id: "b2", customer: "bolt", runType: "summarize", pool: "gpu", status: "failed", failureType: "budget_exceeded", createdAt: B1 + 2 * MIN, durationMs: null },
];

/** One priced cost record per line, a rollup per run, as the ledger sends it. */
function costMessage(run: string, customer: string, runType: string | null, pool: string, lines: { meter: string; model?: string; quantity: number; nano: number; at: number }[]): EventMessage {
  const records: CostRecord[] = lines.map((l, i) => ({
    seq: i + 1, kind: "attempt", step: "s", attempt: 1, at: l.at, infra: {}, estimated: [], tokens: [], holdId: null,
    nanoUsd: BigInt(l.nano), aiNanoUsd: l.model ? BigInt(l.nano) : 0n,
    lines: [{ meter: l.meter as CostRecord["lines"][number]["meter"], model: l.model ?? null, quantity: BigInt(l.quantity), perMillion: 0n, nanoUsd: BigInt(l.nano), priceVersion: "test", estimated: false }],
  }));
  return { kind: "cost.rollup", rollup: { runId: run, customerId: customer, projectId: "p1", runType, pool, version: records.length, rows: buildRollup(records).map(rollupToWire) } };
}

const COSTS: EventMessage[] = [
  costMessage("a1", "acme", "summarize", "standard", [
    { meter: "input_tokens", model: "gpt-4o-mini", quantity: 1000, nano: 150_000, at: H1 + 2 * MIN },
    { meter: "worker_requests", quantity: 3, nano: 900, at: H1 + 1 * MIN },
  ]),
  // a2's costs span two hours: it counts as a run in the first
  costMessage("a2", "acme", "summarize", "standard", [
    { meter: "worker_requests", quantity: 5, nano: 1_500, at: H1 + 2 * MIN },
    { meter: "worker_requests", quantity: 2, nano: 600, at: H1 + 61 * MIN },
  ]),
  costMessage("b1", "bolt", "summarize", "gpu", [
    { meter: "worker_requests", quantity: 1, nano: 300, at: B1 + 1 * MIN },
    { meter: "output_tokens", model: "gpt-4o", quantity: 1000, nano: 10_000_000, at: B1 + 2 * MIN },
  ]),
];

function apiMessages(): EventMessage[] {
  const agg = new TimingAggregator("iso_test", H1);
  for (const ms of [10, 20, 30, 40, 1000]) agg.record(H1 + 5 * MIN, "/v1/runs/:id", "GET", 200, "acme", ms);
  agg.record(H1 + 5 * MIN, "/v1/runs", "POST", 202, "", 50);
  agg.record(H1 + 5 * MIN, "/v1/runs", "POST", 202, "", 50);
  agg.record(H1 + 5 * MIN, "/v1/runs", "POST", 400, "", 5);
  agg.record(H1 + 6 * MIN, "/v1/runs", "POST", 500, "", 7);
  return agg.drain(H1 + 7 * MIN) as EventMessage[];
}

const POOL_SAMPLES: EventMessage[] = [10, 20, 30, 40, 50].map((depth, i) => ({
  kind: "metrics.pool", v: 1,
  sample: { minute: H1 + i * MIN, pool: "standard", source: "cron", depth, queued: depth, running: 0, waiting: 0, inFlight: i + 1, processed: null, concurrency: 10, desiredConcurrency: null, utilization: (i + 1) / 10, dlqOpen: i >= 2 ? 1 : 0, sampledAt: H1 + i * MIN },
}));

const PROBES: EventMessage[] = Array.from({ length: 10 }, (_, i) => ({
  kind: "metrics.probe", v: 1,
  probe: { minute: H1 + i * MIN, ok: i !== 4, status: i !== 4 ? 200 : 503, latencyMs: 5, failed: i !== 4 ? [] : ["d1"], probedAt: H1 + i * MIN },
}));

const ALL: EventMessage[] = [...RUNS.map(indexMessage), ...COSTS, ...apiMessages(), ...POOL_SAMPLES, ...PROBES];

async function deliver(messages: EventMessage[], prefix: string) {
  const batch = createMessageBatch("runplane-events", messages.map((body, i) => ({ id: `${prefix}-${i}`, timestamp: new Date(), attempts: 1, body })));
  const ctx = createExecutionContext();
  await worker.queue(batch, env, ctx);
  const result = await getQueueResult(batch, ctx);
  expect(result.retryMessages).toEqual([]);
}

async function refresh() {
  const report = await refreshRollups(env, AS_OF);
  expect(report.failed).toBe(0);
  return report;
}

let acmeKey = "";
let boltKey = "";
beforeAll(async () => {
  for (const id of ["acme", "bolt"]) {
    const res = await api("POST", "/v1/customers", { body: { id, name: id } });
    expect(res.status).toBe(201);
    if (id === "acme") acmeKey = res.body.apiKey;
    else boltKey = res.body.apiKey;
  }
  await deliver(ALL, "first");
  const dead = (id: string, runId: string, failureType: string, deadAt: number, customerId = "acme") => ({
    id, runId, customerId, runType: "summarize", pool: "standard", step: "s0", failureType, failureMessage: "boom", attempts: 1, history: [], message: {}, deadAt,
  });
  await recordDeadLetter(env.DB, dead("dlq_a3", "a3", "transient", H1 + 10 * MIN));
  await recordDeadLetter(env.DB, dead("dlq_a4", "a4", "permanent", H1 + 20 * MIN));
  await env.DB.prepare("UPDATE dlq_entries SET state = 'discarded' WHERE id = 'dlq_a4'").run();
  await recordDeadLetter(env.DB, { ...dead("dlq_a7", "a7", "timeout", H2 + 5 * MIN), runType: null });
  await refresh();
});

const get = async (path: string, key?: string) => {
  const res = await api("GET", path, key === undefined ? {} : { key });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

describe("GET /v1/metrics/runs", () => {
  it("counts volume, outcomes and failure types, and the duration's avg, p50, p95 (sketch) and max", async () => {
    const body = await get(`/v1/metrics/runs?${MARCH}&bucket=month&customerId=acme`);
    expect(body).toMatchObject({ from: "2025-03-01T00:00:00.000Z", to: "2025-04-01T00:00:00.000Z", bucket: "month", groupBy: null });
    expect(body.series).toHaveLength(1);
    // acme: 8 runs; 7 finished (a6 is queued): 2 succeeded, 4 failed, 1 cancelled.
    // Durations of the 7: 50, 100, 500, 1000, 2000, 3000, 4000 → avg 10650 / 7.
    // p50 = the 4th (⌈0.5·7⌉) = 1000 ms, in the sketch bucket [1000, 1007]: its midpoint 1003.5.
    // p95 = the 7th (⌈0.95·7⌉) = 4000 ms, in [4000, 4031]: 4015.5. Both within 1/128 of the exact.
    expect(body.totals).toEqual({
      runs: 8, finished: 7, unfinished: 1, succeeded: 2, failed: 4, cancelled: 1,
      successRate: 2 / 7, failureRate: 4 / 7, cancelledRate: 1 / 7,
      failuresByType: { transient: 1, timeout: 1, worker_error: 1, permanent: 1, budget_exceeded: 0, cancelled: 1 },
      failureRateByType: { transient: 1 / 7, timeout: 1 / 7, worker_error: 1 / 7, permanent: 1 / 7, budget_exceeded: 0, cancelled: 1 / 7 },
      durationMs: { runs: 7, avg: 10650 / 7, p50: 1003.5, p95: 4015.5, max: 4000 },
    });
    expect(body.series[0]).toEqual({ bucket: "2025-03-01T00:00:00.000Z", ...body.totals });
    expect(body.percentiles).toMatchObject({ exactBelowMs: 128, relativeError: 1 / 128 });
  });

  it("buckets volume by day, week (from Monday) and month, zero-filled without groupBy", async () => {
    const volume = async (bucket: string, range = MARCH) => (await get(`/v1/metrics/runs?${range}&bucket=${bucket}`)).series.filter((r: any) => r.runs > 0).map((r: any) => [r.bucket, r.runs]);
    expect(await volume("day")).toEqual([
      ["2025-03-03T00:00:00.000Z", 6],
      ["2025-03-04T00:00:00.000Z", 2],
      ["2025-03-10T00:00:00.000Z", 2],
    ]);
    expect(await volume("week")).toEqual([
      ["2025-03-03T00:00:00.000Z", 8],
      ["2025-03-10T00:00:00.000Z", 2],
    ]);
    expect(await volume("month")).toEqual([["2025-03-01T00:00:00.000Z", 10]]);
    expect(await volume("hour", "from=2025-03-03T09:00:00Z&to=2025-03-03T12:00:00Z")).toEqual([["2025-03-03T10:00:00.000Z", 6]]);
    const days = (await get(`/v1/metrics/runs?${MARCH}&bucket=day`)).series;
    expect(days).toHaveLength(31);
    expect(days[0]).toMatchObject({ bucket: "2025-03-01T00:00:00.000Z", runs: 0, successRate: null, durationMs: { runs: 0, avg: null, p50: null, p95: null, max: null } });
  });

  it("groups by run type, project, pool and customer", async () => {
    const grouped = async (groupBy: string) => (await get(`/v1/metrics/runs?${MARCH}&bucket=month&groupBy=${groupBy}`)).series.map((r: any) => [r.key, r.customerId, r.runs, r.failed]);
    expect(await grouped("runType")).toEqual([
      ["(inline)", undefined, 2, 2],
      ["summarize", undefined, 8, 3],
    ]);
    expect(await grouped("project")).toEqual([
      ["p1", "acme", 8, 4],
      ["p1", "bolt", 2, 1],
    ]);
    expect(await grouped("pool")).toEqual([
      ["gpu", undefined, 2, 1],
      ["standard", undefined, 8, 4],
    ]);
    expect(await grouped("customer")).toEqual([
      ["acme", undefined, 8, 4],
      ["bolt", undefined, 2, 1],
    ]);
    // bolt: b1 took 10 s, b2 never started (no duration). 10000 ms is in the bucket [9984, 10111]
    // (8192…16383 in 64 buckets of 128 ms): reported as 10047.5, 0.48 % off (the bound is 1/128).
    const bolt = (await get(`/v1/metrics/runs?${MARCH}&bucket=month&groupBy=customer`)).series[1];
    expect(bolt.durationMs).toEqual({ runs: 1, avg: 10_000, p50: 10_047.5, p95: 10_047.5, max: 10_000 });
    expect(bolt.failuresByType.budget_exceeded).toBe(1);
  });
});

describe("GET /v1/metrics/costs", () => {
  it("cost per run and per customer, exact in nano-USD; a run whose costs span hours counts once", async () => {
    const body = await get(`/v1/metrics/costs?${MARCH}&bucket=month`);
    // a1 150,900 + a2 2,100 + b1 10,000,300 = 10,153,300 over 3 runs and 2 customers
    expect(body.totals).toMatchObject({
      runs: 3, customers: 2, totalNanoUsd: 10_153_300, aiNanoUsd: 10_150_000, infraNanoUsd: 3_300,
      costPerRunNanoUsd: 3_384_433, // 10,153,300 / 3 = 3,384,433.33
      costPerCustomerNanoUsd: 5_076_650,
      totalUsd: "0.010153", inputTokens: 1000, outputTokens: 1000, cachedTokens: 0,
    });
    const hours = (await get(`/v1/metrics/costs?from=2025-03-03T10:00:00Z&to=2025-03-03T12:00:00Z&bucket=hour`)).series;
    expect(hours.map((r: any) => [r.bucket, r.runs, r.totalNanoUsd, r.costPerRunNanoUsd, r.changeNanoUsd])).toEqual([
      ["2025-03-03T10:00:00.000Z", 2, 152_400, 76_200, null],
      ["2025-03-03T11:00:00.000Z", 0, 600, null, -151_800],
    ]);
  });

  it("tokens and cost by model and by customer", async () => {
    const byModel = (await get(`/v1/metrics/costs?${MARCH}&bucket=month&groupBy=model`)).series;
    expect(byModel.map((r: any) => [r.key, r.runs, r.totalNanoUsd, r.inputTokens, r.outputTokens])).toEqual([
      ["(infra)", 3, 3_300, 0, 0],
      ["gpt-4o", 1, 10_000_000, 0, 1000],
      ["gpt-4o-mini", 1, 150_000, 1000, 0],
    ]);
    const byCustomer = (await get(`/v1/metrics/costs?${MARCH}&bucket=week&groupBy=customer`)).series;
    expect(byCustomer.map((r: any) => [r.bucket, r.key, r.runs, r.totalNanoUsd, r.aiNanoUsd, r.costPerRunNanoUsd])).toEqual([
      ["2025-03-03T00:00:00.000Z", "acme", 2, 153_000, 150_000, 76_500],
      ["2025-03-10T00:00:00.000Z", "bolt", 1, 10_000_300, 10_000_000, 10_000_300],
    ]);
    const trend = (await get(`/v1/metrics/costs?${MARCH}&bucket=week`)).trend;
    expect(trend).toEqual({ bucket: "week", first: { bucket: "2025-03-03T00:00:00.000Z", nanoUsd: 153_000 }, last: { bucket: "2025-03-10T00:00:00.000Z", nanoUsd: 10_000_300 }, changeNanoUsd: 9_847_300, changePercent: 6436.1 });
  });
});

describe("GET /v1/metrics/queues, /workers, /api, /reliability", () => {
  const HOUR = "from=2025-03-03T10:00:00Z&to=2025-03-03T11:00:00Z&bucket=hour";

  it("queues: depth and in-flight from the minute samples, processing rate and retry rate from the attempts, dead letters", async () => {
    const body = await get(`/v1/metrics/queues?${HOUR}`);
    // attempts in H1: a1 ×1, a2 ×2, a3 ×3, a6 ×1 (running): 7, 6 finished; 4 steps started, 2 retried (a2, a3)
    expect(body.totals).toEqual({
      depth: { avg: 30, max: 50 }, inFlight: { avg: 3, max: 5 }, desiredConcurrency: { avg: null }, samples: 5,
      processed: 6, processingRatePerSecond: 6 / 3600, attempts: 7, retries: 3, retryRate: 0.5,
      deadLettered: 2, dlqSize: { avg: 0.6, max: 1 }, dlqOpen: 2,
    });
    const month = await get(`/v1/metrics/queues?${MARCH}&bucket=month&groupBy=pool`);
    expect(month.series.map((r: any) => [r.key, r.deadLettered, r.processed])).toEqual([["standard", 3, 6]]);
    expect(month.dlqOpenByPool).toEqual({ standard: 2 });
  });

  it("workers: utilization is busy time over capacity; worker error rate over finished attempts", async () => {
    const body = await get(`/v1/metrics/workers?${HOUR}&groupBy=pool`);
    // busy: a1 1000 + a2 500 + 1500 + a3 3 × 1000 = 6000 ms; capacity: standard's 10 × 3600 s
    expect(body.series).toEqual([
      {
        bucket: "2025-03-03T10:00:00.000Z", key: "standard",
        attempts: 7, processed: 6, busyMs: 6000, capacityMs: 36_000_000, utilization: 6000 / 36_000_000, sampledUtilization: 0.3,
        failedAttempts: 4, attemptFailureRate: 4 / 6, workerErrors: 1, workerErrorRate: 1 / 6,
      },
    ]);
    expect(body.totals).toMatchObject({ capacityMs: 36_000_000, utilization: 6000 / 36_000_000 });
  });

  it("api: response times per route with p50/p95/p99, and error rates", async () => {
    const body = await get(`/v1/metrics/api?${HOUR}&groupBy=route`);
    expect(body.series).toEqual([
      // 10, 20, 30, 40, 1000 ms: p50 the 3rd (30, exact below 128 ms), p95 and p99 the 5th (1000 → [1000, 1007])
      { bucket: "2025-03-03T10:00:00.000Z", key: "GET /v1/runs/:id", requests: 5, clientErrors: 0, serverErrors: 0, errorRate: 0, latencyMs: { avg: 220, p50: 30, p95: 1003.5, p99: 1003.5, max: 1000 } },
      { bucket: "2025-03-03T10:00:00.000Z", key: "POST /v1/runs", requests: 4, clientErrors: 1, serverErrors: 1, errorRate: 0.25, latencyMs: { avg: 28, p50: 7, p95: 50, p99: 50, max: 50 } },
    ]);
    expect(body.totals.requests).toBe(9);
  });

  it("reliability: uptime counts every minute since probing began; failure, worker error and retry rates; dead letters", async () => {
    const body = await get(`/v1/metrics/reliability?${HOUR}`);
    // 10 probes (9 ok) in an hour that should have had 60
    expect(body.totals).toEqual({
      uptime: { probes: 10, okProbes: 9, expectedProbes: 60, missedProbes: 50, uptime: 9 / 60 },
      runFailureRate: 2 / 5, // created in H1 and finished: a1..a5; a3 and a4 failed (a5 was cancelled)
      workerErrorRate: 1 / 6,
      retryRate: 0.5,
      apiErrorRate: 1 / 9,
      deadLettered: 2,
      dlqOpen: 2,
    });
  });
});

describe("GET /v1/insights/cost-drivers", () => {
  it("names the run types, models and customers that drive cost, and how they moved against the previous period", async () => {
    // March 10 – 17 against March 3 – 10: bolt's gpt-4o run against acme's two runs.
    const body = await get("/v1/insights/cost-drivers?from=2025-03-10T00:00:00Z&to=2025-03-17T00:00:00Z");
    expect(body.previous).toEqual({ from: "2025-03-03T00:00:00.000Z", to: "2025-03-10T00:00:00.000Z" });
    expect(body.totals.current).toEqual({ nanoUsd: 10_000_300, usd: "0.010000", aiNanoUsd: 10_000_000, runs: 1 });
    expect(body.totals.previous).toEqual({ nanoUsd: 153_000, usd: "0.000153", aiNanoUsd: 150_000, runs: 2 });
    expect(body.totals.change).toEqual({ nanoUsd: 9_847_300, usd: "0.009847", percent: 6436.1 });
    expect(body.drivers.models.map((d: any) => [d.key, d.current.nanoUsd, d.previous.nanoUsd, d.sharePercent, d.change.percent])).toEqual([
      ["gpt-4o", 10_000_000, 0, 100, null],
      ["(infra)", 300, 3_000, 0, -90],
      ["gpt-4o-mini", 0, 150_000, 0, -100],
    ]);
    expect(body.drivers.runTypes).toEqual([
      {
        key: "summarize",
        current: { nanoUsd: 10_000_300, usd: "0.010000", runs: 1, costPerRun: { nanoUsd: 10_000_300, usd: "0.010000" } },
        previous: { nanoUsd: 153_000, usd: "0.000153", runs: 2, costPerRun: { nanoUsd: 76_500, usd: "0.000076" } },
        sharePercent: 100,
        change: { nanoUsd: 9_847_300, usd: "0.009847", percent: 6436.1 },
        costPerRunChangePercent: 12972.3, // 76,500 → 10,000,300: ×130.7229…
      },
    ]);
    expect(body.drivers.customers.map((d: any) => d.key)).toEqual(["bolt", "acme"]);
    expect(body.findings).toEqual([
      "Total cost rose 6436.1% against the previous period ($0.000153 → $0.010000).",
      "Model gpt-4o drives 100% of the cost ($0.010000).",
      "Customer bolt drives 100% of the cost ($0.010000).",
      "Cost per run of run type summarize rose 12972.3% ($0.000076 → $0.010000).",
      "Model gpt-4o is new this period and costs $0.010000.",
      "AI tokens are 100% of the cost: model choice, prompt size and cached input are the levers.",
    ]);
  });

  it("shows a customer key its own cost only", async () => {
    const body = await get("/v1/insights/cost-drivers?from=2025-03-10T00:00:00Z&to=2025-03-17T00:00:00Z", acmeKey);
    expect(body.totals.current.nanoUsd).toBe(0);
    expect(body.totals.previous.nanoUsd).toBe(153_000);
    expect(body.drivers.customers.map((d: any) => d.key)).toEqual(["acme"]);
    expect((await api("GET", "/v1/insights/cost-drivers?customerId=bolt", { key: acmeKey })).status).toBe(404);
  });
});

describe("a redelivered batch", () => {
  it("changes no figure of any endpoint", async () => {
    const paths = [
      `/v1/metrics/runs?${MARCH}&bucket=day&groupBy=runType`,
      `/v1/metrics/costs?${MARCH}&bucket=hour&groupBy=model`,
      `/v1/metrics/queues?${MARCH}&bucket=hour`,
      `/v1/metrics/workers?${MARCH}&bucket=hour&groupBy=pool`,
      `/v1/metrics/api?${MARCH}&bucket=hour&groupBy=route`,
      `/v1/metrics/reliability?${MARCH}&bucket=day`,
      "/v1/insights/cost-drivers?from=2025-03-10T00:00:00Z&to=2025-03-17T00:00:00Z",
    ];
    const before = await Promise.all(paths.map((p) => get(p)));
    const rows = async () => {
      const out: Record<string, unknown> = {};
      for (const t of ["runs", "step_attempts", "cost_rollups", "api_samples", "pool_samples", "uptime_probes", "run_rollups", "attempt_rollups", "cost_hourly", "api_rollups", "pool_rollups", "uptime_rollups"]) {
        out[t] = (await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${t}`).first<{ n: number }>())!.n;
      }
      return out;
    };
    const counted = await rows();
    // The same messages again (the queue redelivers a whole batch), then in another order and split.
    await deliver(ALL, "again");
    await deliver([...ALL].reverse().slice(0, 20), "split-1");
    await deliver([...ALL].reverse().slice(20), "split-2");
    const report = await refresh();
    expect(report.rowsWritten).toBe(0);
    expect(await rows()).toEqual(counted);
    const after = await Promise.all(paths.map((p) => get(p)));
    expect(after).toEqual(before);
  });
});

describe("tenancy", () => {
  it("a customer key reads its own slice only; another tenant's id is a 404", async () => {
    const own = await get(`/v1/metrics/runs?${MARCH}&bucket=month&groupBy=customer`, boltKey);
    expect(own.series.map((r: any) => [r.key, r.runs])).toEqual([["bolt", 2]]);
    expect(own.totals.runs).toBe(2);
    for (const path of ["runs", "costs", "queues", "workers", "api", "reliability"]) {
      const res = await api("GET", `/v1/metrics/${path}?${MARCH}&customerId=acme`, { key: boltKey });
      expect(res.status, path).toBe(404);
      expect(res.body.error.code).toBe("not_found");
    }
    const costs = await get(`/v1/metrics/costs?${MARCH}&bucket=month&groupBy=model`, boltKey);
    expect(costs.series.map((r: any) => r.key)).toEqual(["(infra)", "gpt-4o"]);
    expect(costs.totals.totalNanoUsd).toBe(10_000_300);
    // The pools' state is nobody's: a customer sees its own jobs and dead letters, not the backlog.
    const queues = await get(`/v1/metrics/queues?from=2025-03-03T10:00:00Z&to=2025-03-03T11:00:00Z&bucket=hour`, acmeKey);
    expect(queues.totals).toMatchObject({ depth: null, inFlight: null, dlqSize: null, processed: 6, deadLettered: 2, dlqOpen: 2 });
    expect((await get(`/v1/metrics/queues?${MARCH}`, boltKey)).totals).toMatchObject({ processed: 0, deadLettered: 0, dlqOpen: 0 });
    const apiOwn = await get(`/v1/metrics/api?${MARCH}&groupBy=route&bucket=month`, acmeKey);
    expect(apiOwn.series.map((r: any) => [r.key, r.requests])).toEqual([["GET /v1/runs/:id", 5]]);
    expect((await get(`/v1/metrics/api?${MARCH}&bucket=month`, boltKey)).totals.requests).toBe(0);
    const workers = await get(`/v1/metrics/workers?${MARCH}&bucket=month`, boltKey);
    expect(workers.totals).toMatchObject({ attempts: 0, sampledUtilization: null });
  });
});

describe("bad parameters", () => {
  const bad = async (path: string, field: string) => {
    const res = await api("GET", path);
    expect(res.status, path).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details.map((d: any) => d.field), path).toContain(field);
  };

  it("answer 400 naming the parameter", async () => {
    await bad("/v1/metrics/runs?bucket=year", "query.bucket");
    await bad("/v1/metrics/runs?groupBy=model", "query.groupBy");
    await bad("/v1/metrics/queues?groupBy=customer", "query.groupBy");
    await bad("/v1/metrics/api?groupBy=pool", "query.groupBy");
    await bad("/v1/metrics/costs?groupBy=route", "query.groupBy");
    await bad("/v1/metrics/costs?from=yesterday", "query.from");
    await bad("/v1/metrics/workers?to=2025-13-01T00:00:00Z", "query.to");
    await bad("/v1/metrics/reliability?from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z", "query.from");
    await bad("/v1/metrics/runs?customerId=Not%20A%20Name", "query.customerId");
    await bad("/v1/metrics/runs?from=2000-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&bucket=hour", "query.bucket");
    await bad("/v1/insights/cost-drivers?limit=0", "query.limit");
    await bad("/v1/alerts?state=open", "query.state");
    await bad("/v1/alerts?kind=DROP%20TABLE", "query.kind");
  });

  it("need a key; /metrics needs the admin key", async () => {
    expect((await api("GET", "/v1/metrics/runs", { key: null })).status).toBe(401);
    expect((await api("GET", "/metrics", { key: null })).status).toBe(401);
    expect((await api("GET", "/metrics", { key: acmeKey })).status).toBe(403);
  });
});
