/**
 * Fair sharing between customers in workerd, with real queues and run objects. As in the priority
 * test, admission is held while the flood is submitted, then let go.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { forceLogLevel } from "../../src/lib/log";
import { finishedRuns, floodCustomer, getPoolView, oneStep, poolSettled, setPolicy, submitMany } from "../helpers-pools";

// Hundreds of runs: their info logs, each forwarded to the test runner, would cost more than the runs.
beforeAll(() => forceLogLevel("warn"));
afterAll(() => forceLogLevel(null));

const POLICY = { targetDepth: 1, maxConcurrency: 4, cooldownUpMs: 0, cooldownDownMs: 300, stabilizationWindowMs: 0 };

describe("fair sharing", () => {
  it("A floods 300 runs over 10 projects, then B submits 3: B's runs end within max(10 s, a quarter of A's drain time), before half of A's flood has ended", async () => {
    const a = await floodCustomer("flood-a");
    const b = await floodCustomer("late-b");
    await setPolicy("standard", { ...POLICY, activationThreshold: 1_000_000 });
    const flood = await submitMany(a.key, 300, (i) => oneStep(30, { projectId: `project-${i % 10}` }));
    expect((await getPoolView("standard")).depth).toBe(300);
    const releasedAt = Date.now();
    await setPolicy("standard", { ...POLICY, activationThreshold: 0 });
    await vi.waitUntil(async () => (await getPoolView("standard")).depth <= 300 - 8, { timeout: 30_000, interval: 20 });
    const submittedAt = Date.now();
    const late = await submitMany(b.key, 3, () => oneStep(30), 3);

    await poolSettled("standard", 0, 240_000);
    const runs = await finishedRuns([...flood, ...late]);
    const bLast = Math.max(...late.map((id) => runs.get(id)!.finishedAt));
    const aEnds = flood.map((id) => runs.get(id)!.finishedAt);
    const aDrainMs = Math.max(...aEnds) - releasedAt;
    const bWaitMs = bLast - submittedAt;
    const aEndedBeforeB = aEnds.filter((t) => t < bLast).length;
    console.log({ figure: "fairness", bWaitMs, aDrainMs, aEndedBeforeBsLast: aEndedBeforeB, aEndedWhenBSubmitted: aEnds.filter((t) => t < submittedAt).length });
    expect(bWaitMs).toBeLessThanOrEqual(Math.max(10_000, aDrainMs / 4));
    expect(aEndedBeforeB).toBeLessThan(150);
    expect([...runs.values()].every((r) => r.status === "succeeded")).toBe(true);
  }, 300_000);
});
