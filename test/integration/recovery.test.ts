/**
 * Recovery, end to end against real D1, Durable Objects and Queues: a lost dispatch is sent
 * again under its own generation; platform faults (a lost lease, an unreachable run object)
 * do not use a step's attempts; oversized failures and outputs are bounded, not lost; the
 * reconciler looks only at runs past their indexed deadline; retention sweeps D1 in bounded
 * batches and run objects delete themselves; a dead letter whose send failed is sent again by
 * the run's own alarm.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { CustomerLedger } from "../../durable-objects/ledger/customer-ledger";
import { RunCoordinator } from "../../durable-objects/run/run-coordinator";
import { runStub } from "../../durable-objects/run/rpc";
import { MAX_FAILURE_CHARS, MAX_OUTPUT_BYTES } from "../../src/data-plane/job-consumer";
import { reconcileRuns } from "../../src/data-plane/reconciler";
import { sweepRetention } from "../../src/data-plane/retention-sweep";
import { DEFAULT_RETENTION, retentionCutoffs } from "../../src/domain/retention";
import { runIdForIdempotencyKey } from "../../src/lib/ids";
import { registerStepType } from "../../src/steps/registry";
import { api, createRun, d1Count, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

afterEach(() => vi.restoreAllMocks());

const DAY = 86_400_000;
const GRACE_MS = 60_000; // RECONCILE_AFTER_MS at its default
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fastRetry = (maxAttempts: number) => ({ maxAttempts, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 });
const runObject = (runId: string) => env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId));
/** Whether a RunCoordinator instance (`this` inside a spied method) is run `runId`'s object. */
const isObjectOf = (instance: RunCoordinator, runId: string) =>
  (instance as unknown as { ctx: DurableObjectState }).ctx.id.toString() === env.RUN_COORDINATOR.idFromName(runId).toString();

async function events(key: string, runId: string) {
  return (await api("GET", `/v1/runs/${runId}/events`, { key })).body.events as any[];
}

