import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { controllerName, poolControllerStub, slotKey, type PoolControllerApi } from "../../durable-objects/pool/rpc";
import { SlotReports } from "../../src/data-plane/slot-reports";
import { POOLS } from "../../src/config/pools";
import { ScalingPolicySchema } from "../../src/domain/scaling-policy";
import { forgetConsumerRefs } from "../../src/lib/cloudflare-queues";
import { registerStepType } from "../../src/steps/registry";
import { api, newCustomer, synthetic, waitForRun } from "../helpers";
import { finishedRuns, floodCustomer, getPoolView, poolSettled, setPolicy, submitMany } from "../helpers-pools";

// Counts the chains that are really executing at once (not what the controller believes), per pool.
const executing: Record<string, number> = {};
const peak: Record<string, number> = {};
const executions = new Map<string, number>();
registerStepType({
  type: "pool-probe",
  description: "counts concurrent executions, waits durationMs",
  configSchema: z.object({ durationMs: z.number().int().min(0), pool: z.string() }).strict(),
  async execute(config, ctx) {
    executing[config.pool] = (executing[config.pool] ?? 0) + 1;
    peak[config.pool] = Math.max(peak[config.pool] ?? 0, executing[config.pool]!);
    executions.set(ctx.runId, (executions.get(ctx.runId) ?? 0) + 1);
    try {
      const until = Date.now() + config.durationMs;
      while (Date.now() < until && !ctx.signal.aborted) await new Promise((r) => setTimeout(r, 20));
      return { ok: true, output: { ran: true } };
    } finally {
      executing[config.pool] = (executing[config.pool] ?? 1) - 1;
    }
  },
});

const probe = (pool: string, durationMs: number) => ({ projectId: "p", pool, steps: [{ name: "probe", type: "pool-probe", config: { durationMs, pool } }] });

/** Runs `fn` inside shard 0 of the pool's controller (loosely typed: the stub's RPC types recurse too deeply for the compiler). */
const inController = <T>(pool: string, fn: (instance: any, state: DurableObjectState) => T | Promise<T>): Promise<T> =>
  (runInDurableObject as any)(env.POOL_CONTROLLER.get(env.POOL_CONTROLLER.idFromName(controllerName(pool, 0))), fn);

