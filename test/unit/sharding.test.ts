import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { jumpShard } from "../../src/domain/sharding";

describe("jump consistent hash", () => {
  it("puts every key in range, and one shard means shard 0", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const s = jumpShard(key, n);
        expect(Number.isInteger(s) && s >= 0 && s < n).toBe(true);
        expect(jumpShard(key, 1)).toBe(0);
      }),
    );
  });

  it("spreads keys evenly: 20,000 customers over 16 shards within ±10% of the mean", () => {
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 20_000; i++) counts[jumpShard(`cust_${i}`, 16)] += 1;
    for (const c of counts) expect(Math.abs(c - 1250)).toBeLessThan(125);
  });

  it("growing from N to N+1 shards moves only the keys that land on the new shard", () => {
    let moved = 0;
    for (let i = 0; i < 10_000; i++) {
      const key = `run_${i}`;
      const before = jumpShard(key, 8);
      const after = jumpShard(key, 9);
      if (before !== after) {
        moved += 1;
        expect(after).toBe(8);
      }
    }
    // The expected share is 1/9 of the keys.
    expect(Math.abs(moved / 10_000 - 1 / 9)).toBeLessThan(0.02);
  });
});
