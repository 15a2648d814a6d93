/**
 * The money path, end to end against real D1, Durable Objects and Queues: every cost a run
 * causes is counted once in its customer's ledger and reaches D1, whatever fails in between;
 * hard budgets hold each step's worst case and let every hold go; real spend is billed even
 * when the platform refuses the report's state change.
 */
import { abortAllDurableObjects, createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { CustomerLedger } from "../../durable-objects/ledger/customer-ledger";
import { ledgerStub } from "../../durable-objects/ledger/rpc";
import { RunCoordinator } from "../../durable-objects/run/run-coordinator";
import { runStub } from "../../durable-objects/run/rpc";
import { costNano } from "../../src/domain/pricing";
import worker from "../../src/index";
import { registerStepType } from "../../src/steps/registry";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const realFetch = globalThis.fetch;
afterEach(() => vi.restoreAllMocks());

// gpt-4o-mini in the seeded price table, nano-USD per million tokens: $0.15 input, $0.60 output.
const MINI = { input: 150_000_000n, output: 600_000_000n };
const miniCost = (input: number, output: number) => costNano(BigInt(input), MINI.input) + costNano(BigInt(output), MINI.output);
const mini = (inputTokens: number, outputTokens: number) => ({ model: "gpt-4o-mini", inputTokens, outputTokens });
const fastRetry = (maxAttempts: number) => ({ maxAttempts, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ALERTS = "http://127.0.0.1:9/alerts";

async function budgetedCustomer(limitUsd: string) {
  const id = `money-${Math.random().toString(36).slice(2, 10)}`;
  const res = await api("POST", "/v1/customers", { body: { id, name: `Budgeted ${id}`, budget: { monthlyLimitUsd: limitUsd, softThresholds: [] } } });
  expect(res.status).toBe(201);
  return { id, key: res.body.apiKey as string };
}

const runObject = (runId: string) => env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId));

async function costOf(key: string, runId: string) {
  const res = await api("GET", `/v1/runs/${runId}/cost`, { key });
  expect(res.status).toBe(200);
  return res.body;
}

/** The run's cost once every record is counted by the ledger (and `until` holds). */
async function settledCost(key: string, runId: string, until: (cost: any) => boolean = () => true, timeout = 10_000) {
  return vi.waitUntil(async () => {
    const cost = await costOf(key, runId);
    return cost.settled && until(cost) ? cost : false;
  }, { timeout, interval: 50 });
}

const spendOf = async (customerId: string) => BigInt((await ledgerStub(env, customerId).summary()).spendNanoUsd);
const customerSpend = async (customerId: string) => (await api("GET", `/v1/customers/${customerId}`)).body.customer.spend;

/** Σ nano_usd in D1's cost_rollups, exact (as text), or null when there is no row. */
async function d1Sum(column: "run_id" | "customer_id", value: string): Promise<bigint | null> {
  const row = await env.DB.prepare(`SELECT CAST(SUM(nano_usd) AS TEXT) AS n FROM cost_rollups WHERE ${column} = ?`).bind(value).first<{ n: string | null }>();
  return row?.n == null ? null : BigInt(row.n);
}

async function waitForD1(column: "run_id" | "customer_id", value: string, expected: bigint, timeout = 8_000) {
  await vi.waitUntil(async () => (await d1Sum(column, value)) === expected, { timeout, interval: 50 });
}

/**
 * What the run object has metered but not yet billed in a record (its journal's overhead row):
 * for a run that has ended, nothing may stay there, or it is never billed.
 */
async function unbilledOverhead(runId: string): Promise<Record<string, number>> {
  return runInDurableObject(runObject(runId), (_instance, state) => {
    const row = state.storage.sql.exec<{ overhead: string }>("SELECT overhead FROM cost_state").toArray()[0];
    const overhead = row ? (JSON.parse(row.overhead) as Record<string, number>) : {};
    return Object.fromEntries(Object.entries(overhead).filter(([, v]) => v !== 0));
  });
}
const nothingUnbilled = (runId: string) => vi.waitUntil(async () => Object.keys(await unbilledOverhead(runId)).length === 0, { timeout: 5000, interval: 50 });

const sumLines = (cost: any) => cost.lines.reduce((sum: bigint, l: any) => sum + BigInt(l.nanoUsd), 0n);
const lineOf = (cost: any, meter: string, model: string | null = null) => cost.lines.find((l: any) => l.meter === meter && l.model === model);

/** Waits until every run satisfies `predicate`, polling the unfinished ones one after another (50 pollers at once would load the isolate they share with the platform). */
async function waitForRuns(key: string, runIds: readonly string[], predicate: (run: any) => boolean, timeout = 20_000) {
  const done = new Map<string, any>();
  await vi.waitUntil(async () => {
    for (const id of runIds) {
      if (done.has(id)) continue;
      const run = (await api("GET", `/v1/runs/${id}`, { key })).body.run;
      if (predicate(run)) done.set(id, run);
    }
    return done.size === runIds.length;
  }, { timeout, interval: 100 });
  return runIds.map((id) => done.get(id));
}

async function events(key: string, runId: string) {
  return (await api("GET", `/v1/runs/${runId}/events`, { key })).body.events as any[];
}

/** A fake OpenAI-compatible endpoint (the model vendor is outside the platform); `hold` may keep a call waiting. */
function fakeVendors(options: { hold?: (call: number) => Promise<void> | void; usage?: { prompt_tokens: number; completion_tokens: number } } = {}) {
  let calls = 0;
  const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url === ALERTS) return new Response(null, { status: 204 });
    if (url.startsWith("https://llm.example/")) {
      const call = ++calls;
      await options.hold?.(call);
      await sleep(10);
      return Response.json({
        id: `c${call}`,
        model: "gpt-4o-mini-2024",
        choices: [{ message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
        usage: options.usage ?? { prompt_tokens: 100, completion_tokens: 200 },
      });
    }
    if (url.startsWith("https://api.example/")) {
      await sleep(10);
      return Response.json({ ok: true });
    }
    return realFetch(input, init);
  });
  return { spy, calls: () => calls };
}

