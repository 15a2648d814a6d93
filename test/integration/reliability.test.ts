import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { RunCoordinator } from "../../durable-objects/run/run-coordinator";
import { runStub } from "../../durable-objects/run/rpc";
import { registerStepType } from "../../src/steps/registry";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const realFetch = globalThis.fetch;
let webhookCalls: any[] = [];
let webhookStatus = 200;

// The alert receiver is outside the platform: the one thing mocked here.
function mockWebhook() {
  webhookCalls = [];
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url === "http://127.0.0.1:9/alerts") {
      webhookCalls.push(JSON.parse(String(init?.body)));
      return new Response(null, { status: webhookStatus });
    }
    if (url.startsWith("https://remote.example")) return remote(url);
    return realFetch(input, init);
  });
}
let remote: (url: string) => Response = () => new Response("no", { status: 404 });

afterEach(() => {
  vi.restoreAllMocks();
  webhookStatus = 200;
});

const fastRetry = (maxAttempts: number) => ({ maxAttempts, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 });

async function events(key: string, runId: string) {
  return (await api("GET", `/v1/runs/${runId}/events`, { key })).body.events as any[];
}

async function dlqEntryFor(runId: string) {
  return vi.waitUntil(async () => {
    const res = await api("GET", "/v1/dlq?state=open");
    return res.body.entries.find((e: any) => e.runId === runId) ?? false;
  }, { timeout: 8000, interval: 50 });
}

describe("retries", () => {
  it("a step that fails twice with a transient error succeeds on its third attempt, after the policy's delays", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("flaky", { failTimes: 2 }, { retry: fastRetry(3) })] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].attempts).toBe(3);

    const log = await events(customer.key, run.id);
    const delays = log.filter((e) => e.type === "step.retry_scheduled").map((e) => e.data.delayMs);
    // 100 ms doubling, with equal jitter: [50, 100] then [100, 200].
    expect(delays).toHaveLength(2);
    expect(delays[0]).toBeGreaterThanOrEqual(50);
    expect(delays[0]).toBeLessThanOrEqual(100);
    expect(delays[1]).toBeGreaterThanOrEqual(100);
    expect(delays[1]).toBeLessThanOrEqual(200);
    const failedAt = log.filter((e) => e.type === "step.failed").map((e) => Date.parse(e.at));
    const startedAt = log.filter((e) => e.type === "step.started").map((e) => Date.parse(e.at));
    expect(startedAt[1]! - failedAt[0]!).toBeGreaterThanOrEqual(delays[0]);
    expect(startedAt[2]! - failedAt[1]!).toBeGreaterThanOrEqual(delays[1]);
  });

  it("honours Retry-After from a 429 instead of hammering the dependency", async () => {
    mockWebhook();
    let calls = 0;
    remote = () => (++calls === 1 ? new Response("slow down", { status: 429, headers: { "retry-after": "2" } }) : Response.json({ ok: true }));
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [{ name: "call", type: "http", config: { url: "https://remote.example/api" }, retry: fastRetry(3) }] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished, 10_000);
    expect(run.status).toBe("succeeded");
    const log = await events(customer.key, run.id);
    expect(log.find((e) => e.type === "step.retry_scheduled").data.delayMs).toBeGreaterThanOrEqual(2000);
    const failed = Date.parse(log.find((e) => e.type === "step.failed").at);
    const second = Date.parse(log.filter((e) => e.type === "step.started")[1].at);
    expect(second - failed).toBeGreaterThanOrEqual(2000);
  });
});