describe("a burst on a pool", () => {
  it("raises the desired concurrency, in-flight never exceeds it, then the pool goes back to zero with no alarm left; every decision is in D1", async () => {
    const customer = await floodCustomer("burst");
    await setPolicy("standard", { targetDepth: 1, maxConcurrency: 4, cooldownUpMs: 0, cooldownDownMs: 600, stabilizationWindowMs: 300 });
    const t0 = Date.now();
    const observed: { depth: number; inFlight: number; desired: number }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = await getPoolView("standard");
        observed.push({ depth: p.depth, inFlight: p.inFlight, desired: p.desiredConcurrency });
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    const ids = await submitMany(customer.key, 24, () => probe("standard", 150), 8);
    await finishedRuns(ids);
    watching = false;
    await watcher;

    // The controller never let more chains run than it wanted, and neither did the consumers.
    for (const o of observed) expect(o.inFlight).toBeLessThanOrEqual(o.desired);
    expect(Math.max(...observed.map((o) => o.desired))).toBe(4);
    expect(Math.max(...observed.map((o) => o.depth))).toBeGreaterThan(0);
    expect(peak.standard).toBeGreaterThanOrEqual(2);
    expect(peak.standard).toBeLessThanOrEqual(4);

    // Drained: after the down-cooldown the pool scales to zero and keeps no timer.
    const settled = await poolSettled("standard", 0);
    await vi.waitUntil(async () => (await getPoolView("standard")).nextTimerAt === null, { timeout: 10_000, interval: 100 });
    expect(settled.recentDecisions[0]).toMatchObject({ to: 0, reason: "scale to zero: nothing waiting or running" });
    expect(await inController("standard", (_instance, state) => state.storage.getAlarm())).toBeNull();

    // Every decision, with the depth it saw, in D1: activation up to 4, and the way back to 0.
    const { results: decisions } = await env.DB.prepare("SELECT * FROM pool_scaling_decisions WHERE pool = 'standard' AND at >= ? ORDER BY at").bind(t0).all<any>();
    expect(decisions.length).toBeGreaterThanOrEqual(2);
    expect(decisions.some((d) => d.from_concurrency === 0 && d.to_concurrency > 0 && d.depth + d.in_flight > 0)).toBe(true);
    expect(decisions.some((d) => d.to_concurrency === 4)).toBe(true);
    expect(decisions.at(-1)).toMatchObject({ to_concurrency: 0, depth: 0, in_flight: 0 });
    for (const d of decisions) expect(typeof d.reason).toBe("string");

    // The series shows the burst and the return to zero, and nothing is sampled once idle.
    const series = await api("GET", `/v1/pools/standard/series?from=${new Date(t0).toISOString()}`);
    expect(series.status).toBe(200);
    expect(series.body.points.length).toBeGreaterThan(1);
    expect(Math.max(...series.body.points.map((p: any) => p.desired))).toBe(4);
    expect(series.body.points.at(-1).desired).toBe(0);
    for (const p of series.body.points) expect(p.inFlight).toBeLessThanOrEqual(p.desired);
    expect(series.body.decisions.length).toBe(decisions.length);
    const samples = await env.DB.prepare("SELECT COUNT(*) AS n FROM pool_concurrency_samples WHERE pool = 'standard'").first<{ n: number }>();
    await new Promise((r) => setTimeout(r, 800));
    const later = await env.DB.prepare("SELECT COUNT(*) AS n FROM pool_concurrency_samples WHERE pool = 'standard'").first<{ n: number }>();
    expect(later!.n).toBe(samples!.n);

    // The minute's metrics sample (GET /v1/metrics/queues, the OpenMetrics gauges) takes the controller's figures.
    const { samplePools } = await import("../../src/services/pool-sampler");
    const minute = (await samplePools(env)).find((s) => s.pool === "standard")!;
    expect(minute).toMatchObject({ source: "controller", depth: 0, inFlight: 0, desiredConcurrency: 0 });
  });

  it("the minute's metrics sample sums the controller shards' newest samples, and falls back to the run index when they are stale", async () => {
    const { samplePools } = await import("../../src/services/pool-sampler");
    const now = Date.now() + 3_600_000; // after every sample the other tests wrote
    const row = env.DB.prepare("INSERT INTO pool_concurrency_samples (pool, shard, at, depth, in_flight, desired, utilization, processing_rate) VALUES ('heavy', ?, ?, ?, ?, ?, ?, 1)");
    await env.DB.batch([
      row.bind(0, now - 30_000, 9, 1, 1, 0.2), // shard 0's older sample: superseded
      row.bind(0, now - 10_000, 5, 3, 4, 0.75),
      row.bind(1, now - 20_000, 2, 2, 2, 1),
    ]);
    const heavy = (await samplePools(env, now)).find((s) => s.pool === "heavy")!;
    expect(heavy).toMatchObject({ source: "controller", depth: 7, inFlight: 5, desiredConcurrency: 6, concurrency: POOLS.heavy!.maxConcurrency });
    expect(heavy.utilization).toBeCloseTo((0.75 * 4 + 1 * 2) / 6, 6);
    const stale = (await samplePools(env, now + 180_000)).find((s) => s.pool === "heavy")!;
    expect(stale).toMatchObject({ source: "cron", desiredConcurrency: null });
    await env.DB.prepare("DELETE FROM pool_concurrency_samples WHERE pool = 'heavy' AND at >= ?").bind(now - 60_000).run();
  });

  it("a run type names its pool: heavy runs go through the heavy pool's controller and queue", async () => {
    const customer = await floodCustomer("heavy");
    const put = await api("PUT", "/v1/run-types/crunch", { body: { pool: "heavy", steps: [{ name: "probe", type: "pool-probe", config: { durationMs: 50, pool: "heavy" } }] } });
    expect(put.status).toBe(201);
    const created = await api("POST", "/v1/runs", { key: customer.key, body: { projectId: "p", runType: "crunch" } });
    expect(created.body.run.pool).toBe("heavy");
    const run = await waitForRun(customer.key, created.body.run.id, (r) => r.status === "succeeded");
    expect(run.pool).toBe("heavy");
    expect(peak.heavy).toBe(1);
    const heavy = await getPoolView("heavy");
    expect(heavy.recentDecisions.some((d: any) => d.from === 0 && d.to === 1)).toBe(true);
    expect(heavy.queue).toBe("runplane-jobs-heavy");
  });
});