const llmStep = (name: string, maxTokens: number, timeoutMs: number) => ({
  name,
  type: "llm",
  timeoutMs,
  config: { model: "gpt-4o-mini", baseUrl: "https://llm.example/v1", maxTokens, messages: [{ role: "user", content: "Say hi" }] },
});

/**
 * A worker cut off from the run object: attempt `.1` heartbeats never arrive (as in
 * reliability.test.ts), so its lease expires while it keeps working.
 */
function partitionFirstAttempt() {
  const original = RunCoordinator.prototype.heartbeat;
  vi.spyOn(RunCoordinator.prototype, "heartbeat").mockImplementation(async function (this: RunCoordinator, leaseId: string) {
    if (String(leaseId).endsWith(".1")) return { ok: false, reason: "unreachable" };
    return original.call(this, leaseId);
  });
}

// Step types of this file (the registry is per isolate: names unique to this file).
let lateWorkerDone = false;
registerStepType({
  type: "money-late-usage",
  description: "attempt 1 works 3.5 s and reports 1000/100 gpt-4o-mini tokens; later attempts report 10/1 after 600 ms",
  configSchema: z.object({}).strict(),
  async execute(_config, ctx) {
    if (ctx.attempt === 1) {
      await sleep(3500);
      lateWorkerDone = true;
      return { ok: true, output: "late", usage: [mini(1000, 100)] };
    }
    await sleep(600);
    return { ok: true, output: "fresh", usage: [mini(10, 1)] };
  },
});
/** A call the worker cannot take back once made (the vendor bills it): finishes when the test says, whatever its signal says. */
let finishCall: () => void = () => {};
let callFinished = Promise.resolve();
registerStepType({
  type: "money-uninterruptible",
  description: "waits for the test, ignoring its abort signal, then reports 5000/700 gpt-4o-mini tokens",
  configSchema: z.object({}).strict(),
  async execute() {
    await callFinished;
    return { ok: true, output: "done", usage: [mini(5_000, 700)] };
  },
});
registerStepType({
  type: "absurd-usage",
  description: "reports more output tokens than any model could produce",
  configSchema: z.object({}).strict(),
  async execute() {
    return { ok: true, output: null, usage: [{ model: "gpt-4o", inputTokens: 0, outputTokens: 1e15 }] };
  },
});