/** A run whose id is known before it is created (its idempotency key names it), so spies can pick out its traffic. */
async function plannedRun(prefix: string) {
  const customer = await newCustomer(prefix);
  const idempotencyKey = `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
  const runId = await runIdForIdempotencyKey(customer.id, idempotencyKey);
  const create = async (body: Record<string, unknown>) => {
    const res = await createRun(customer.key, { ...body, idempotencyKey });
    expect(res.status).toBe(202);
    expect(res.body.run.id).toBe(runId);
    return res.body.run;
  };
  return { customer, runId, create };
}

async function dlqEntryFor(runId: string, timeout = 10_000) {
  return vi.waitUntil(async () => {
    const res = await api("GET", "/v1/dlq?state=open&limit=100");
    return res.body.entries.find((e: any) => e.runId === runId) ?? false;
  }, { timeout, interval: 50 });
}

const runRow = (runId: string) => env.DB.prepare("SELECT status, due_at, version FROM runs WHERE id = ?").bind(runId).first<{ status: string; due_at: number | null; version: number }>();

const isJobMessage = (body: any) => body !== null && typeof body === "object" && body.v === 1 && typeof body.runId === "string" && typeof body.stepIndex === "number" && typeof body.dispatch === "number" && typeof body.pool === "string" && body.kind === undefined;
const markerOf = (text: string) => /^(.*) … \[truncated: (\d+) more characters\]$/s.exec(text);

// Step types of this file (the registry is per isolate: names unique to this file).
let partitionedLateDone = false;
registerStepType({
  type: "recovery-partitioned",
  description: "attempt 1 keeps working 3.5 s while cut off from the run object; later attempts are quick",
  configSchema: z.object({}).strict(),
  async execute(_config, ctx) {
    if (ctx.attempt === 1) {
      await sleep(3500);
      partitionedLateDone = true;
      return { ok: true, output: "late" };
    }
    return { ok: true, output: "fresh" };
  },
});
const LONG_MESSAGE = `boom: ${"0123456789".repeat(999)}`; // 9,996 characters
registerStepType({
  type: "recovery-long-failure",
  description: "fails permanently with a 10,000-character message",
  configSchema: z.object({}).strict(),
  async execute() {
    return { ok: false, failure: { type: "permanent", message: `${LONG_MESSAGE}!!!!` } };
  },
});
const HUGE_OUTPUT = "x".repeat(1_000_000);
registerStepType({
  type: "recovery-huge-output",
  description: "returns a 1 MB output",
  configSchema: z.object({}).strict(),
  async execute() {
    return { ok: true, output: HUGE_OUTPUT };
  },
});
// A flag polled by the step, not a resolver the test calls: a promise made in the consumer's
// context cannot be settled from the test's (workerd refuses I/O across contexts).
let heldReleased = false;
registerStepType({
  type: "recovery-held",
  description: "waits until the test lets it go (or its signal aborts)",
  configSchema: z.object({}).strict(),
  async execute(_config, ctx) {
    while (!heldReleased && !ctx.signal.aborted) await sleep(50);
    return { ok: true, output: "held" };
  },
});

describe("a lost dispatch", () => {
  it("is sent again by the pool's controller when its slot's lease ends (POOL_SLOT_LEASE_MS, 30 s), under the same generation; the run succeeds with its step attempted once", async () => {
    const { customer, runId, create } = await plannedRun("lost");
    const proto = Object.getPrototypeOf(env.JOBS_STANDARD) as Queue;
    const originalSendBatch = proto.sendBatch;
    const sent: { at: number; body: any }[] = [];
    let lost = 0;
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (list.length > 0 && list.every((m) => isJobMessage(m.body) && (m.body as any).runId === runId)) {
        for (const m of list) sent.push({ at: Date.now(), body: m.body });
        // The first send of this run's job is lost: accepted, never delivered.
        if (lost++ === 0) return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0, oldestMessageTimestamp: new Date(0) } } } as unknown as QueueSendBatchResponse;
      }
      return originalSendBatch.call(this, list, options);
    });
    const created = await create({ steps: [synthetic("only")] });
    const createdAt = Date.parse(created.createdAt);

    const run = await waitForRun(customer.key, runId, isFinished, 40_000);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].attempts).toBe(1);
    // Sent twice, both times as generation 1: the resend is the same dispatch, not a new one. Both
    // by the pool's controller (shard 0): the slot's lease ended unreported, so it sent it again.
    expect(sent.map((s) => s.body)).toEqual([
      { v: 1, runId, stepIndex: 0, dispatch: 1, pool: "standard", shard: 0 },
      { v: 1, runId, stepIndex: 0, dispatch: 1, pool: "standard", shard: 0 },
    ]);
    expect(sent[1]!.at - createdAt).toBeGreaterThanOrEqual(30_000 - 50);
    expect(sent[1]!.at - createdAt).toBeLessThan(35_000);

    const log = await events(customer.key, runId);
    // The run itself did not have to: its own resend (REDISPATCH_MS, 10 minutes) is the backstop.
    expect(log.filter((e) => e.type === "step.redispatched")).toHaveLength(0);
    const started = log.filter((e) => e.type === "step.started");
    expect(started).toHaveLength(1);
    expect(started[0].data.leaseId).toBe("0.1.1");
    expect(Date.parse(run.finishedAt) - createdAt).toBeLessThan(35_000);
  }, 45_000);
});

describe("platform faults retry on their own budget", () => {
  it("a worker cut off from the run object (its lease expires) does not use up maxAttempts: 1; attempt 2 succeeds", async () => {
    const { customer, runId, create } = await plannedRun("cutoff");
    // The first worker cannot reach the run object: its heartbeats do not arrive.
    const original = RunCoordinator.prototype.heartbeat;
    vi.spyOn(RunCoordinator.prototype, "heartbeat").mockImplementation(async function (this: RunCoordinator, leaseId: string) {
      if (isObjectOf(this, runId) && String(leaseId).endsWith(".1")) return { ok: false, reason: "unreachable" };
      return original.call(this, leaseId);
    });
    partitionedLateDone = false;
    await create({ steps: [{ name: "work", type: "recovery-partitioned", config: {}, retry: fastRetry(1) }] });
    const run = await waitForRun(customer.key, runId, isFinished, 15_000);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0]).toMatchObject({ attempts: 2, output: "fresh" });
    const log = await events(customer.key, runId);
    expect(log.filter((e) => e.type === "lease.expired").map((e) => e.attempt)).toEqual([1]);
    expect(log.filter((e) => e.type === "step.failed").map((e) => [e.attempt, e.data.type])).toEqual([[1, "worker_error"]]);
    expect(log.some((e) => e.type === "run.failed")).toBe(false);
    // The cut-off worker's late result changes nothing.
    await vi.waitUntil(() => partitionedLateDone, { timeout: 5000 });
    await sleep(200);
    const after = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    expect(after.steps[0]).toMatchObject({ status: "succeeded", attempts: 2, output: "fresh" });
  }, 30_000);

  it("a run object that throws on startStep for 2.5 s is waited out with backoff; the step runs once and nothing is dead-lettered", async () => {
    const { customer, runId, create } = await plannedRun("unreachable");
    const original = RunCoordinator.prototype.startStep;
    const calls: { at: number; threw: boolean }[] = [];
    let until = Number.POSITIVE_INFINITY;
    vi.spyOn(RunCoordinator.prototype, "startStep").mockImplementation(async function (this: RunCoordinator, input) {
      if (isObjectOf(this, runId)) {
        const threw = Date.now() < until;
        calls.push({ at: Date.now(), threw });
        if (threw) throw new Error("run object unreachable (test)");
      }
      return original.call(this, input);
    });
    until = Date.now() + 2500;
    await create({ steps: [synthetic("only")] });
    const run = await waitForRun(customer.key, runId, isFinished, 20_000);
    expect(run.status, JSON.stringify(run.failure)).toBe("succeeded");
    expect(run.steps[0].attempts).toBe(1);
    const failures = calls.filter((c) => c.threw);
    expect(failures.length).toBeGreaterThanOrEqual(2);
    expect(calls.filter((c) => !c.threw)).toHaveLength(1);
    // Redelivered after 1 s, then 2 s: not at once (test queues dead-letter after 4 deliveries).
    for (let i = 1; i < calls.length; i++) expect(calls[i]!.at - calls[i - 1]!.at).toBeGreaterThanOrEqual(2 ** (i - 1) * 1000 - 100);
    const log = await events(customer.key, runId);
    expect(log.some((e) => e.type === "step.failed" || e.type === "step.dead_lettered")).toBe(false);
    expect(await d1Count("dlq_entries", "run_id = ?", runId)).toBe(0);
  }, 30_000);
});

describe("size limits", () => {
  it("a 10,000-character failure message is cut to 4,000 with a marker, the run fails with it (not a lease expiry), D1 keeps 500", async () => {
    const customer = await newCustomer("long");
    const created = await createRun(customer.key, { steps: [{ name: "talkative", type: "recovery-long-failure", config: {}, retry: fastRetry(3) }] });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure.type).toBe("permanent");
    expect(run.steps[0].attempts).toBe(1);
    const message: string = run.failure.message;
    expect(message.length).toBeLessThanOrEqual(MAX_FAILURE_CHARS);
    const match = markerOf(message);
    expect(match).not.toBeNull();
    expect(LONG_MESSAGE.startsWith(match![1]!)).toBe(true);
    expect(match![1]!.length + Number(match![2])).toBe(10_000);
    const log = await events(customer.key, runId);
    expect(log.some((e) => e.type === "lease.expired")).toBe(false);

    // The dead letter carries the cut message; the index keeps 500 characters of it.
    const entry = await dlqEntryFor(runId);
    expect(entry.failure).toEqual({ type: "permanent", message });
    const row = await vi.waitUntil(
      () => env.DB.prepare("SELECT failure_message FROM step_attempts WHERE run_id = ? AND status = 'failed'").bind(runId).first<{ failure_message: string }>(),
      { timeout: 5000, interval: 50 },
    );
    expect(row.failure_message.length).toBeLessThanOrEqual(500);
    const indexed = markerOf(row.failure_message);
    expect(indexed).not.toBeNull();
    expect(LONG_MESSAGE.startsWith(indexed![1]!)).toBe(true);
  });

  it("the FailStep RPC cuts a long message instead of refusing it", async () => {
    const customer = await newCustomer("rpc");
    heldReleased = false;
    const created = await createRun(customer.key, { steps: [{ name: "held", type: "recovery-held", config: {} }] });
    const runId = created.body.run.id;
    const started = await vi.waitUntil(async () => (await events(customer.key, runId)).find((e) => e.type === "step.started"), { timeout: 5000, interval: 50 });
    const reply = await runStub(env, runId).failStep({ leaseId: started.data.leaseId, failure: { type: "permanent", message: "y".repeat(20_000) } });
    expect(reply).toMatchObject({ ok: true, runStatus: "failed" });
    heldReleased = true;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.failure.message.length).toBeLessThanOrEqual(4000);
    expect(Number(markerOf(run.failure.message)![2]) + markerOf(run.failure.message)![1]!.length).toBe(20_000);
  });

  it("an output over 256 KiB fails the attempt as permanent, naming its size", async () => {
    const customer = await newCustomer("huge");
    const created = await createRun(customer.key, { steps: [{ name: "big", type: "recovery-huge-output", config: {}, retry: fastRetry(3) }] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.steps[0].attempts).toBe(1);
    expect(run.steps[0]).not.toHaveProperty("output"); // nothing of it is kept
    expect(run.failure.type).toBe("permanent");
    const bytes = JSON.stringify(HUGE_OUTPUT).length;
    expect(run.failure.message).toContain(`${bytes} bytes`);
    expect(run.failure.message).toContain(String(MAX_OUTPUT_BYTES));
  });

  it("a step that failed 15 times dead-letters with its latest 10 attempts and says 5 were left out", async () => {
    const customer = await newCustomer("many");
    const created = await createRun(customer.key, {
      steps: [synthetic("stubborn", { failTimes: 99 }, { retry: { maxAttempts: 15, initialDelayMs: 0, maxDelayMs: 0, backoffFactor: 1 } })],
    });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished, 20_000);
    expect(run.status).toBe("failed");
    expect(run.steps[0].attempts).toBe(15);
    const listed = await dlqEntryFor(runId);
    const { status, body } = await api("GET", `/v1/dlq/${listed.id}`);
    expect(status).toBe(200);
    const entry = body.entry;
    expect(entry.attempts).toBe(15);
    expect(entry.history.map((h: any) => h.attempt)).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(entry.message.history).toHaveLength(10);
    expect(entry.message.attemptsOmitted).toBe(5);
    expect(entry.message.attempts).toBe(15);
  }, 30_000);
});

describe("the reconciler looks only at runs past their indexed deadline", () => {
  /** Counts the reconciler's pokes of run `runId`'s object. */
  function countPokes(runId: string) {
    const original = RunCoordinator.prototype.reconcile;
    const pokes = { n: 0 };
    vi.spyOn(RunCoordinator.prototype, "reconcile").mockImplementation(async function (this: RunCoordinator, options) {
      if (isObjectOf(this, runId)) pokes.n += 1;
      return original.call(this, options);
    });
    return pokes;
  }

  async function sleepingRun(prefix: string, durationMs = 600_000) {
    const customer = await newCustomer(prefix);
    const created = await createRun(customer.key, { steps: [{ name: "nap", type: "sleep", config: { durationMs } }, synthetic("after")] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.status === "waiting");
    const waiting = (await events(customer.key, runId)).find((e) => e.type === "step.waiting");
    const wakeAt = Date.parse(waiting.data.wakeAt);
    // Its index row exists (written after the create's response).
    await vi.waitUntil(() => runRow(runId), { timeout: 5000, interval: 50 });
    return { customer, runId, wakeAt };
  }

  it("a run sleeping 10 minutes is not looked at before its wake plus the grace, and is then", async () => {
    const { runId, wakeAt } = await sleepingRun("napper");
    const pokes = countPokes(runId);
    await reconcileRuns(env);
    await reconcileRuns(env, Date.now() + 2 * 60_000);
    await reconcileRuns(env, wakeAt + GRACE_MS - 1000);
    expect(pokes.n).toBe(0);
    const row = await runRow(runId);
    expect(row!.due_at).toBe(wakeAt + GRACE_MS);

    const tick = await reconcileRuns(env, wakeAt + GRACE_MS + 1);
    expect(pokes.n).toBe(1);
    expect(tick.checked).toBeGreaterThanOrEqual(1);
    // Not looked at again within a grace of that tick.
    expect((await runRow(runId))!.due_at).toBeGreaterThanOrEqual(wakeAt + 2 * GRACE_MS);
    await reconcileRuns(env, wakeAt + GRACE_MS + 2);
    expect(pokes.n).toBe(1);
  });

  it("a run whose deadline passed (set by hand) is looked at, and its deadline moves to its next timer plus the grace", async () => {
    const { runId, wakeAt } = await sleepingRun("overdue");
    await env.DB.prepare("UPDATE runs SET due_at = ? WHERE id = ?").bind(Date.now() - 1000, runId).run();
    const pokes = countPokes(runId);
    const before = Date.now();
    await reconcileRuns(env);
    expect(pokes.n).toBe(1);
    const row = await runRow(runId);
    expect(row!.due_at).toBeGreaterThan(before + GRACE_MS);
    expect(row!.due_at).toBe(wakeAt + GRACE_MS);
    // A second tick now finds nothing due for it.
    await reconcileRuns(env);
    expect(pokes.n).toBe(1);
  });

  it("a failed run whose dead letter is recorded has no deadline, and is not looked at even if one is set", async () => {
    const customer = await newCustomer("deadrun");
    const created = await createRun(customer.key, { steps: [synthetic("bad", { failTimes: 1, failKind: "permanent" })] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, isFinished);
    await dlqEntryFor(runId);
    const row = await vi.waitUntil(async () => {
      const r = await runRow(runId);
      return r?.status === "failed" ? r : false;
    }, { timeout: 5000, interval: 50 });
    await sleep(300); // any index message still in flight
    expect((await runRow(runId))!.due_at).toBeNull();
    expect(row.status).toBe("failed");

    // A deadline left behind (a lost clear): the tick clears it without waking the run.
    await env.DB.prepare("UPDATE runs SET due_at = ? WHERE id = ?").bind(Date.now() - 1000, runId).run();
    const pokes = countPokes(runId);
    await reconcileRuns(env);
    expect(pokes.n).toBe(0);
    expect((await runRow(runId))!.due_at).toBeNull();
  });

  it("a failed run whose dead letter is not recorded stays due, and the tick sends it again", async () => {
    const { customer, runId, create } = await plannedRun("lostletter");
    // Every send of this run's dead letter is lost: only the reconciler can get it through.
    const proto = Object.getPrototypeOf(env.DLQ_STANDARD) as Queue;
    const originalSendBatch = proto.sendBatch;
    let dropping = true;
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (dropping && list.some((m: any) => m.body?.kind === "step_failed" && m.body.runId === runId)) {
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0, oldestMessageTimestamp: new Date(0) } } } as unknown as QueueSendBatchResponse;
      }
      return originalSendBatch.call(this, list, options);
    });
    await create({ steps: [synthetic("bad", { failTimes: 1, failKind: "permanent" })] });
    const run = await waitForRun(customer.key, runId, isFinished);
    const finishedAt = Date.parse(run.finishedAt);
    const row = await vi.waitUntil(async () => {
      const r = await runRow(runId);
      return r?.status === "failed" ? r : false;
    }, { timeout: 5000, interval: 50 });
    expect(row.due_at).toBe(finishedAt + 5 * 60_000);
    dropping = false;
    const pokes = countPokes(runId);
    await reconcileRuns(env, finishedAt + 5 * 60_000);
    expect(pokes.n).toBe(1);
    await dlqEntryFor(runId, 5000);
    await vi.waitUntil(async () => (await runRow(runId))?.due_at === null, { timeout: 5000, interval: 50 });
  });

  it("the due query is answered from the runs_due index", async () => {
    const prepare = vi.spyOn(env.DB, "prepare");
    await reconcileRuns(env);
    const dueSql = prepare.mock.calls.map(([sql]) => sql).find((sql) => /due_at\s*<=/.test(sql));
    prepare.mockRestore();
    expect(dueSql).toBeDefined();
    const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${dueSql}`).bind(Date.now(), 200).all<{ detail: string }>();
    const details = plan.results.map((r) => r.detail);
    expect(details.join("\n")).toMatch(/SEARCH r USING (COVERING )?INDEX runs_due \(due_at<\?\)/);
    expect(details.some((d) => /^SCAN r\b/.test(d))).toBe(false);
  });
});