describe("dead-letter queue", () => {
  it("a step that keeps failing lands in the DLQ after maxAttempts, with its history; an alert is recorded and posted", async () => {
    mockWebhook();
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("ok"), synthetic("doomed", { failTimes: 99 }, { retry: fastRetry(3) })] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure).toMatchObject({ type: "transient", step: "doomed" });
    expect(run.steps.map((s: any) => s.status)).toEqual(["succeeded", "failed"]);

    const entry = await dlqEntryFor(run.id);
    expect(entry).toMatchObject({ customerId: customer.id, pool: "standard", step: "doomed", attempts: 3, failure: { type: "transient" }, state: "open" });
    expect(entry.history.map((h: any) => [h.attempt, h.outcome, h.failure.type])).toEqual([
      [1, "failed", "transient"],
      [2, "failed", "transient"],
      [3, "failed", "transient"],
    ]);
    for (const h of entry.history) expect(Date.parse(h.finishedAt)).toBeGreaterThanOrEqual(Date.parse(h.startedAt));

    const alerts = await vi.waitUntil(async () => {
      const list = (await api("GET", "/v1/alerts?kind=dlq_entry")).body.alerts.filter((a: any) => a.runId === run.id);
      return list.length && list[0].delivery.status === "delivered" ? list : false;
    }, { timeout: 5000, interval: 50 });
    expect(alerts).toHaveLength(1);
    expect(alerts[0].dlqId).toBe(entry.id);
    expect(webhookCalls.filter((c) => c.alert.run_id === run.id)).toHaveLength(1);
    expect(webhookCalls.find((c) => c.alert.run_id === run.id).type).toBe("runplane.alert.dlq_entry");
  });

  it("a permanent failure goes straight to the DLQ after one attempt", async () => {
    mockWebhook();
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("bad", { failTimes: 1, failKind: "permanent" }, { retry: fastRetry(5) })] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.steps[0].attempts).toBe(1);
    const entry = await dlqEntryFor(run.id);
    expect(entry).toMatchObject({ attempts: 1, failure: { type: "permanent" } });
  });

  it("an unreachable webhook loses no alert: the record stays and delivery is retried", async () => {
    mockWebhook();
    webhookStatus = 503;
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("bad", { failTimes: 1, failKind: "permanent" })] });
    await waitForRun(customer.key, created.body.run.id, isFinished);
    const alert = await vi.waitUntil(async () => {
      const a = (await api("GET", "/v1/alerts")).body.alerts.find((x: any) => x.runId === created.body.run.id);
      return a && a.delivery.attempts >= 2 ? a : false;
    }, { timeout: 10_000, interval: 100 });
    expect(alert.delivery.status).toBe("pending");
    expect(alert.delivery.lastError).toBe("HTTP 503");
    webhookStatus = 200;
    await vi.waitUntil(async () => {
      const a = (await api("GET", "/v1/alerts")).body.alerts.find((x: any) => x.runId === created.body.run.id);
      return a?.delivery.status === "delivered";
    }, { timeout: 15_000, interval: 100 });
    expect((await api("GET", "/v1/alerts")).body.alerts.filter((x: any) => x.runId === created.body.run.id)).toHaveLength(1);
  });

  it("retry from the DLQ once the cause is gone: the run resumes at the failed step, earlier steps do not run again", async () => {
    mockWebhook();
    const customer = await newCustomer();
    // Long enough that the first failure, its dead letter and the retry all happen before it, on a loaded machine too.
    const until = new Date(Date.now() + 5000).toISOString();
    const created = await createRun(customer.key, {
      steps: [synthetic("first", { output: { kept: true } }), synthetic("fragile", { failUntil: until }, { retry: fastRetry(2) }), synthetic("last")],
    });
    const failed = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(failed.status).toBe("failed");
    const entry = await dlqEntryFor(failed.id);
    expect((await api("POST", `/v1/dlq/${entry.id}/retry`)).status).toBe(202);

    // Retried before failUntil passed, the step fails again and dead-letters anew.
    const again = await waitForRun(customer.key, failed.id, (r) => isFinished(r) && r.steps[1].attempts === 4);
    expect(again.status).toBe("failed");
    const second = await vi.waitUntil(async () => {
      const res = await api("GET", "/v1/dlq?state=open");
      return res.body.entries.find((e: any) => e.runId === failed.id && e.id !== entry.id) ?? false;
    }, { timeout: 8000 });

    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(until) - Date.now() + 50)));
    const retried = await api("POST", `/v1/dlq/${second.id}/retry`);
    expect(retried.status).toBe(202);
    expect(retried.body.entry.state).toBe("retried");
    const run = await waitForRun(customer.key, failed.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps.map((s: any) => [s.name, s.status, s.attempts])).toEqual([
      ["first", "succeeded", 1],
      ["fragile", "succeeded", 5],
      ["last", "succeeded", 1],
    ]);
    expect(run.steps[0].output).toEqual({ kept: true });
    const log = await events(customer.key, run.id);
    expect(log.filter((e) => e.type === "step.started" && e.step === "first")).toHaveLength(1);
    // An entry is retried once.
    expect((await api("POST", `/v1/dlq/${second.id}/retry`)).status).toBe(409);
  });

  it("bulk retry by filter retries exactly the matching entries", async () => {
    mockWebhook();
    const a = await newCustomer("bulk-a");
    const b = await newCustomer("bulk-b");
    const doomed = { steps: [synthetic("x", { failTimes: 1, failKind: "permanent" })] };
    const runs = [await createRun(a.key, doomed), await createRun(a.key, doomed), await createRun(b.key, doomed)];
    for (const r of runs) await dlqEntryFor(r.body.run.id);
    const res = await api("POST", "/v1/dlq/retry", { body: { filter: { customerId: a.id } } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ retried: 2, matched: 2 });
    const open = (await api("GET", `/v1/dlq?customerId=${b.id}`)).body.entries;
    expect(open).toHaveLength(1);
    const retried = (await api("GET", `/v1/dlq?state=retried&customerId=${a.id}`)).body.entries;
    expect(retried.map((e: any) => e.runId).sort()).toEqual([runs[0]!.body.run.id, runs[1]!.body.run.id].sort());
    // Discarding takes an entry out of the open list.
    expect((await api("DELETE", `/v1/dlq/${open[0].id}`)).status).toBe(204);
    expect((await api("GET", `/v1/dlq?customerId=${b.id}`)).body.entries).toHaveLength(0);
  });

  it("a job the consumer cannot process is dead-lettered by the queue after max_retries, and recorded", async () => {
    mockWebhook();
    const customer = await newCustomer();
    // A run whose object is unreadable: every delivery of its job fails in the consumer.
    const created = await createRun(customer.key, { steps: [{ name: "nap", type: "sleep", config: { durationMs: 3_600_000 } }, synthetic("after")] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.status === "waiting");
    const stub = env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE run SET definition = 'not json'");
    });
    // Drop the object from memory, so the next request reads the broken storage.
    await evictDurableObject(stub);
    await env.JOBS_STANDARD.send({ v: 1, runId, stepIndex: 1, dispatch: 1, pool: "standard" });
    const entry = await vi.waitUntil(async () => {
      const res = await api("GET", "/v1/dlq?state=open");
      return res.body.entries.find((e: any) => e.runId === runId) ?? false;
    }, { timeout: 20_000, interval: 100 });
    expect(entry.failure.type).toBe("worker_error");
    expect(entry.failure.message).toMatch(/run object/);
  }, 30_000);
});