describe("cost delivery survives failures", () => {
  it("a run that finished while its ledger was down, then crashed, is billed exactly once after it wakes", async () => {
    const customer = await newCustomer("crash");
    const down = vi.spyOn(CustomerLedger.prototype, "record").mockRejectedValue(new Error("ledger down"));
    const usages: [number, number][] = [[1234, 567], [2000, 10], [1, 999]];
    const created = await createRun(customer.key, { steps: usages.map(([i, o], n) => synthetic(`s${n}`, { usage: mini(i, o) })) });
    expect(created.status).toBe(202);
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    await vi.waitUntil(() => down.mock.calls.length > 0, { timeout: 5000 });

    // Checkpointed, not delivered: the cost is known to the run, not counted by the ledger.
    const before = await costOf(customer.key, runId);
    expect(before.settled).toBe(false);
    expect(before.pendingRecords).toBeGreaterThan(0);
    expect(run.cost.settled).toBe(false);
    expect(await spendOf(customer.id)).toBe(0n);
    expect(await d1Sum("run_id", runId)).toBeNull();

    // A crash: every object's memory is gone; only what it checkpointed remains. The ledger is back.
    // (abortAllDurableObjects, not evictDurableObject: in this workerd, evicting an object that
    // has seen a rejected RPC waits forever for it to drain.)
    const stub = runObject(runId);
    await abortAllDurableObjects();
    vi.restoreAllMocks();
    // Its retry timer survived the crash: fired now (or, if it just fired on its own, already done).
    await runDurableObjectAlarm(stub);
    const cost = await settledCost(customer.key, runId);
    expect(cost.pendingRecords).toBe(0);
    const total = BigInt(cost.totalNanoUsd);
    expect(BigInt(cost.aiNanoUsd)).toBe(usages.reduce((sum, [i, o]) => sum + miniCost(i, o), 0n));
    expect(total).toBe(BigInt(cost.aiNanoUsd) + BigInt(cost.infraNanoUsd));
    expect(sumLines(cost)).toBe(total);
    expect(await spendOf(customer.id)).toBe(total);
    await waitForD1("run_id", runId, total);
    expect(await unbilledOverhead(runId)).toEqual({});

    // Delivered again (a second alarm, a repair): nothing is counted twice.
    await runDurableObjectAlarm(stub);
    expect(await runStub(env, runId).resendCosts()).toEqual({ ok: true });
    expect(await runStub(env, runId).resendCosts()).toEqual({ ok: true });
    await vi.waitUntil(async () => (await ledgerStub(env, customer.id).view()).pendingForD1 === 0, { timeout: 5000 });
    await sleep(300); // the resent rollups pass through the events queue
    const after = await costOf(customer.key, runId);
    expect(after.settled).toBe(true);
    expect(BigInt(after.totalNanoUsd)).toBe(total);
    expect(await spendOf(customer.id)).toBe(total);
    expect(await d1Sum("run_id", runId)).toBe(total);
  });

  it("an acknowledgement lost after the ledger counted is resent and not counted twice", async () => {
    const customer = await newCustomer("ack");
    const original = CustomerLedger.prototype.record;
    let lost = 0;
    vi.spyOn(CustomerLedger.prototype, "record").mockImplementation(async function (this: CustomerLedger, input) {
      const reply = await original.call(this, input);
      // The ledger committed; the reply never reaches the run.
      if (input.customerId === customer.id && lost++ === 0) throw new Error("connection reset after commit");
      return reply;
    });
    const created = await createRun(customer.key, { steps: [synthetic("a", { usage: mini(40_000, 3_000) }), synthetic("b", { usage: mini(7, 7) })] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, isFinished);
    // The run retries after 1 s with the same records (same seqs).
    const cost = await settledCost(customer.key, runId, () => lost >= 2);
    const total = BigInt(cost.totalNanoUsd);
    expect(BigInt(cost.aiNanoUsd)).toBe(miniCost(40_007, 3_007));
    expect(await spendOf(customer.id)).toBe(total);
    await waitForD1("run_id", runId, total);
  });

  it("a forward from the ledger to D1 that fails is retried from the ledger's outbox; a loss beyond it is repaired by reconciliation", async () => {
    const customer = await newCustomer("fwd");
    // The producer binding's class is shared by every binding in this isolate (the ledger's too):
    // the ledger's first send of this customer's rollups fails, everything else goes through.
    const proto = Object.getPrototypeOf(env.EVENTS) as Queue;
    const originalSendBatch = proto.sendBatch;
    let failed = 0;
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (failed === 0 && list.some((m: any) => m.body?.kind === "cost.rollup" && m.body.rollup?.customerId === customer.id)) {
        failed += 1;
        throw new Error("queue unavailable");
      }
      return originalSendBatch.call(this, list, options);
    });
    const created = await createRun(customer.key, { steps: [synthetic("a", { usage: mini(5_000, 500) })] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, isFinished);
    const cost = await settledCost(customer.key, runId);
    const total = BigInt(cost.totalNanoUsd);
    expect(failed).toBe(1);

    // Counted by the ledger, kept in its outbox; D1 is behind.
    expect(await spendOf(customer.id)).toBe(total);
    expect((await ledgerStub(env, customer.id).view()).pendingForD1).toBeGreaterThanOrEqual(1);
    expect(await d1Sum("run_id", runId)).toBeNull();
    // The ledger's alarm sends it again after 1 s.
    await waitForD1("run_id", runId, total, 5000);
    const ledger = (await api("GET", `/v1/customers/${customer.id}/ledger`)).body.ledger;
    expect(ledger.pendingForD1).toBe(0);
    expect(BigInt(ledger.spend.nanoUsd)).toBe(total);
    expect(ledger.reconciliation).toMatchObject({ differenceNanoUsd: 0, repaired: [], unexplained: [], runsCompared: 1 });
    expect(BigInt(ledger.reconciliation.d1NanoUsd)).toBe(total);

    // A loss beyond the outbox (D1 lost the rows): the reconciliation finds and repairs it.
    await env.DB.prepare("DELETE FROM cost_rollups WHERE run_id = ?").bind(runId).run();
    const check = (await api("GET", `/v1/customers/${customer.id}/ledger`)).body.ledger.reconciliation;
    expect(check.repaired).toEqual([{ runId, ledgerNanoUsd: Number(total), d1NanoUsd: 0 }]);
    expect(check.unexplained).toEqual([]);
    expect(BigInt(check.differenceNanoUsd)).toBe(total);
    await waitForD1("run_id", runId, total);
    const again = (await api("GET", `/v1/customers/${customer.id}/ledger`)).body.ledger.reconciliation;
    expect(again).toMatchObject({ differenceNanoUsd: 0, repaired: [], unexplained: [] });
    // Repairing resent the rollup only: nothing was billed or counted again.
    expect(await spendOf(customer.id)).toBe(total);
    expect(BigInt((await costOf(customer.key, runId)).totalNanoUsd)).toBe(total);
  });
});