describe("retention", () => {
  const tag = () => `ret-${Math.random().toString(36).slice(2, 10)}`;

  async function insertRun(id: string, status: string, createdAt: number) {
    const finished = ["succeeded", "failed", "cancelled"].includes(status) ? createdAt + 1000 : null;
    await env.DB.prepare(
      `INSERT INTO runs (id, customer_id, project_id, run_type, pool, priority, status, created_at, started_at, finished_at, version, updated_at)
       VALUES (?1, 'ret-customer', 'p', NULL, 'standard', 'normal', ?2, ?3, ?3, ?4, 1, ?3)`,
    ).bind(id, status, createdAt, finished).run();
  }
  const insertAttempt = (runId: string, startedAt: number) =>
    env.DB.prepare(
      `INSERT INTO step_attempts (run_id, step_index, attempt, step, step_type, customer_id, project_id, pool, status, started_at, finished_at)
       VALUES (?1, 0, 1, 's', 'synthetic', 'ret-customer', 'p', 'standard', 'succeeded', ?2, ?2)`,
    ).bind(runId, startedAt).run();
  const insertDeadEvent = (id: string, receivedAt: number) =>
    env.DB.prepare("INSERT INTO dead_events (id, kind, body, received_at) VALUES (?1, 'run.index', '{}', ?2)").bind(id, receivedAt).run();
  const insertDlq = (id: string, state: string, deadAt: number) =>
    env.DB.prepare(
      `INSERT INTO dlq_entries (id, run_id, customer_id, run_type, pool, step, failure_type, failure_message, attempts, history, message, dead_at, state)
       VALUES (?1, 'run_ret', 'ret-customer', NULL, 'standard', 's', 'permanent', 'x', 1, '[]', '{}', ?2, ?3)`,
    ).bind(id, deadAt, state).run();
  const insertAlert = (id: string, createdAt: number) =>
    env.DB.prepare(
      `INSERT INTO alerts (id, kind, severity, customer_id, message, details, created_at, delivery_status)
       VALUES (?1, 'dlq_entry', 'error', 'ret-customer', 'm', '{}', ?2, 'none')`,
    ).bind(id, createdAt).run();
  const insertRollup = (runId: string, hour: number) =>
    env.DB.prepare(
      `INSERT INTO cost_rollups (hour, customer_id, run_id, model, part, project_id, pool, nano_usd, version, updated_at)
       VALUES (?1, 'ret-customer', ?2, '', 0, 'p', 'standard', 1, 1, ?1)`,
    ).bind(hour, runId).run();
  const exists = async (table: string, where: string, ...binds: unknown[]) => (await d1Count(table, where, ...binds)) > 0;

  it("sweeps what has outlived its retention and keeps the rest", async () => {
    const t = tag();
    const now = Date.now();
    const old = now - 31 * DAY;
    const young = now - 29 * DAY;
    for (const status of ["succeeded", "failed", "cancelled"]) await insertRun(`${t}-old-${status}`, status, old);
    for (const status of ["queued", "running", "waiting"]) await insertRun(`${t}-old-${status}`, status, old);
    await insertRun(`${t}-young-succeeded`, "succeeded", young);
    await insertAttempt(`${t}-a-old`, old);
    await insertAttempt(`${t}-a-young`, young);
    await insertDeadEvent(`${t}-e-old`, old);
    await insertDeadEvent(`${t}-e-young`, young);
    await insertDlq(`dlq_${t}-retried-old`, "retried", old);
    await insertDlq(`dlq_${t}-discarded-old`, "discarded", old);
    await insertDlq(`dlq_${t}-open-ancient`, "open", now - 400 * DAY);
    await insertDlq(`dlq_${t}-retried-young`, "retried", young);
    await insertAlert(`${t}-alert-old`, now - 91 * DAY);
    await insertAlert(`${t}-alert-young`, now - 89 * DAY);
    const cut = retentionCutoffs(now, DEFAULT_RETENTION);
    await insertRollup(`${t}-r-old`, cut.costs - 3_600_000);
    await insertRollup(`${t}-r-kept`, cut.costs);
    // Older than the step detail by far, yet within 13 months: money outlives detail.
    await insertRollup(`${t}-r-year`, now - 300 * DAY - ((now - 300 * DAY) % 3_600_000));

    const deleted = await sweepRetention(env, now);
    for (const status of ["succeeded", "failed", "cancelled"]) expect(await exists("runs", "id = ?", `${t}-old-${status}`), status).toBe(false);
    for (const status of ["queued", "running", "waiting"]) expect(await exists("runs", "id = ?", `${t}-old-${status}`), status).toBe(true);
    expect(await exists("runs", "id = ?", `${t}-young-succeeded`)).toBe(true);
    expect(await exists("step_attempts", "run_id = ?", `${t}-a-old`)).toBe(false);
    expect(await exists("step_attempts", "run_id = ?", `${t}-a-young`)).toBe(true);
    expect(await exists("dead_events", "id = ?", `${t}-e-old`)).toBe(false);
    expect(await exists("dead_events", "id = ?", `${t}-e-young`)).toBe(true);
    expect(await exists("dlq_entries", "id = ?", `dlq_${t}-retried-old`)).toBe(false);
    expect(await exists("dlq_entries", "id = ?", `dlq_${t}-discarded-old`)).toBe(false);
    expect(await exists("dlq_entries", "id = ?", `dlq_${t}-open-ancient`)).toBe(true);
    expect(await exists("dlq_entries", "id = ?", `dlq_${t}-retried-young`)).toBe(true);
    expect(await exists("alerts", "id = ?", `${t}-alert-old`)).toBe(false);
    expect(await exists("alerts", "id = ?", `${t}-alert-young`)).toBe(true);
    expect(await exists("cost_rollups", "run_id = ?", `${t}-r-old`)).toBe(false);
    expect(await exists("cost_rollups", "run_id = ?", `${t}-r-kept`)).toBe(true);
    expect(await exists("cost_rollups", "run_id = ?", `${t}-r-year`)).toBe(true);
    expect(deleted).toMatchObject({ runs: 3, step_attempts: 1, dead_events: 1, "dlq_entries (retried)": 1, "dlq_entries (discarded)": 1, alerts: 1, cost_rollups: 1 });

    // A second tick finds nothing more.
    expect(Object.values(await sweepRetention(env, now)).every((n) => n === 0)).toBe(true);
  });

  it("each tick deletes at most 1,000 rows per table: 2,500 old rows take 3 ticks", async () => {
    const t = tag();
    const now = Date.now();
    const old = now - 40 * DAY;
    const hour = retentionCutoffs(now, DEFAULT_RETENTION).costs - 3_600_000;
    const series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)";
    await env.DB.batch([
      env.DB.prepare(`INSERT INTO dead_events (id, kind, body, received_at) ${series} SELECT ?1 || i, 'run.index', '{}', ?2 FROM n`).bind(t, old),
      env.DB.prepare(
        `INSERT INTO step_attempts (run_id, step_index, attempt, step, step_type, customer_id, project_id, pool, status, started_at)
         ${series} SELECT ?1, 0, i, 's', 'synthetic', 'ret-customer', 'p', 'standard', 'succeeded', ?2 FROM n`,
      ).bind(t, old),
      env.DB.prepare(
        `INSERT INTO cost_rollups (hour, customer_id, run_id, model, part, project_id, pool, version, updated_at)
         ${series} SELECT ?2, 'ret-customer', ?1 || i, '', 0, 'p', 'standard', 1, ?2 FROM n`,
      ).bind(t, hour),
    ]);
    const left = async () => [
      await d1Count("dead_events", "id LIKE ?", `${t}%`),
      await d1Count("step_attempts", "run_id = ?", t),
      await d1Count("cost_rollups", "run_id LIKE ?", `${t}%`),
    ];
    expect(await left()).toEqual([2500, 2500, 2500]);
    const ticks: Record<string, number>[] = [];
    const remaining: number[][] = [];
    for (let i = 0; i < 3; i++) {
      ticks.push(await sweepRetention(env, now));
      remaining.push(await left());
    }
    expect(ticks.map((d) => [d.dead_events, d.step_attempts, d.cost_rollups])).toEqual([
      [1000, 1000, 1000],
      [1000, 1000, 1000],
      [500, 500, 500],
    ]);
    expect(remaining).toEqual([
      [1500, 1500, 1500],
      [500, 500, 500],
      [0, 0, 0],
    ]);
  }, 30_000);

  /** Runs the object's alarm with the clock at `at` (the object's own code reads Date.now()). */
  async function alarmAt(runId: string, at: number) {
    await runInDurableObject(runObject(runId), async (instance: RunCoordinator) => {
      const clock = vi.spyOn(Date, "now").mockReturnValue(at);
      try {
        await instance.alarm();
      } finally {
        clock.mockRestore();
      }
    });
  }
  const storedTables = (runId: string) =>
    runInDurableObject(runObject(runId), (_instance, state) =>
      state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").toArray().map((r) => r.name),
    );

  it("a finished run's object deletes itself once its retention is over and its costs are delivered", async () => {
    const customer = await newCustomer("forget");
    const created = await createRun(customer.key, { steps: [synthetic("only")] });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    await vi.waitUntil(async () => (await api("GET", `/v1/runs/${runId}/cost`, { key: customer.key })).body.settled, { timeout: 10_000, interval: 50 });
    const finishedAt = Date.parse(run.finishedAt);
    // Its alarm waits for the end of retention.
    const alarm = await runInDurableObject(runObject(runId), (_instance, state) => state.storage.getAlarm());
    expect(alarm).toBe(finishedAt + 30 * DAY);

    await alarmAt(runId, finishedAt + 29 * DAY);
    expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).status).toBe(200);

    await alarmAt(runId, finishedAt + 31 * DAY);
    expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).status).toBe(404);
    expect(await storedTables(runId)).toEqual([]);
    expect(await runInDurableObject(runObject(runId), (_instance, state) => state.storage.getAlarm())).toBeNull();
  });

  it("a run whose costs are not delivered is kept past its retention, and goes once they are", async () => {
    const customer = await newCustomer("owing");
    const down = vi.spyOn(CustomerLedger.prototype, "record").mockRejectedValue(new Error("ledger down (test)"));
    const created = await createRun(customer.key, { steps: [synthetic("only")] });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    await vi.waitUntil(() => down.mock.calls.some(([input]) => input.runId === runId), { timeout: 5000 });
    const finishedAt = Date.parse(run.finishedAt);

    await alarmAt(runId, finishedAt + 31 * DAY);
    const kept = await api("GET", `/v1/runs/${runId}`, { key: customer.key });
    expect(kept.status).toBe(200);
    expect(kept.body.run.cost.settled).toBe(false);
    expect(await storedTables(runId)).toContain("costs");

    down.mockRestore();
    expect(await runStub(env, runId).resendCosts()).toEqual({ ok: true });
    await vi.waitUntil(async () => (await api("GET", `/v1/runs/${runId}/cost`, { key: customer.key })).body.settled, { timeout: 10_000, interval: 50 });
    await alarmAt(runId, finishedAt + 31 * DAY);
    expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).status).toBe(404);
    expect(await storedTables(runId)).toEqual([]);
  });
});

