import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decideConcurrency, initialHistory, ScalingPolicySchema, type ScalingHistory, type ScalingPolicy } from "../../src/domain/scaling-policy";
import { advanceMeter, emptyMeter, processingRateOf, recordSteps, utilizationOf } from "../../src/domain/pool-meter";

const policy = (over: Partial<ScalingPolicy> = {}): ScalingPolicy => ({
  scaleUpThreshold: 0,
  scaleDownThreshold: 0,
  targetDepth: 1,
  cooldownUpMs: 0,
  cooldownDownMs: 0,
  stabilizationWindowMs: 0,
  minConcurrency: 0,
  maxConcurrency: 100,
  activationThreshold: 0,
  tolerance: 0,
  utilizationLow: 0.7,
  utilizationHigh: 0.9,
  agingMs: 1000,
  scheduling: "fair",
  ...over,
});

const at = (current: number, over: Partial<ScalingHistory> = {}): ScalingHistory => ({ ...initialHistory(current), ...over });

describe("desired concurrency", () => {
  it("a rising backlog scales up only once the depth passes the scale-up threshold, to ceil(backlog / targetDepth)", () => {
    const p = policy({ scaleUpThreshold: 5, targetDepth: 2 });
    let h = at(2);
    for (let depth = 0; depth <= 5; depth++) {
      const d = decideConcurrency(p, { depth, inFlight: 2, utilization: 0.8, now: 1000 + depth }, h);
      expect(d.changed, `depth ${depth}`).toBe(false);
      h = d.history;
    }
    const up = decideConcurrency(p, { depth: 6, inFlight: 2, utilization: 0.8, now: 2000 }, h);
    expect(up).toMatchObject({ changed: true, desired: 4 });
    expect(up.reason).toMatch(/scale up: backlog 8/);
    expect(up.history.lastScaleUpAt).toBe(2000);
  });

  it("leaves zero only when the backlog passes the activation threshold, then at once", () => {
    const p = policy({ activationThreshold: 3, targetDepth: 2, cooldownUpMs: 60_000 });
    expect(decideConcurrency(p, { depth: 0, inFlight: 0, utilization: null, now: 0 }, at(0))).toMatchObject({ desired: 0, reason: "idle" });
    expect(decideConcurrency(p, { depth: 3, inFlight: 0, utilization: null, now: 0 }, at(0))).toMatchObject({ desired: 0, changed: false });
    // The up-cooldown does not apply to leaving zero (a pool at zero has nothing to cool down from).
    expect(decideConcurrency(p, { depth: 4, inFlight: 0, utilization: null, now: 1 }, at(0, { lastScaleUpAt: 0 }))).toMatchObject({ desired: 2, changed: true });
  });

  it("cooldowns block flapping: under a backlog swinging every 100 ms, ups are cooldownUpMs apart and downs cooldownDownMs after any change", () => {
    const p = policy({ cooldownUpMs: 1_000, cooldownDownMs: 5_000, stabilizationWindowMs: 0 });
    let h = at(1);
    const changes: { at: number; from: number; to: number }[] = [];
    for (let t = 0; t < 60_000; t += 100) {
      const depth = Math.floor(t / 100) % 2 === 0 ? 40 : 0;
      const d = decideConcurrency(p, { depth, inFlight: 0, utilization: 0.8, now: t }, h);
      if (d.changed) changes.push({ at: t, from: h.current, to: d.desired });
      h = d.history;
    }
    expect(changes.length).toBeGreaterThan(0);
    // A swing every 100 ms would be 600 changes without cooldowns.
    expect(changes.length).toBeLessThan(30);
    for (let i = 1; i < changes.length; i++) {
      const c = changes[i]!;
      if (c.to > c.from) {
        const lastUp = [...changes.slice(0, i)].reverse().find((x) => x.to > x.from);
        if (lastUp) expect(c.at - lastUp.at).toBeGreaterThanOrEqual(1_000);
      } else {
        expect(c.at - changes[i - 1]!.at).toBeGreaterThanOrEqual(5_000);
      }
    }
  });

  it("a drained pool goes to minConcurrency = 0 after the down-cooldown, and says when to look again", () => {
    const p = policy({ cooldownDownMs: 30_000, stabilizationWindowMs: 10_000 });
    const h = at(10, { lastScaleUpAt: 0 });
    const early = decideConcurrency(p, { depth: 0, inFlight: 0, utilization: 0.1, now: 29_999 }, h);
    expect(early).toMatchObject({ desired: 10, changed: false, recheckAt: 30_000 });
    const after = decideConcurrency(p, { depth: 0, inFlight: 0, utilization: 0.1, now: 30_000 }, early.history);
    expect(after).toMatchObject({ desired: 0, changed: true, reason: "scale to zero: nothing waiting or running" });
  });

  it("scale-down stabilization: goes only as low as the highest recommendation of the window", () => {
    const p = policy({ stabilizationWindowMs: 10_000, targetDepth: 1 });
    let h = at(10, { lastScaleUpAt: -100_000 });
    // Recommendations 8 (t=0), 3 (t=5 s): at 5 s the window's highest is 8.
    h = decideConcurrency(p, { depth: 0, inFlight: 8, utilization: null, now: 0 }, h).history;
    expect(h.current).toBe(8);
    const d = decideConcurrency(p, { depth: 0, inFlight: 3, utilization: null, now: 5_000 }, h);
    expect(d).toMatchObject({ desired: 8, changed: false, recheckAt: 10_000 });
    const later = decideConcurrency(p, { depth: 0, inFlight: 3, utilization: null, now: 10_000 }, d.history);
    expect(later).toMatchObject({ desired: 3, changed: true });
  });

  it("never scales below the chains in flight: a busy worker is retired only when idle", () => {
    const p = policy({ targetDepth: 4 });
    // backlog 10 at 4 per worker would be 3 (and utilization 20% of 12 would be 3), but 10 chains run.
    expect(decideConcurrency(p, { depth: 0, inFlight: 10, utilization: 0.2, now: 1 }, at(12))).toMatchObject({ desired: 10 });
    // Inside the utilization band the pool holds: its workers are busy.
    expect(decideConcurrency(p, { depth: 0, inFlight: 10, utilization: 0.8, now: 1 }, at(12))).toMatchObject({ desired: 12, changed: false });
  });

  it("tolerance: a change within the band is ignored; the floor is always reachable", () => {
    const p = policy({ tolerance: 0.1 });
    expect(decideConcurrency(p, { depth: 1, inFlight: 10, utilization: 0.8, now: 1 }, at(10))).toMatchObject({ desired: 10, changed: false });
    expect(decideConcurrency(p, { depth: 2, inFlight: 10, utilization: 0.8, now: 1 }, at(10))).toMatchObject({ desired: 12, changed: true });
    expect(decideConcurrency(p, { depth: 0, inFlight: 0, utilization: 0.8, now: 1 }, at(1))).toMatchObject({ desired: 0, changed: true });
  });

  it("utilization alone can scale up: nothing waits, but every slot is busy", () => {
    const p = policy({ scaleUpThreshold: 5 });
    const d = decideConcurrency(p, { depth: 0, inFlight: 4, utilization: 1, now: 1 }, at(4));
    // HPA: ceil(4 × 100% / 80% (the band's middle)) = 5.
    expect(d).toMatchObject({ desired: 5, changed: true });
    expect(d.reason).toMatch(/utilization 100% outside 70%–90%/);
    // In the band it holds, and depth alone (under its threshold) would not scale up.
    expect(decideConcurrency(p, { depth: 0, inFlight: 4, utilization: 0.85, now: 1 }, at(4))).toMatchObject({ desired: 4, changed: false });
  });

  it("takes the larger of the backlog and utilization answers", () => {
    const p = policy({ targetDepth: 10 });
    // backlog 20 at 10 per worker: 2; utilization in band at 6 workers: holds 6.
    expect(decideConcurrency(p, { depth: 14, inFlight: 6, utilization: 0.8, now: 1 }, at(6)).desired).toBe(6);
    // backlog 200: 20, more than utilization's answer.
    expect(decideConcurrency(p, { depth: 194, inFlight: 6, utilization: 0.8, now: 1 }, at(6)).desired).toBe(20);
  });

  it("bounds hold whatever the signals: min ≤ desired ≤ max, and desired ≥ in flight", () => {
    fc.assert(
      fc.property(
        fc.record({
          min: fc.integer({ min: 0, max: 5 }),
          span: fc.integer({ min: 1, max: 50 }),
          targetDepth: fc.integer({ min: 1, max: 8 }),
          up: fc.integer({ min: 0, max: 10 }),
          tolerance: fc.double({ min: 0, max: 0.5, noNaN: true }),
        }),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 5_000 }), depth: fc.integer({ min: 0, max: 500 }), running: fc.integer({ min: 0, max: 80 }), util: fc.option(fc.double({ min: 0, max: 1, noNaN: true })) }), { minLength: 1, maxLength: 60 }),
        (cfg, steps) => {
          const p = policy({ minConcurrency: cfg.min, maxConcurrency: cfg.min + cfg.span, targetDepth: cfg.targetDepth, scaleUpThreshold: cfg.up, tolerance: cfg.tolerance, cooldownUpMs: 500, cooldownDownMs: 2_000, stabilizationWindowMs: 1_000 });
          let h = at(cfg.min);
          let now = 0;
          for (const s of steps) {
            now += s.dt;
            // In flight never exceeds desired (admission), so the signals respect it.
            const inFlight = Math.min(s.running, h.current);
            const d = decideConcurrency(p, { depth: s.depth, inFlight, utilization: s.util, now }, h);
            if (d.desired < p.minConcurrency || d.desired > p.maxConcurrency || d.desired < inFlight) return false;
            h = d.history;
          }
          return true;
        },
      ),
    );
  });

  it("the policy schema refuses bounds that cross", () => {
    expect(ScalingPolicySchema.safeParse(policy()).success).toBe(true);
    expect(ScalingPolicySchema.safeParse({ ...policy(), minConcurrency: 5, maxConcurrency: 4 }).success).toBe(false);
    expect(ScalingPolicySchema.safeParse({ ...policy(), scaleUpThreshold: 0, scaleDownThreshold: 1 }).success).toBe(false);
  });
});