describe("events dead-letter queue", () => {
  const rollupMessage = (runId: string, customerId: string) => {
    const at = Date.now();
    return {
      kind: "cost.rollup",
      rollup: {
        runId, customerId, projectId: "p", runType: null, pool: "standard", version: 1,
        rows: [{
          hour: at - (at % 3_600_000), model: "gpt-4o-mini", part: 0, inputTokens: "1000", cachedInputTokens: "0", outputTokens: "0", reasoningTokens: "0",
          aiNanoUsd: "150000", infraNanoUsd: "0", nanoUsd: "150000", attempts: 1,
          lines: [{ meter: "input_tokens", model: "gpt-4o-mini", quantity: "1000", nanoUsd: "150000", estimated: false }], priceVersions: ["defaults-2026-11"],
        }],
      },
    };
  };
  const deadEvent = (id: string) =>
    env.DB.prepare("SELECT id, kind, body, received_at, applied_at, error FROM dead_events WHERE id = ?").bind(id).first<{ id: string; kind: string; body: string; received_at: number; applied_at: number | null; error: string | null }>();

  async function deliverToDlq(messages: { id: string; body: unknown }[], attempts = 11) {
    const batch = createMessageBatch("runplane-events-dlq", messages.map((m) => ({ ...m, timestamp: new Date(), attempts })));
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    return getQueueResult(batch, ctx);
  }

  it("keeps every message it receives whole in dead_events, applies what it can once more, and keeps one row per message", async () => {
    const tag = Math.random().toString(36).slice(2, 10);
    const runId = `run_dead_${tag}`;
    const valid = rollupMessage(runId, `cust-dead-${tag}`);
    const validId = `msg-valid-${tag}`;
    const garbageId = `msg-garbage-${tag}`;
    const result = await deliverToDlq([{ id: validId, body: valid }, { id: garbageId, body: { kind: "nope" } }]);
    expect(result.retryMessages).toEqual([]);
    expect([...result.explicitAcks].sort()).toEqual([validId, garbageId].sort());

    const kept = await deadEvent(validId);
    expect(kept).toMatchObject({ kind: "cost.rollup", error: null });
    expect(JSON.parse(kept!.body)).toEqual(valid);
    expect(kept!.applied_at).toEqual(expect.any(Number));
    expect(await d1Sum("run_id", runId)).toBe(150_000n);

    const garbage = await deadEvent(garbageId);
    expect(garbage).toMatchObject({ kind: "nope", applied_at: null });
    expect(JSON.parse(garbage!.body)).toEqual({ kind: "nope" });
    expect(garbage!.error).toMatch(/kind/);

    // Delivered again (the queue's at-least-once delivery): still one row each, applied once.
    const redelivered = await deliverToDlq([{ id: validId, body: valid }, { id: garbageId, body: { kind: "nope" } }], 12);
    expect([...redelivered.explicitAcks].sort()).toEqual([validId, garbageId].sort());
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM dead_events WHERE id IN (?, ?)").bind(validId, garbageId).first<{ n: number }>();
    expect(rows?.n).toBe(2);
    expect((await deadEvent(validId))!.received_at).toBe(kept!.received_at);
    expect((await deadEvent(garbageId))).toMatchObject({ applied_at: null, error: expect.stringMatching(/kind/) });
    expect(await d1Sum("run_id", runId)).toBe(150_000n);
    const rollupRows = await env.DB.prepare("SELECT COUNT(*) AS n FROM cost_rollups WHERE run_id = ?").bind(runId).first<{ n: number }>();
    expect(rollupRows?.n).toBe(1);
  });

  it("a malformed message sent to the events queue is kept in dead_events with what is wrong with it", async () => {
    const marker = 1_000_000 + Math.floor(Math.random() * 1e9);
    await env.EVENTS.send({ kind: "cost.rollup", rollup: { runId: marker } });
    const row = await vi.waitUntil(
      () => env.DB.prepare("SELECT kind, body, applied_at, error FROM dead_events WHERE json_extract(body, '$.rollup.runId') = ?").bind(marker).first<{ kind: string; body: string; applied_at: number | null; error: string | null }>(),
      { timeout: 5000, interval: 50 },
    );
    expect(row.kind).toBe("cost.rollup");
    expect(JSON.parse(row.body)).toEqual({ kind: "cost.rollup", rollup: { runId: marker } });
    expect(row.applied_at).toBeNull();
    expect(row.error).toContain("malformed");
    expect(row.error).toContain("rollup.runId");
  });
});

