import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { runStub } from "../../durable-objects/run/rpc";
import worker from "../../src/index";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const job = (runId: string, stepIndex: number, dispatch: number) => ({ v: 1, runId, stepIndex, dispatch, pool: "standard" });

async function eventCount(key: string, runId: string) {
  return (await api("GET", `/v1/runs/${runId}/events`, { key })).body.events.length;
}

describe("at-least-once delivery", () => {
  it("duplicate queue messages for a step run it once", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("slow", { durationMs: 300 }), synthetic("next")] });
    const runId = created.body.run.id;
    // Two more copies of the first dispatch through the real queue, while the first is in flight.
    await env.JOBS_STANDARD.send(job(runId, 0, 1));
    await env.JOBS_STANDARD.send(job(runId, 0, 1));
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps.map((s: any) => s.attempts)).toEqual([1, 1]);
    const events = (await api("GET", `/v1/runs/${runId}/events`, { key: customer.key })).body.events;
    expect(events.filter((e: any) => e.type === "step.started")).toHaveLength(2);
  });

  it("a redelivered message after the run finished is acked and changes nothing", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("a"), synthetic("b")] });
    const runId = created.body.run.id;
    const before = await waitForRun(customer.key, runId, isFinished);
    const eventsBefore = await eventCount(customer.key, runId);

    const batch = createMessageBatch("runplane-jobs-standard", [
      { id: "dup-1", timestamp: new Date(), attempts: 2, body: job(runId, 0, 1) },
      { id: "dup-2", timestamp: new Date(), attempts: 1, body: job(runId, 1, 1) },
      { id: "dup-3", timestamp: new Date(), attempts: 1, body: job(runId, 0, 7) },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks.sort()).toEqual(["dup-1", "dup-2", "dup-3"]);
    expect(result.retryMessages).toEqual([]);

    const after = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    // Cost events of the run's own steps may still be landing; the run itself must not move.
    expect({ ...after, cost: null }).toEqual({ ...before, cost: null });
    expect(await eventCount(customer.key, runId)).toBe(eventsBefore);
  });

  it("a result reported on a superseded attempt's lease is rejected and changes nothing", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [synthetic("flaky", { failTimes: 1 }, { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 50, backoffFactor: 2 } })],
    });
    const runId = created.body.run.id;
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].attempts).toBe(2);

    const events = (await api("GET", `/v1/runs/${runId}/events`, { key: customer.key })).body.events;
    const leases = events.filter((e: any) => e.type === "step.started").map((e: any) => e.data.leaseId);
    expect(leases).toHaveLength(2);
    const eventsBefore = events.length;

    const stub = runStub(env, runId);
    expect(await stub.completeStep({ leaseId: leases[0], output: "late result from attempt 1" })).toEqual({ ok: false, reason: "run_finished" });
    expect(await stub.failStep({ leaseId: leases[1], failure: { type: "transient", message: "late" } })).toEqual({ ok: false, reason: "run_finished" });

    const after = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    expect({ ...after, cost: null }).toEqual({ ...run, cost: null });
    expect(await eventCount(customer.key, runId)).toBe(eventsBefore);
  });

  it("while a step runs, a report on any other lease is rejected as stale", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("long", { durationMs: 1500, output: "real" })] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.steps[0].status === "running");
    const stub = runStub(env, runId);
    expect(await stub.completeStep({ leaseId: "0.1.0", output: "forged" })).toEqual({ ok: false, reason: "stale_lease" });
    expect(await stub.heartbeat("0.9.9")).toEqual({ ok: false, reason: "stale_lease" });
    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.steps[0].output).toBe("real");
    expect(run.steps[0].attempts).toBe(1);
  });
});