describe("a dead letter whose send fails", () => {
  it("is sent again by the run's own alarm within seconds, not left to the reconciler", async () => {
    const { customer, runId, create } = await plannedRun("outbox");
    const proto = Object.getPrototypeOf(env.DLQ_STANDARD) as Queue;
    const originalSendBatch = proto.sendBatch;
    const attempts: { at: number; failed: boolean }[] = [];
    vi.spyOn(proto, "sendBatch").mockImplementation(async function (this: Queue, messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      if (list.some((m: any) => m.body?.kind === "step_failed" && m.body.runId === runId)) {
        const failed = attempts.length === 0;
        attempts.push({ at: Date.now(), failed });
        if (failed) throw new Error("queue unavailable (test)");
      }
      return originalSendBatch.call(this, list, options);
    });
    const reconcile = vi.spyOn(RunCoordinator.prototype, "reconcile");
    await create({ steps: [synthetic("bad", { failTimes: 1, failKind: "permanent" })] });
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("failed");
    await vi.waitUntil(() => attempts.length > 0, { timeout: 5000, interval: 20 });
    const failedAt = attempts[0]!.at;

    // Right after the failed send the run's one alarm is set for the retry, seconds away (not its retention's end).
    const alarm = await runInDurableObject(runObject(runId), (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm!).toBeGreaterThanOrEqual(failedAt + 4_000);
    expect(alarm!).toBeLessThanOrEqual(failedAt + 6_000);

    const entry = await dlqEntryFor(runId, 10_000);
    expect(entry).toMatchObject({ step: "bad", failure: { type: "permanent" } });
    expect(Date.now() - failedAt).toBeLessThan(10_000);
    expect(attempts.map((a) => a.failed)).toEqual([true, false]);
    expect(attempts[1]!.at - failedAt).toBeGreaterThanOrEqual(4_900);
    expect(reconcile).not.toHaveBeenCalled();
  }, 30_000);
});