describe("holds", () => {
  it("a cancelled llm step lets its hold go at once, so an identical run fits; its late usage is billed", async () => {
    const customer = await budgetedCustomer("1");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const vendor = fakeVendors({ hold: (call) => (call === 1 ? gate : undefined) });
    // Holds ≈ $0.60: 1,000,000 output tokens at $0.60/M, plus the attempt's infrastructure.
    const step = llmStep("ask", 1_000_000, 30_000);
    try {
      const first = await createRun(customer.key, { steps: [step] });
      expect(first.status).toBe(202);
      const runId = first.body.run.id;
      await waitForRun(customer.key, runId, (r) => r.steps[0].status === "running");
      await vi.waitUntil(() => vendor.calls() === 1, { timeout: 5000 });
      const held = BigInt((await customerSpend(customer.id)).heldNanoUsd);
      expect(held).toBeGreaterThan(600_000_000n);
      expect(held).toBeLessThan(610_000_000n);

      const cancelled = await api("POST", `/v1/runs/${runId}/cancel`, { key: customer.key });
      expect(cancelled.status).toBe(200);
      // Released by the cancel itself: the worker is still waiting for the vendor.
      await vi.waitUntil(async () => (await customerSpend(customer.id)).heldNanoUsd === 0, { timeout: 2000, interval: 50 });
      expect(vendor.calls()).toBe(1);

      // With the $0.60 still held, a second $0.60 hold would not fit in $1.
      const second = await createRun(customer.key, { steps: [step] });
      expect(second.status).toBe(202);
      // The local queue hands its consumer one batch at a time, so the second run's step starts
      // once the first worker lets go: the vendor answers the first call now.
      release();
      const done = await waitForRun(customer.key, second.body.run.id, isFinished);
      expect(done.status).toBe("succeeded");
      expect(done.failure).toBeUndefined();
      expect(done.steps[0].attempts).toBe(1);

      // The first call's tokens were paid for at the vendor, so they are billed, though the run stays cancelled.
      const late = await settledCost(customer.key, runId, (c) => BigInt(c.aiNanoUsd) > 0n);
      expect(BigInt(late.aiNanoUsd)).toBe(miniCost(100, 200));
      expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run.status).toBe("cancelled");
      await vi.waitUntil(async () => (await customerSpend(customer.id)).heldNanoUsd === 0, { timeout: 2000 });
      const settledSecond = await settledCost(customer.key, second.body.run.id);
      expect(await spendOf(customer.id)).toBe(BigInt(late.totalNanoUsd) + BigInt(settledSecond.totalNanoUsd));
    } finally {
      release();
    }
  });

  it("a worker that stops reporting: when its lease expires its hold is let go, the retry holds its own", async () => {
    partitionFirstAttempt();
    lateWorkerDone = false;
    const customer = await budgetedCustomer("1");
    const created = await createRun(customer.key, { steps: [{ name: "work", type: "money-late-usage", config: {}, timeoutMs: 10_000, retry: fastRetry(3) }] });
    expect(created.status).toBe(202);
    const runId = created.body.run.id;
    // The run's attempts' holds (`<run>:<step>.<dispatch>.<attempt>`), not its creation's or its own allowance.
    const holdsOf = async () => (await ledgerStub(env, customer.id).view()).holds.filter((h) => h.runId === runId && /:\d+\.\d+\.\d+$/.test(h.id)).map((h) => h.id);
    const firstHold = await vi.waitUntil(async () => (await holdsOf()).find((id) => id.endsWith(".1")) ?? false, { timeout: 5000, interval: 20 });
    // The lease expires (LEASE_MS = 2 s): attempt 1's hold is let go while its worker still works.
    await vi.waitUntil(async () => !(await holdsOf()).includes(firstHold), { timeout: 5000, interval: 20 });
    expect(lateWorkerDone).toBe(false);
    expect((await events(customer.key, runId)).some((e) => e.type === "lease.expired" && e.attempt === 1)).toBe(true);
    // The retry holds its own (it starts once the cut-off worker lets go of the local queue's consumer).
    const secondHold = await vi.waitUntil(async () => (await holdsOf()).find((id) => id.endsWith(".2")) ?? false, { timeout: 5000, interval: 20 });
    expect(await holdsOf()).toEqual([secondHold]);

    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].attempts).toBe(2);
    expect((await events(customer.key, runId)).some((e) => e.type === "lease.expired" && e.attempt === 1)).toBe(true);
    await vi.waitUntil(async () => (await ledgerStub(env, customer.id).summary()).heldNanoUsd === "0", { timeout: 3000 });
    // The late worker's report (at 3.5 s) settles nothing and leaves nothing held.
    await vi.waitUntil(() => lateWorkerDone, { timeout: 5000 });
    await settledCost(customer.key, runId, (c) => BigInt(lineOf(c, "input_tokens", "gpt-4o-mini")?.quantity ?? 0) === 1010n);
    expect((await ledgerStub(env, customer.id).summary()).heldNanoUsd).toBe("0");
  });

  it("a hold lapses on its own; a hold that would pass the limit is refused, naming the amounts", async () => {
    const customer = await budgetedCustomer("1");
    const ledger = ledgerStub(env, customer.id);
    const runId = `run_hold_${customer.id}`;
    expect(await ledger.reserve({ holdId: `${runId}:a`, runId, nanoUsd: "500000000", expiresAt: Date.now() + 200 })).toEqual({ ok: true });
    expect((await ledger.summary()).heldNanoUsd).toBe("500000000");
    expect((await customerSpend(customer.id)).heldNanoUsd).toBe(500_000_000);
    await sleep(300);
    // Nothing settled or released it.
    expect((await ledger.summary()).heldNanoUsd).toBe("0");
    expect((await customerSpend(customer.id)).remainingNanoUsd).toBe(1_000_000_000);
    // The lapsed hold no longer stands in the way: $0.90 fits in $1 (it would not beside $0.50).
    expect(await ledger.reserve({ holdId: `${runId}:b`, runId, nanoUsd: "900000000", expiresAt: Date.now() + 60_000 })).toEqual({ ok: true });
    const refused = await ledger.reserve({ holdId: `${runId}:c`, runId, nanoUsd: "200000000", expiresAt: Date.now() + 60_000 });
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.reason).toBe("budget_exceeded");
    expect(refused.message).toContain("1.000000 USD");
    expect(refused.message).toContain("0.900000 USD held");
    expect(refused.message).toContain("0.200000 USD");
    expect((await ledger.summary()).heldNanoUsd).toBe("900000000");
    await ledger.release({ holdIds: [`${runId}:b`] });
    expect((await ledger.summary()).heldNanoUsd).toBe("0");
  });

  it("a hold that takes over another counts the other's amount toward its fit, and the other is gone", async () => {
    const customer = await budgetedCustomer("1");
    const ledger = ledgerStub(env, customer.id);
    const runId = `run_handover_${customer.id}`;
    const hold = (id: string, nanoUsd: string, replaces?: string) => ({ holdId: `${runId}:${id}`, runId, nanoUsd, expiresAt: Date.now() + 60_000, ...(replaces ? { replaces: `${runId}:${replaces}` } : {}) });
    expect(await ledger.reserve(hold("start", "600000000"))).toEqual({ ok: true });
    expect(await ledger.reserve(hold("other", "300000000"))).toEqual({ ok: true });
    // $0.70 beside $0.90 held would pass $1, but it takes over the $0.60 hold: $1.00 fits.
    expect(await ledger.reserve(hold("attempt", "700000000", "start"))).toEqual({ ok: true });
    expect((await ledger.summary()).heldNanoUsd).toBe("1000000000");
    // A repeat is a no-op (idempotent by id), and a hold that replaces nothing held competes as any other.
    expect(await ledger.reserve(hold("attempt", "700000000", "start"))).toEqual({ ok: true });
    const refused = await ledger.reserve(hold("next", "100000000", "start"));
    expect(refused).toMatchObject({ ok: false, reason: "budget_exceeded" });
    expect((await ledger.summary()).heldNanoUsd).toBe("1000000000");
    // Another run's hold is not taken over: $0.05 beside $1.00 held does not fit.
    const foreign = await ledger.reserve({ holdId: "run_other:x", runId: "run_other", nanoUsd: "50000000", expiresAt: Date.now() + 60_000, replaces: `${runId}:other` });
    expect(foreign).toMatchObject({ ok: false, reason: "budget_exceeded" });
    expect((await ledger.summary()).heldNanoUsd).toBe("1000000000");
    await ledger.release({ holdIds: [`${runId}:attempt`, `${runId}:other`] });
    expect((await ledger.summary()).heldNanoUsd).toBe("0");
  });
});

