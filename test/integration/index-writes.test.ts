/**
 * The run index's writes from the events queue: a whole batch goes to D1 in two statements
 * (runs, attempts) through json_each, and keeps the guarantees the per-row statements had: an
 * older version never overwrites a newer one, a finished attempt is never reopened, and a
 * redelivered or reordered batch changes nothing.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import type { EventMessage } from "../../src/data-plane/messages";
import { jsonChunks } from "../../src/db/json-rows";

const T = Date.UTC(2025, 5, 1);

function message(id: string, version: number, status: "running" | "succeeded", steps: number): EventMessage {
  const finished = status === "succeeded";
  return {
    kind: "run.index",
    run: {
      id, customerId: "idx-cust", projectId: "p", runType: null, pool: "standard", priority: "normal", status,
      createdAt: T, startedAt: T + 10, finishedAt: finished ? T + 500 : null, failureType: null, failedStep: null,
      idempotencyKey: null, version, dueAt: null,
    },
    attempts: Array.from({ length: steps }, (_, i) => ({
      stepIndex: i, step: `s${i}`, stepType: "synthetic", attempt: 1,
      status: finished || i < steps - 1 ? "succeeded" : "running",
      failureType: null, failureMessage: null, startedAt: T + 10 + i * 50, finishedAt: finished || i < steps - 1 ? T + 50 + i * 50 : null,
    })),
  };
}

async function deliver(messages: EventMessage[], prefix: string) {
  const batch = createMessageBatch("runplane-events", messages.map((body, i) => ({ id: `${prefix}-${i}`, timestamp: new Date(), attempts: 1, body })));
  const ctx = createExecutionContext();
  await worker.queue(batch, env, ctx);
  expect((await getQueueResult(batch, ctx)).retryMessages).toEqual([]);
}

const indexed = async (prefix: string) =>
  (await env.DB.prepare("SELECT id, status, version, duration_ms FROM runs WHERE id LIKE ?1 ORDER BY id").bind(`${prefix}%`).all<{ id: string; status: string; version: number; duration_ms: number | null }>()).results;
const attempts = async (prefix: string) =>
  (await env.DB.prepare("SELECT run_id, step_index, status, duration_ms FROM step_attempts WHERE run_id LIKE ?1 ORDER BY run_id, step_index").bind(`${prefix}%`).all<{ run_id: string; step_index: number; status: string; duration_ms: number | null }>()).results;

describe("run index writes per events batch", () => {
  it("writes a batch of 100 runs and their 500 attempts, each row as the message says", async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `run_idxa${String(i).padStart(3, "0")}`);
    await deliver(ids.map((id) => message(id, 7, "succeeded", 5)), "a");
    const runs = await indexed("run_idxa");
    expect(runs).toHaveLength(100);
    expect(runs.every((r) => r.status === "succeeded" && r.version === 7 && r.duration_ms === 490)).toBe(true);
    const rows = await attempts("run_idxa");
    expect(rows).toHaveLength(500);
    expect(rows.every((a) => a.status === "succeeded" && a.duration_ms === 40)).toBe(true);
  });

  it("never lets an older version overwrite a newer one, nor reopens a finished attempt, in either order", async () => {
    await deliver([message("run_idxb1", 9, "succeeded", 3), message("run_idxb2", 4, "running", 3)], "b1");
    // Redelivered late and out of order: b1's older running state, b2's newer finished one.
    await deliver([message("run_idxb1", 5, "running", 3), message("run_idxb2", 8, "succeeded", 3)], "b2");
    expect(await indexed("run_idxb")).toEqual([
      { id: "run_idxb1", status: "succeeded", version: 9, duration_ms: 490 },
      { id: "run_idxb2", status: "succeeded", version: 8, duration_ms: 490 },
    ]);
    expect((await attempts("run_idxb")).map((a) => `${a.run_id}.${a.step_index}:${a.status}`)).toEqual([
      "run_idxb1.0:succeeded", "run_idxb1.1:succeeded", "run_idxb1.2:succeeded",
      "run_idxb2.0:succeeded", "run_idxb2.1:succeeded", "run_idxb2.2:succeeded",
    ]);
    // The same batch again changes nothing.
    const before = await indexed("run_idxb");
    await deliver([message("run_idxb1", 5, "running", 3), message("run_idxb2", 8, "succeeded", 3)], "b3");
    expect(await indexed("run_idxb")).toEqual(before);
  });

  it("splits rows into JSON chunks under the size bound, none lost", () => {
    const rows = Array.from({ length: 250 }, (_, i) => [`run_${i}`, i, "x".repeat(40)]);
    const chunks = jsonChunks(rows, 2_000);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(2_000);
    expect(chunks.flatMap((c) => JSON.parse(c))).toEqual(rows);
  });
});
