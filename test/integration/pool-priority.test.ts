/**
 * Priority lanes in workerd, with real queues and run objects: a high run is not stuck behind a
 * low backlog, and the low backlog still drains. Admission is held while the backlog is submitted
 * (the pool stays at zero below its activation threshold), so the figures do not depend on how
 * fast this machine submits; then the pool is let go, and is busy with the backlog when the high
 * run arrives. (Aging's bound: pool-aging.test.ts; each scenario has a file, so a fresh runtime.)
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { forceLogLevel } from "../../src/lib/log";
import { api } from "../helpers";
import { finishedRuns, floodCustomer, getPoolView, oneStep, poolSettled, setPolicy, submitMany } from "../helpers-pools";

// Hundreds of runs: their info logs, each forwarded to the test runner, would cost more than the runs.
beforeAll(() => forceLogLevel("warn"));
afterAll(() => forceLogLevel(null));

const POLICY = { targetDepth: 1, maxConcurrency: 4, cooldownUpMs: 0, cooldownDownMs: 300, stabilizationWindowMs: 0 };

describe("priority lanes", () => {
  it("300 low runs queued, then 1 high: the high run ends before 30% of the low backlog has ended, and the low backlog still drains", async () => {
    const customer = await floodCustomer("prio");
    await setPolicy("standard", { ...POLICY, activationThreshold: 1_000_000 });
    const lows = await submitMany(customer.key, 300, () => oneStep(30, { priority: "low" }));
    expect((await getPoolView("standard")).depthByPriority.low).toBe(300);
    const releasedAt = Date.now();
    await setPolicy("standard", { ...POLICY, activationThreshold: 0 });
    // The pool is draining the low backlog when the high run arrives.
    await vi.waitUntil(async () => (await getPoolView("standard")).depth <= 300 - 8, { timeout: 30_000, interval: 20 });
    const high = await api("POST", "/v1/runs", { key: customer.key, body: oneStep(30, { priority: "high" }) });
    expect(high.status).toBe(202);
    const submittedAt = Date.now();

    await poolSettled("standard", 0, 240_000);
    const runs = await finishedRuns([...lows, high.body.run.id]);
    const highEnd = runs.get(high.body.run.id)!.finishedAt;
    const lowEnds = lows.map((id) => runs.get(id)!);
    const endedBefore = lowEnds.filter((r) => r.finishedAt < highEnd).length;
    console.log({
      figure: "priority",
      lowEndedBeforeHigh: endedBefore,
      lowEndedWhenHighSubmitted: lowEnds.filter((r) => r.finishedAt < submittedAt).length,
      highTookMs: highEnd - submittedAt,
      lowDrainMs: Math.max(...lowEnds.map((r) => r.finishedAt)) - releasedAt,
    });
    expect(endedBefore).toBeLessThan(0.3 * 300);
    // …and the low backlog still drains, every run of it.
    expect(lowEnds.every((r) => r.status === "succeeded")).toBe(true);
    expect(runs.get(high.body.run.id)!.status).toBe("succeeded");
  }, 300_000);
});