describe("real spend is billed", () => {
  it("usage reported on a superseded lease is billed, once", async () => {
    partitionFirstAttempt();
    lateWorkerDone = false;
    const customer = await newCustomer("late");
    const created = await createRun(customer.key, { steps: [{ name: "work", type: "money-late-usage", config: {}, retry: fastRetry(3) }] });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output).toBe("fresh");
    // Attempt 1 reports 1000/100 after its lease was superseded; attempt 2 reported 10/1.
    await vi.waitUntil(() => lateWorkerDone, { timeout: 8000 });
    const cost = await settledCost(customer.key, runId, (c) => BigInt(lineOf(c, "input_tokens", "gpt-4o-mini")?.quantity ?? 0) === 1010n);
    expect(BigInt(lineOf(cost, "output_tokens", "gpt-4o-mini").quantity)).toBe(101n);
    expect(BigInt(cost.aiNanoUsd)).toBe(miniCost(1010, 101));
    const total = BigInt(cost.totalNanoUsd);
    expect(await spendOf(customer.id)).toBe(total);

    // The same late report again (a retried RPC): refused, and not billed a second time.
    const firstLease = (await events(customer.key, runId)).find((e) => e.type === "step.started" && e.attempt === 1).data.leaseId;
    expect(await runStub(env, runId).completeStep({ leaseId: firstLease, output: "late", usage: [mini(1000, 100)] })).toEqual({ ok: false, reason: "run_finished" });
    await sleep(200);
    const after = await settledCost(customer.key, runId);
    expect(BigInt(after.aiNanoUsd)).toBe(miniCost(1010, 101));
    expect(BigInt(after.totalNanoUsd)).toBe(total);
    expect(await spendOf(customer.id)).toBe(total);
    await waitForD1("run_id", runId, total);
  });

  it("a step's usage reported after its run was cancelled is billed; the run stays cancelled", async () => {
    callFinished = new Promise<void>((resolve) => (finishCall = resolve));
    try {
      const customer = await newCustomer("cancel");
      const created = await createRun(customer.key, { steps: [{ name: "call", type: "money-uninterruptible", config: {} }, synthetic("never")] });
      const runId = created.body.run.id;
      await waitForRun(customer.key, runId, (r) => r.steps[0].status === "running");
      expect((await api("POST", `/v1/runs/${runId}/cancel`, { key: customer.key })).status).toBe(200);
      // A heartbeat or two pass (the worker learns of the cancel), then the call's result arrives.
      await sleep(800);
      finishCall();
      const cost = await settledCost(customer.key, runId, (c) => BigInt(c.aiNanoUsd) > 0n);
      expect(BigInt(cost.aiNanoUsd)).toBe(miniCost(5_000, 700));
      const run = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
      expect(run.status).toBe("cancelled");
      expect(run.steps.map((s: any) => [s.status, s.attempts])).toEqual([["cancelled", 1], ["skipped", 0]]);
      await nothingUnbilled(runId);
      // Once settled, a finished run costs nothing more: the late record went out in one delivery
      // (one overhead record after it), with no second wake-up of the object billed after it.
      await sleep(1500);
      const kinds = await runInDurableObject(runObject(runId), (_instance, state) =>
        state.storage.sql.exec<{ kind: string }>("SELECT kind FROM costs ORDER BY seq").toArray().map((r) => r.kind),
      );
      expect(kinds.slice(kinds.indexOf("late"))).toEqual(["late", "overhead"]);
      const after = await costOf(customer.key, runId);
      expect(after.totalNanoUsd).toBe(cost.totalNanoUsd);
      expect(await spendOf(customer.id)).toBe(BigInt(cost.totalNanoUsd));
    } finally {
      finishCall();
    }
  });
});