describe("waiting for admission", () => {
  it("with the default timers, a dispatch that waits 35 s for a slot costs its run nothing: no resend, no failure, no retry, one start; the long chain keeps its slot by renewing it", async () => {
    const customer = await newCustomer("wait");
    await setPolicy("standard", { targetDepth: 1, minConcurrency: 0, maxConcurrency: 1, cooldownUpMs: 0, cooldownDownMs: 500, stabilizationWindowMs: 0 });
    const hog = await api("POST", "/v1/runs", { key: customer.key, body: probe("standard", 35_000) });
    await vi.waitUntil(async () => (await getPoolView("standard")).inFlight === 1, { timeout: 5_000, interval: 50 });
    const waiter = await api("POST", "/v1/runs", { key: customer.key, body: { projectId: "p", steps: [synthetic("after", { durationMs: 10 })] } });
    const waiterId = waiter.body.run.id;
    await vi.waitUntil(async () => (await getPoolView("standard")).depth === 1, { timeout: 5_000, interval: 50 });

    // Past the slot's lease (30 s): the hog's chain renewed its slot, the waiter is still waiting, alone.
    await new Promise((r) => setTimeout(r, 31_500));
    const during = await getPoolView("standard");
    expect(during).toMatchObject({ depth: 1, inFlight: 1, desiredConcurrency: 1 });
    expect((await api("GET", `/v1/runs/${waiterId}`, { key: customer.key })).body.run).toMatchObject({ status: "queued" });

    const done = await waitForRun(customer.key, waiterId, (r) => r.status === "succeeded", 20_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", attempts: 1 });
    expect((await waitForRun(customer.key, hog.body.run.id, (r) => r.status === "succeeded", 10_000)).steps[0].attempts).toBe(1);
    expect(executions.get(hog.body.run.id)).toBe(1);
    const after = (await api("GET", `/v1/runs/${waiterId}/events`, { key: customer.key })).body.events.map((e: any) => e.type);
    expect(after.filter((t: string) => t === "step.started")).toHaveLength(1);
    for (const type of ["step.redispatched", "step.failed", "step.retry_scheduled", "lease.expired"]) expect(after).not.toContain(type);
    const hogEvents = (await api("GET", `/v1/runs/${hog.body.run.id}/events`, { key: customer.key })).body.events.map((e: any) => e.type);
    for (const type of ["step.redispatched", "step.failed", "lease.expired"]) expect(hogEvents).not.toContain(type);
  }, 70_000);
});

describe("the pools API", () => {
  it("every pool's default policy is valid", () => {
    for (const pool of Object.values(POOLS)) expect(ScalingPolicySchema.safeParse(pool.defaultPolicy).success, pool.name).toBe(true);
  });

  it("lists every pool with its figures; a customer key is 403; an unknown pool is 404", async () => {
    const list = await api("GET", "/v1/pools");
    expect(list.status).toBe(200);
    expect(list.body.pools.map((p: any) => p.name)).toEqual(Object.keys(POOLS));
    for (const p of list.body.pools) {
      for (const field of ["name", "depth", "inFlight", "desiredConcurrency", "utilization", "processingRate", "policy", "recentDecisions"]) expect(p, field).toHaveProperty(field);
    }
    const customer = await newCustomer("nosy");
    for (const [method, path] of [["GET", "/v1/pools"], ["GET", "/v1/pools/standard"], ["GET", "/v1/pools/standard/series"], ["PUT", "/v1/pools/standard/policy"]] as const) {
      const res = await api(method, path, { key: customer.key, body: method === "PUT" ? { maxConcurrency: 1 } : undefined });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
    expect((await api("GET", "/v1/pools/gpu")).status).toBe(404);
    expect((await api("PUT", "/v1/pools/gpu/policy", { body: POOLS.standard!.defaultPolicy })).status).toBe(404);
    expect((await api("GET", "/v1/pools/Not_A_Name")).status).toBe(400);
  });

  it("PUT policy: a GET's policy is a valid body; bad knobs are 400 naming each field, and change nothing", async () => {
    const before = await getPoolView("heavy");
    const same = await api("PUT", "/v1/pools/heavy/policy", { body: before.policy });
    expect(same.status).toBe(200);
    expect(same.body.pool.policy).toEqual(before.policy);

    const bad = async (body: unknown, field: string) => {
      const res = await api("PUT", "/v1/pools/heavy/policy", { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details.map((d: any) => d.field)).toContain(field);
    };
    const base = { scaleUpThreshold: 1, scaleDownThreshold: 0, targetDepth: 2, cooldownUpMs: 1000, cooldownDownMs: 1000, minConcurrency: 0, maxConcurrency: 5 };
    await bad({ ...base, maxConcurrency: 0 }, "maxConcurrency");
    await bad({ ...base, minConcurrency: 6 }, "maxConcurrency");
    await bad({ ...base, targetDepth: -1 }, "targetDepth");
    await bad({ ...base, cooldownUpMs: "soon" }, "cooldownUpMs");
    await bad({ ...base, scaleDownThreshold: 3 }, "scaleDownThreshold");
    await bad({ ...base, scheduling: "random" }, "scheduling");
    await bad({ ...base, utilizationLow: 0.95 }, "utilizationHigh");
    await bad({ ...base, surprise: 1 }, "(root)");
    const { maxConcurrency: _, ...missing } = base;
    await bad(missing, "maxConcurrency");
    expect((await getPoolView("heavy")).policy).toEqual(before.policy);

    // The required seven with the rest left to the pool's defaults.
    const ok = await api("PUT", "/v1/pools/heavy/policy", { body: base });
    expect(ok.status).toBe(200);
    expect(ok.body.pool.policy).toEqual({ ...POOLS.heavy!.defaultPolicy, ...base });
    await api("PUT", "/v1/pools/heavy/policy", { body: before.policy });
  });

  it("series: from after to is a 400 naming query.from; a range past 31 days too", async () => {
    const now = Date.now();
    const res = await api("GET", `/v1/pools/standard/series?from=${new Date(now).toISOString()}&to=${new Date(now - 1000).toISOString()}`);
    expect(res.status).toBe(400);
    expect(res.body.error.details[0].field).toBe("query.from");
    expect((await api("GET", `/v1/pools/standard/series?from=${new Date(now - 40 * 86_400_000).toISOString()}`)).status).toBe(400);
    expect((await api("GET", "/v1/pools/standard/series?from=yesterday")).status).toBe(400);
  });
});

describe("pushing decisions to Cloudflare", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    forgetConsumerRefs();
  });

  it("with CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID set, a decision sets the consumer's max_concurrency (fetch mocked)", async () => {
    const calls: { method: string; url: string; body: any }[] = [];
    const realFetch = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = input instanceof Request ? input.url : String(input);
      if (!url.startsWith("https://api.cloudflare.com/")) return realFetch(input, init);
      calls.push({ method: init?.method ?? "GET", url, body: init?.body ? JSON.parse(String(init.body)) : null });
      const ok = (result: unknown) => new Response(JSON.stringify({ success: true, errors: [], messages: [], result }), { headers: { "content-type": "application/json" } });
      if (url.includes("/queues?")) return ok([{ queue_id: "q-std", queue_name: "runplane-jobs-standard" }, { queue_id: "q-heavy", queue_name: "runplane-jobs-heavy" }]);
      if (url.endsWith("/queues/q-heavy/consumers")) {
        return ok([{ consumer_id: "c-heavy", type: "worker", script_name: "runplane-heavy", dead_letter_queue: "runplane-dlq-heavy", settings: { batch_size: 1, max_retries: 100, max_wait_time_ms: 0, max_concurrency: 10 } }]);
      }
      if (init?.method === "PUT") return ok({ consumer_id: "c-heavy" });
      return new Response(JSON.stringify({ success: false, errors: [{ code: 7003, message: "no route" }] }), { status: 404 });
    });
    await inController("heavy", (instance) => {
      instance.env = { ...instance.env, CLOUDFLARE_API_TOKEN: "test-token", CLOUDFLARE_ACCOUNT_ID: "acct123" };
    });
    try {
      await setPolicy("heavy", { targetDepth: 1, scaleUpThreshold: 0, maxConcurrency: 3, cooldownUpMs: 0, cooldownDownMs: 200, stabilizationWindowMs: 0 });
      const customer = await floodCustomer("push");
      const ids = await submitMany(customer.key, 3, () => probe("heavy", 300), 3);
      await finishedRuns(ids);
      await vi.waitUntil(() => calls.some((c) => c.method === "PUT"), { timeout: 10_000, interval: 50 });
      const put = calls.find((c) => c.method === "PUT")!;
      expect(put.url).toBe("https://api.cloudflare.com/client/v4/accounts/acct123/queues/q-heavy/consumers/c-heavy");
      // The whole consumer goes back (the PUT replaces it), max_concurrency changed: heavy carries one chain per invocation.
      expect(put.body).toMatchObject({ type: "worker", script_name: "runplane-heavy", dead_letter_queue: "runplane-dlq-heavy", settings: { batch_size: 1, max_retries: 100, max_wait_time_ms: 0 } });
      expect(put.body.settings.max_concurrency).toBeGreaterThanOrEqual(1);
      expect(put.body.settings.max_concurrency).toBeLessThanOrEqual(3);
      // Back to zero: the consumer is set to its floor of 1 (Cloudflare's minimum; nothing is admitted at 0 anyway).
      await poolSettled("heavy", 0);
      await vi.waitUntil(() => calls.filter((c) => c.method === "PUT").at(-1)!.body.settings.max_concurrency === 1, { timeout: 10_000, interval: 50 });
      for (const c of calls) expect(c.url.startsWith("https://api.cloudflare.com/client/v4/accounts/acct123/")).toBe(true);
    } finally {
      await inController("heavy", (instance) => {
        const { CLOUDFLARE_API_TOKEN: _t, CLOUDFLARE_ACCOUNT_ID: _a, ...rest } = instance.env;
        instance.env = rest;
      });
    }
  });
});

