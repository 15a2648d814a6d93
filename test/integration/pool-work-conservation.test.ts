/**
 * Work conservation in workerd: a customer alone gets the whole pool, as fast as without fair
 * sharing. Same workload under "fifo" and "fair" scheduling, in the order fifo fair fair fifo so a
 * drift of the machine's speed over the file weighs on both alike.
 */
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SchedulingMode } from "../../src/domain/fair-queue";
import { forceLogLevel } from "../../src/lib/log";
import { finishedRuns, floodCustomer, getPoolView, oneStep, poolSettled, setPolicy, submitMany } from "../helpers-pools";

beforeAll(() => forceLogLevel("warn"));
afterAll(() => forceLogLevel(null));

const POLICY = { targetDepth: 1, maxConcurrency: 4, cooldownUpMs: 0, cooldownDownMs: 300, stabilizationWindowMs: 0 };

describe("work conservation", () => {
  it("A alone drains as fast as without fair sharing (fifo), within 10%; while A has work waiting, every slot is in use", async () => {
    const a = await floodCustomer("alone-a");
    const drains: Record<SchedulingMode, number[]> = { fair: [], fifo: [] };
    for (const scheduling of ["fifo", "fair", "fair", "fifo"] as const) {
      await poolSettled("standard", 0, 30_000);
      await setPolicy("standard", { ...POLICY, scheduling, activationThreshold: 1_000_000 });
      const ids = await submitMany(a.key, 60, (i) => oneStep(80, { projectId: `project-${i % 10}` }));
      expect((await getPoolView("standard")).depth).toBe(60);
      const releasedAt = Date.now();
      await setPolicy("standard", { ...POLICY, scheduling, activationThreshold: 0 });
      await poolSettled("standard", 0, 120_000);
      const runs = await finishedRuns(ids);
      drains[scheduling].push(Math.max(...[...runs.values()].map((r) => r.finishedAt)) - releasedAt);
    }
    const fair = drains.fair.reduce((x, y) => x + y, 0);
    const fifo = drains.fifo.reduce((x, y) => x + y, 0);
    console.log({ figure: "work conservation", fairDrainsMs: drains.fair, fifoDrainsMs: drains.fifo, ratio: fair / fifo });
    expect(fair).toBeLessThanOrEqual(1.1 * fifo);
    // Every sample taken while work waited found all the pool's slots in use (its desired concurrency).
    const { results } = await env.DB.prepare("SELECT depth, in_flight AS inFlight, desired FROM pool_concurrency_samples WHERE pool = 'standard' AND depth > 0 AND desired > 0").all<{ depth: number; inFlight: number; desired: number }>();
    expect(results.length).toBeGreaterThan(0);
    for (const s of results) expect(s.inFlight).toBe(s.desired);
  }, 300_000);
});