describe("hard budgets", () => {
  it("a budget set while a run sleeps applies at its next step: the step is refused before it starts", async () => {
    const customer = await newCustomer("late-budget");
    const created = await createRun(customer.key, {
      steps: [{ name: "nap", type: "sleep", config: { durationMs: 1500 } }, synthetic("think", { usage: mini(1_000_000, 0) }, { timeoutMs: 5000 })],
    });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.status === "waiting");
    const put = await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "0.1", softThresholds: [] } });
    expect(put.status).toBe(200);
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure).toMatchObject({ type: "budget_exceeded", step: "think" });
    expect(run.steps.map((s: any) => [s.name, s.status, s.attempts])).toEqual([
      ["nap", "succeeded", 0],
      ["think", "skipped", 0],
    ]);
    // The refusal's own operations (its checkpoint, the index update) are billed too: nothing is left unbilled.
    await nothingUnbilled(runId);
    const cost = await settledCost(customer.key, runId);
    expect(BigInt(cost.aiNanoUsd)).toBe(0n);
    const spend = await spendOf(customer.id);
    expect(spend).toBe(BigInt(cost.totalNanoUsd));
    expect(spend).toBeLessThan(100_000_000n);
    expect((await ledgerStub(env, customer.id).summary()).heldNanoUsd).toBe("0");
  });

  it("a DLQ retry answers 402 when the budget is spent, and the entry stays open", async () => {
    const customer = await newCustomer("dlq-budget");
    const created = await createRun(customer.key, { steps: [synthetic("bad", { failTimes: 99, failKind: "permanent" })] });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("failed");
    const entry = await vi.waitUntil(async () => (await api("GET", `/v1/dlq?customerId=${customer.id}`)).body.entries.find((e: any) => e.runId === runId) ?? false, { timeout: 8000 });
    await settledCost(customer.key, runId);
    expect(await spendOf(customer.id)).toBeGreaterThan(1n);
    expect((await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "0.000000001", softThresholds: [] } })).status).toBe(200);
    const retried = await api("POST", `/v1/dlq/${entry.id}/retry`);
    expect(retried.status).toBe(402);
    expect(retried.body.error.code).toBe("budget_exhausted");
    expect((await api("GET", `/v1/dlq/${entry.id}`)).body.entry.state).toBe("open");
    expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run.status).toBe("failed");
  });

  it("50 concurrent runs of llm, http and synthetic steps never pass the limit, release every hold, and add up in the ledger and D1", async () => {
    fakeVendors();
    const customer = await budgetedCustomer("0.01");
    const kinds = ["llm", "http", "synthetic"] as const;
    const stepOf = (kind: (typeof kinds)[number]) =>
      kind === "llm"
        ? llmStep("ask", 250, 10_000)
        : kind === "http"
          ? { name: "call", type: "http", timeoutMs: 10_000, config: { url: "https://api.example/v1/thing" } }
          : synthetic("think", { usage: mini(300, 150) }, { timeoutMs: 10_000 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => createRun(customer.key, { idempotencyKey: `mix-${i}`, steps: [stepOf(kinds[i % 3]!)] }).then((res) => ({ kind: kinds[i % 3]!, res }))));
    const accepted = results.filter((r) => r.res.status === 202);
    const refused = results.filter((r) => r.res.status === 402);
    expect(accepted.length + refused.length).toBe(50);
    for (const r of refused) expect(r.res.body.error.code).toBe("budget_exhausted");

    const finished = await waitForRuns(customer.key, accepted.map((r) => r.res.body.run.id), isFinished);
    const runs = accepted.map((r, i) => ({ kind: r.kind, run: finished[i] }));
    for (const { run } of runs) {
      expect(["succeeded", "failed"]).toContain(run.status);
      if (run.status === "failed") expect(run.failure.type).toBe("budget_exceeded");
    }
    for (const kind of kinds) expect(runs.some((r) => r.kind === kind && r.run.status === "succeeded")).toBe(true);

    await vi.waitUntil(async () => (await ledgerStub(env, customer.id).summary()).heldNanoUsd === "0", { timeout: 10_000, interval: 100 });
    await Promise.all(runs.map(({ run }) => nothingUnbilled(run.id)));
    await waitForRuns(customer.key, runs.map(({ run }) => run.id), (run) => run.cost.settled);
    const costs = await Promise.all(runs.map(({ run }) => costOf(customer.key, run.id)));
    for (const cost of costs) expect(cost.settled).toBe(true);
    const summed = costs.reduce((sum, c) => sum + BigInt(c.totalNanoUsd), 0n);
    const summary = await ledgerStub(env, customer.id).summary();
    expect(BigInt(summary.spendNanoUsd)).toBeLessThanOrEqual(10_000_000n);
    expect(BigInt(summary.spendNanoUsd)).toBe(summed);
    expect(summary.heldNanoUsd).toBe("0");
    await waitForD1("customer_id", customer.id, summed, 10_000);
  }, 60_000);
});

