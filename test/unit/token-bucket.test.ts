import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rateLimitDefaults, parseStoredPlan, RateLimitSchema } from "../../src/domain/plan";
import { assertValidConfig, fullBucket, refill, retryAfterSeconds, take, type BucketState, type RateLimitConfig } from "../../src/domain/token-bucket";

const DEFAULT: RateLimitConfig = { requestsPerSecond: 100, burst: 200 };

/** Requests at the given instants against one bucket: which were allowed, and the refusals' waits. */
function replay(config: RateLimitConfig, times: number[]) {
  let state: BucketState = fullBucket(config, times[0] ?? 0);
  return times.map((t) => {
    const r = take(state, config, t);
    state = r.state;
    return r;
  });
}

describe("token bucket", () => {
  it("lets a burst of `burst` through at one instant and refuses the next, with the wait for one token", () => {
    const results = replay(DEFAULT, Array(201).fill(0));
    expect(results.slice(0, 200).every((r) => r.allowed)).toBe(true);
    const last = results[200]!;
    expect(last.allowed).toBe(false);
    expect(!last.allowed && last.retryAfterMs).toBe(10); // 1 token at 100/s
    expect(retryAfterSeconds(10)).toBe(1);
    expect(retryAfterSeconds(1_001)).toBe(2);
  });

  it("150 requests at once pass with the default limit; so does polling at 50/s forever", () => {
    expect(replay(DEFAULT, Array(150).fill(0)).every((r) => r.allowed)).toBe(true);
    const polling = Array.from({ length: 5_000 }, (_, i) => i * 20); // 100 s at 50 requests/s
    expect(replay(DEFAULT, polling).every((r) => r.allowed)).toBe(true);
    // Exactly at the sustained rate after emptying the bucket still never fails.
    const atRate = [...Array(200).fill(0), ...Array.from({ length: 1_000 }, (_, i) => 10 * (i + 1))];
    expect(replay(DEFAULT, atRate).every((r) => r.allowed)).toBe(true);
  });

  const config = fc.record({ requestsPerSecond: fc.double({ min: 0.01, max: 10_000, noNaN: true }), burst: fc.integer({ min: 1, max: 1_000 }) });
  const instants = fc.array(fc.integer({ min: 0, max: 100_000 }), { maxLength: 300 }).map((ts) => ts.sort((a, b) => a - b));

  it("never allows more than burst + rate × elapsed in any window", () => {
    fc.assert(
      fc.property(config, instants, (cfg, times) => {
        const allowed = replay(cfg, times)
          .map((r, i) => (r.allowed ? times[i]! : null))
          .filter((t): t is number => t !== null);
        for (let i = 0; i < allowed.length; i++) {
          for (let j = i; j < allowed.length; j++) {
            if (j - i + 1 > cfg.burst + ((allowed[j]! - allowed[i]!) * cfg.requestsPerSecond) / 1000 + 1e-6) return false;
          }
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });

  it("a refused request that waits retryAfterMs is let through (refusals take no token)", () => {
    fc.assert(
      fc.property(config, instants, fc.integer({ min: 0, max: 50 }), (cfg, times, refusedAfter) => {
        let state: BucketState = fullBucket(cfg, 0);
        for (const t of times) state = take(state, cfg, t).state;
        const at = times[times.length - 1] ?? 0;
        // Empty the bucket at one instant, then keep asking: every refusal names a wait that suffices.
        for (let i = 0; i < cfg.burst + refusedAfter; i++) state = take(state, cfg, at).state;
        const refused = take(state, cfg, at);
        if (refused.allowed) return false;
        for (let i = 0; i < refusedAfter; i++) state = take(refused.state, cfg, at).state;
        const later = take(state, cfg, at + refused.retryAfterMs);
        return later.allowed && refused.retryAfterMs <= Math.ceil(1000 / cfg.requestsPerSecond);
      }),
      { numRuns: 300 },
    );
  });

  it("refills to burst at most; a clock that goes back adds nothing", () => {
    const empty: BucketState = { tokens: 0, updatedAt: 10_000 };
    expect(refill(empty, DEFAULT, 1_000_000).tokens).toBe(200);
    expect(refill(empty, DEFAULT, 10_500).tokens).toBeCloseTo(50);
    expect(refill(empty, DEFAULT, 5_000)).toEqual({ tokens: 0, updatedAt: 10_000 });
    expect(take(empty, DEFAULT, 5_000).allowed).toBe(false);
    // A lowered burst caps a fuller bucket.
    expect(refill({ tokens: 200, updatedAt: 0 }, { requestsPerSecond: 1, burst: 5 }, 0).tokens).toBe(5);
  });

  it("rejects configurations that could never admit or never refill", () => {
    expect(() => assertValidConfig({ requestsPerSecond: 0, burst: 1 })).toThrow(RangeError);
    expect(() => assertValidConfig({ requestsPerSecond: Number.NaN, burst: 1 })).toThrow(RangeError);
    expect(() => assertValidConfig({ requestsPerSecond: 1, burst: 0 })).toThrow(RangeError);
    expect(() => assertValidConfig({ requestsPerSecond: 1, burst: 1.5 })).toThrow(RangeError);
    expect(() => assertValidConfig(DEFAULT)).not.toThrow();
  });
});

describe("plans and rate limit defaults", () => {
  it("defaults to 100/s burst 200; 0 turns the default off; bad values are errors naming the variable", () => {
    expect(rateLimitDefaults({})).toEqual({ config: { requestsPerSecond: 100, burst: 200 } });
    expect(rateLimitDefaults({ RATE_LIMIT_RPS: "2.5", RATE_LIMIT_BURST: "10" })).toEqual({ config: { requestsPerSecond: 2.5, burst: 10 } });
    expect(rateLimitDefaults({ RATE_LIMIT_RPS: "0" })).toEqual({ config: null });
    expect(rateLimitDefaults({ RATE_LIMIT_RPS: "fast" })).toMatch(/RATE_LIMIT_RPS/);
    expect(rateLimitDefaults({ RATE_LIMIT_RPS: "-1" })).toMatch(/RATE_LIMIT_RPS/);
    expect(rateLimitDefaults({ RATE_LIMIT_BURST: "1.5" })).toMatch(/RATE_LIMIT_BURST/);
    expect(rateLimitDefaults({ RATE_LIMIT_BURST: "0" })).toMatch(/RATE_LIMIT_BURST/);
  });

  it("a stored plan from before limits existed reads with the defaults; a plan's limit is validated", () => {
    expect(parseStoredPlan('{"monthlyFeeNanoUsd":"1","pricePerRunNanoUsd":"2"}')).toEqual({ monthlyFeeNanoUsd: "1", pricePerRunNanoUsd: "2", maxRunsInFlight: 1000, weight: 1 });
    expect(parseStoredPlan("{}").maxRunsInFlight).toBe(1000);
    expect(RateLimitSchema.safeParse({ requestsPerSecond: 0, burst: 1 }).success).toBe(false);
    expect(RateLimitSchema.safeParse({ requestsPerSecond: 1, burst: 0.5 }).success).toBe(false);
    expect(RateLimitSchema.safeParse({ requestsPerSecond: 1, burst: 1, extra: 1 }).success).toBe(false);
    expect(RateLimitSchema.safeParse({ requestsPerSecond: 0.5, burst: 1 }).success).toBe(true);
  });
});
