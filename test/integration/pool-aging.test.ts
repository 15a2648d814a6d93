/** Aging in workerd: under a stream of high work from another customer, a low run waits at most about 2 × agingMs. */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { forceLogLevel } from "../../src/lib/log";
import { api } from "../helpers";
import { finishedRuns, floodCustomer, getPoolView, oneStep, poolSettled, setPolicy, submitMany } from "../helpers-pools";

beforeAll(() => forceLogLevel("warn"));
afterAll(() => forceLogLevel(null));

const POLICY = { targetDepth: 1, maxConcurrency: 1, cooldownUpMs: 0, cooldownDownMs: 300, stabilizationWindowMs: 0, agingMs: 500 };

describe("aging", () => {
  it("bounds the wait: under a stream of high work, a low run is admitted once it has waited 2 × agingMs", async () => {
    const flood = await floodCustomer("hi-flood");
    const quiet = await floodCustomer("lo-quiet");
    await setPolicy("standard", { ...POLICY, activationThreshold: 1_000_000 });
    const highs = await submitMany(flood.key, 40, () => oneStep(100, { priority: "high" }));
    await setPolicy("standard", { ...POLICY, activationThreshold: 0 });
    await vi.waitUntil(async () => (await getPoolView("standard")).depth <= 40 - 2, { timeout: 30_000, interval: 20 });
    const low = await api("POST", "/v1/runs", { key: quiet.key, body: oneStep(10, { priority: "low" }) });
    const submittedAt = Date.now();
    await poolSettled("standard", 0, 120_000);
    const runs = await finishedRuns([...highs, low.body.run.id]);
    const lowEnd = runs.get(low.body.run.id)!.finishedAt;
    const highsLeft = highs.filter((id) => runs.get(id)!.finishedAt > lowEnd).length;
    console.log({ figure: "aging", lowWaitedMs: lowEnd - submittedAt, highsStillWaitingWhenLowEnded: highsLeft });
    // 2 × 500 ms to reach the high lane, then the next free slot (a 100 ms step ahead), with room for a loaded machine.
    expect(lowEnd - submittedAt).toBeLessThan(2 * 500 + 1_500);
    // Strict priority would have served all 40 high runs first: here most were still waiting.
    expect(highsLeft).toBeGreaterThan(10);
  }, 180_000);
});