describe("bounds", () => {
  it("absurd usage is refused at the door, and a step reporting it fails permanently, billing no tokens; reports stay answerable", async () => {
    const customer = await newCustomer("absurd");
    const res = await createRun(customer.key, { steps: [synthetic("x", { usage: { model: "gpt-4o", outputTokens: 1e15, inputTokens: 0 } })] });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details.map((d: any) => d.field)).toContain("steps.0.config.usage.outputTokens");

    const created = await createRun(customer.key, { steps: [{ name: "absurd", type: "absurd-usage", config: {} }] });
    expect(created.status).toBe(202);
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure.type).toBe("permanent");
    expect(run.failure.message).toContain("usage[0].outputTokens");
    expect(run.failure.message).toContain("10,000,000");
    expect(run.steps[0].attempts).toBe(1);
    const cost = await settledCost(customer.key, run.id);
    expect(BigInt(cost.aiNanoUsd)).toBe(0n);
    expect(cost.lines.filter((l: any) => l.meter.endsWith("_tokens"))).toEqual([]);
    expect(await spendOf(customer.id)).toBe(BigInt(cost.totalNanoUsd));

    expect((await api("GET", "/v1/costs?groupBy=customer")).status).toBe(200);
    expect((await api("GET", `/v1/customers/${customer.id}/profitability`)).status).toBe(200);
  });
});

describe("attribution", () => {
  it("a run's cost names every meter it used, the run index's D1 rows included, and adds up exactly", async () => {
    const customer = await newCustomer("attr");
    const created = await createRun(customer.key, { steps: [synthetic("a", { usage: mini(10, 20) }), synthetic("b")] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, isFinished);
    await nothingUnbilled(runId);
    const cost = await settledCost(customer.key, runId);
    const d1Rows = lineOf(cost, "d1_rows_written");
    expect(d1Rows).toBeDefined();
    expect(d1Rows.quantity).toBeGreaterThan(0);
    expect(d1Rows.estimated).toBe(true);
    for (const meter of ["queue_operations", "do_requests", "do_rows_written", "worker_requests", "worker_cpu_ms"]) {
      const line = lineOf(cost, meter);
      expect(line, meter).toBeDefined();
      expect(line.quantity, meter).toBeGreaterThan(0);
    }
    const total = BigInt(cost.totalNanoUsd);
    expect(total).toBe(BigInt(cost.aiNanoUsd) + BigInt(cost.infraNanoUsd));
    expect(total).toBe(sumLines(cost));
    expect(BigInt(cost.aiNanoUsd)).toBe(miniCost(10, 20));
    const run = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    expect(run.cost).toMatchObject({ totalNanoUsd: cost.totalNanoUsd, aiNanoUsd: cost.aiNanoUsd, infraNanoUsd: cost.infraNanoUsd, settled: true });
  });
});