describe("the controller's RPCs", () => {
  afterEach(() => vi.restoreAllMocks());

  it("are idempotent by key; a run's new dispatch frees the slot its earlier one held (a crashed consumer's); bad input is refused", async () => {
    await setPolicy("heavy", { targetDepth: 1, scaleUpThreshold: 0, minConcurrency: 0, maxConcurrency: 1, cooldownUpMs: 0, cooldownDownMs: 200, stabilizationWindowMs: 0 });
    // Messages of this made-up run are swallowed, as if their consumer had crashed: their slots stay held.
    const proto = Object.getPrototypeOf(env.JOBS_HEAVY) as Queue;
    const original = proto.sendBatch;
    const swallowed: any[] = [];
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (list.every((m) => (m.body as any)?.runId === "run_ghost")) {
        swallowed.push(...list.map((m) => m.body));
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0, oldestMessageTimestamp: new Date(0) } } } as unknown as QueueSendBatchResponse;
      }
      return original.call(this, list, options);
    });
    const stub = poolControllerStub(env, "heavy", 0);
    const dispatch = (n: number) => ({ runId: "run_ghost", stepIndex: 0, dispatch: n, customerId: "ghost", priority: "normal" as const, enqueuedAt: Date.now() });
    expect(await stub.enqueue({ pool: "heavy", shard: 0, dispatches: [dispatch(1)] })).toEqual({ accepted: 1, resent: 0, released: 1 });
    // The same dispatch again: its message is sent again on the same slot, nothing new is admitted.
    expect(await stub.enqueue({ pool: "heavy", shard: 0, dispatches: [dispatch(1)] })).toEqual({ accepted: 0, resent: 1, released: 0 });
    expect((await stub.status({ pool: "heavy", shard: 0 })).inFlight).toBe(1);
    // The run's lease on it expired and it dispatched again: the dead chain's slot is given to the new dispatch.
    expect(await stub.enqueue({ pool: "heavy", shard: 0, dispatches: [dispatch(2)] })).toEqual({ accepted: 1, resent: 0, released: 1 });
    expect(await stub.status({ pool: "heavy", shard: 0 })).toMatchObject({ inFlight: 1, depth: 0 });
    expect(swallowed.map((m) => m.dispatch)).toEqual([1, 1, 2]);
    expect(swallowed[0]).toEqual({ v: 1, runId: "run_ghost", stepIndex: 0, dispatch: 1, pool: "heavy", shard: 0 });
    // One report may give back several slots: the superseded one was already given back, the live one is.
    const done = (key: string) => ({ key, busyMs: 5, steps: 1 });
    expect(await stub.done({ pool: "heavy", shard: 0, slots: [done("run_ghost:0:1"), done("run_ghost:0:2")] })).toEqual({ ok: true, known: [false, true] });
    expect(await stub.done({ pool: "heavy", shard: 0, slots: [done("run_ghost:0:2")] })).toEqual({ ok: true, known: [false] });
    expect((await stub.status({ pool: "heavy", shard: 0 })).inFlight).toBe(0);
    // zod at the boundary: a malformed call is refused, and changes nothing.
    // (Settled with then: handing the RPC promise itself to expect().rejects leaves a copy of
    // its rejection unhandled in the pool's runner.)
    const refusal = (call: Promise<unknown>) => call.then(() => "accepted", (e: Error) => e.message);
    expect(await refusal(stub.enqueue({ pool: "heavy", shard: 0, dispatches: [{ ...dispatch(3), priority: "urgent" as any }] }))).toMatch(/priority/);
    expect(await refusal(stub.done({ pool: "heavy", shard: 0, slots: [{ key: "", busyMs: -1, steps: 0 }] }))).toMatch(/key|busyMs/);
    expect(await refusal(stub.done({ pool: "heavy", shard: 0, slots: [] }))).toMatch(/slots/);
    expect((await stub.status({ pool: "heavy", shard: 0 })).depth).toBe(0);
    await poolSettled("heavy", 0);
  });

  it("a consumer batch's chains that end together give back their slots in one request; a lone chain's goes at once", async () => {
    await setPolicy("heavy", { targetDepth: 1, scaleUpThreshold: 0, minConcurrency: 0, maxConcurrency: 5, cooldownUpMs: 0, cooldownDownMs: 200, stabilizationWindowMs: 0 });
    // The made-up runs' messages are not delivered: this test plays their consumer.
    const proto = Object.getPrototypeOf(env.JOBS_HEAVY) as Queue;
    const original = proto.sendBatch;
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (list.every((m) => String((m.body as any)?.runId).startsWith("run_pack"))) return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0, oldestMessageTimestamp: new Date(0) } } } as unknown as QueueSendBatchResponse;
      return original.call(this, list, options);
    });
    const stub = poolControllerStub(env, "heavy", 0);
    const runs = Array.from({ length: 6 }, (_, i) => `run_pack${i}`);
    const dispatches = runs.map((runId) => ({ runId, stepIndex: 0, dispatch: 1, customerId: "pack", priority: "normal" as const, enqueuedAt: Date.now() }));
    expect(await stub.enqueue({ pool: "heavy", shard: 0, dispatches: dispatches.slice(0, 5) })).toEqual({ accepted: 5, resent: 0, released: 5 });
    // The real controller, behind a namespace that counts the slots of each done request.
    const requests: number[] = [];
    const counting = {
      ...env,
      POOL_CONTROLLER: {
        idFromName: (name: string) => env.POOL_CONTROLLER.idFromName(name),
        get: (id: DurableObjectId) => {
          const real = env.POOL_CONTROLLER.get(id) as unknown as PoolControllerApi;
          return { done: (input: Parameters<PoolControllerApi["done"]>[0]) => (requests.push(input.slots.length), real.done(input)) };
        },
      },
    } as unknown as Env;
    const reports = new SlotReports(counting, "heavy");
    const done = (runId: string) => reports.done(0, { key: slotKey(runId, 0, 1), busyMs: 10, steps: 1 });
    // Five chains end at once: the first report goes alone, the four that came while it was on its way go together.
    await Promise.all(runs.slice(0, 5).map(done));
    expect(requests).toEqual([1, 4]);
    expect(await stub.status({ pool: "heavy", shard: 0 })).toMatchObject({ inFlight: 0, depth: 0 });
    // A chain that ends alone later is not held back for company.
    expect(await stub.enqueue({ pool: "heavy", shard: 0, dispatches: [dispatches[5]!] })).toMatchObject({ released: 1 });
    await done(runs[5]!);
    expect(requests).toEqual([1, 4, 1]);
    expect((await stub.status({ pool: "heavy", shard: 0 })).inFlight).toBe(0);
    await poolSettled("heavy", 0);
  });
});