describe("pool meter", () => {
  it("utilization is busy slot-time over provisioned slot-time; the rate is steps per second over the window", () => {
    let m = emptyMeter(0);
    // 10 s with 4 slots provisioned, 3 busy.
    m = advanceMeter(m, 10_000, 3, 4, 30_000);
    expect(utilizationOf(m)).toBeCloseTo(0.75, 6);
    // A long idle stretch at zero: the ratio fades out to "no capacity".
    expect(utilizationOf(advanceMeter(m, 10_000_000, 0, 0, 30_000))).toBeNull();
    let r = emptyMeter(0);
    for (let t = 100; t <= 120_000; t += 100) r = recordSteps(advanceMeter(r, t, 1, 1, 30_000), 2);
    // 2 steps every 100 ms: 20 steps/s.
    expect(processingRateOf(r)).toBeGreaterThan(19);
    expect(processingRateOf(r)).toBeLessThan(21);
  });

  it("reads a burst's rate as it is from a meter's first seconds (no start-up bias), and nothing before a second of it", () => {
    let r = emptyMeter(0);
    expect(processingRateOf(advanceMeter(recordSteps(r, 5), 500, 1, 1, 30_000))).toBe(0);
    // A fresh controller sees 300 steps/s for 5 s: a plain moving average would read ~45.
    for (let t = 100; t <= 5_000; t += 100) r = recordSteps(advanceMeter(r, t, 1, 1, 30_000), 30);
    expect(processingRateOf(r)).toBeGreaterThan(290);
    expect(processingRateOf(r)).toBeLessThan(310);
  });
});