describe("self-healing leases", () => {
  it("a worker that stops reporting loses its lease; the step runs again and its late result is rejected", async () => {
    registerStepType({
      type: "partitioned",
      description: "attempt 1 keeps working while cut off from the run object; later attempts are quick",
      configSchema: z.object({}).strict(),
      async execute(_config, ctx) {
        if (ctx.attempt === 1) {
          await new Promise((r) => setTimeout(r, 3500));
          return { ok: true, output: "late" };
        }
        return { ok: true, output: "fresh" };
      },
    });
    // The first worker cannot reach the run object: its heartbeats do not arrive.
    const original = RunCoordinator.prototype.heartbeat;
    vi.spyOn(RunCoordinator.prototype, "heartbeat").mockImplementation(async function (this: RunCoordinator, leaseId: string) {
      if (leaseId.endsWith(".1")) return { ok: false, reason: "unreachable" };
      return original.call(this, leaseId);
    });
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [{ name: "work", type: "partitioned", config: {}, retry: fastRetry(3) }] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished, 20_000);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output).toBe("fresh");
    expect(run.steps[0].attempts).toBe(2);
    const log = await events(customer.key, run.id);
    expect(log.some((e) => e.type === "lease.expired" && e.attempt === 1)).toBe(true);
    const firstLease = log.find((e) => e.type === "step.started").data.leaseId;
    expect(await runStub(env, run.id).completeStep({ leaseId: firstLease, output: "late" })).toEqual({ ok: false, reason: "run_finished" });
  }, 30_000);
});