describe("a pool with several controller shards (POOL_SHARDS)", () => {
  it("splits a PUT policy's bounds over the shards, and GET sums them back: the pool's total stays within the policy", async () => {
    const { PoolsService } = await import("../../src/services/pools-service");
    const { drizzle } = await import("drizzle-orm/d1");
    const twoShards = new PoolsService({ ...env, POOL_SHARDS: JSON.stringify({ heavy: 2 }) } as Env, drizzle(env.DB));
    const before = await getPoolView("heavy");
    const policy = { ...before.policy, minConcurrency: 0, maxConcurrency: 6 };
    const saved = await twoShards.setPolicy("heavy", policy);
    expect(saved).toMatchObject({ shards: 2, policy: { maxConcurrency: 6 } });
    for (const shard of [0, 1]) expect((await poolControllerStub(env, "heavy", shard).status({ pool: "heavy", shard })).policy.maxConcurrency).toBe(3);
    const viewed = await twoShards.get("heavy");
    expect(viewed).toMatchObject({ shards: 2, policy: { minConcurrency: 0, maxConcurrency: 6 } });
    // Back to one shard, as the rest of the suite expects.
    await api("PUT", "/v1/pools/heavy/policy", { body: before.policy });
  });
});

describe("a scheduler fault", () => {
  afterEach(() => vi.restoreAllMocks());

  it("does not hold a step up: when the controller cannot be reached the dispatch goes to the queue directly, unadmitted", async () => {
    const { PoolController } = await import("../../durable-objects/pool/pool-controller");
    const customer = await newCustomer("fault");
    const original = PoolController.prototype.enqueue;
    vi.spyOn(PoolController.prototype, "enqueue").mockImplementation(async function (this: any, input: any) {
      if (input.dispatches.every((d: any) => d.customerId === customer.id)) throw new Error("controller unavailable (injected)");
      return original.call(this, input);
    });
    const created = await api("POST", "/v1/runs", { key: customer.key, body: { projectId: "p", steps: [synthetic("a"), synthetic("b")] } });
    const run = await waitForRun(customer.key, created.body.run.id, (r) => r.status === "succeeded");
    expect(run.steps.map((s: any) => s.attempts)).toEqual([1, 1]);
  });
});

describe("retention", () => {
  it("the cron sweeps old samples and decisions by their pool's index", async () => {
    const { sweepRetention } = await import("../../src/data-plane/retention-sweep");
    const old = Date.now() - 100 * 86_400_000;
    await env.DB.prepare("INSERT INTO pool_concurrency_samples (pool, shard, at, depth, in_flight, desired, utilization, processing_rate) VALUES ('standard', 0, ?, 1, 1, 1, 0.5, 1)").bind(old).run();
    await env.DB.prepare("INSERT INTO pool_scaling_decisions (id, pool, shard, at, from_concurrency, to_concurrency, reason, depth, in_flight, utilization, processing_rate) VALUES ('standard:0:old', 'standard', 0, ?, 0, 1, 'x', 1, 0, NULL, 0)").bind(old).run();
    const deleted = await sweepRetention(env);
    expect(deleted).toMatchObject({ "pool_concurrency_samples (standard)": 1, "pool_scaling_decisions (standard)": 1 });
  });
});
