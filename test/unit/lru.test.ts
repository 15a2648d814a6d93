import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LruCache } from "../../src/lib/lru";

function clocked(max: number) {
  let now = 1_000;
  const cache = new LruCache<string, number>(max, () => now);
  return { cache, advance: (ms: number) => (now += ms) };
}

describe("LruCache", () => {
  it("never holds more than maxEntries, dropping the least recently used first", () => {
    const { cache } = clocked(3);
    for (const k of ["a", "b", "c"]) cache.set(k, 1, 10_000);
    expect(cache.get("a")).toBe(1); // a is now the most recently used
    cache.set("d", 1, 10_000); // b goes
    expect(cache.size).toBe(3);
    expect(cache.get("b")).toBeUndefined();
    expect(["a", "c", "d"].map((k) => cache.get(k))).toEqual([1, 1, 1]);
    // 10,000 distinct keys into a cache of 100: still 100, and the last 100 are the ones kept.
    const big = clocked(100).cache;
    for (let i = 0; i < 10_000; i++) big.set(`k${i}`, i, 60_000);
    expect(big.size).toBe(100);
    expect(big.get("k9999")).toBe(9999);
    expect(big.get("k9900")).toBe(9900);
    expect(big.get("k9899")).toBeUndefined();
  });

  it("expires each entry after its own ttl, and removes it when read", () => {
    const { cache, advance } = clocked(10);
    cache.set("miss", 0, 5_000);
    cache.set("hit", 1, 30_000);
    advance(4_999);
    expect(cache.get("miss")).toBe(0);
    advance(1);
    expect(cache.get("miss")).toBeUndefined();
    expect(cache.size).toBe(1);
    expect(cache.get("hit")).toBe(1);
    advance(25_000);
    expect(cache.get("hit")).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("set again replaces value and ttl; a ttl of 0 or less stores nothing and removes the old entry", () => {
    const { cache, advance } = clocked(10);
    cache.set("k", 1, 1_000);
    cache.set("k", 2, 10_000);
    advance(5_000);
    expect(cache.get("k")).toBe(2);
    cache.set("k", 3, 0);
    expect(cache.get("k")).toBeUndefined();
    cache.set("n", 1, Number.NaN);
    expect(cache.size).toBe(0);
    expect(() => new LruCache(0)).toThrow(RangeError);
    expect(cache.delete("absent")).toBe(false);
  });

  it("behaves like a model map with an LRU order, for any sequence of operations", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), key: fc.integer({ min: 0, max: 9 }), ttl: fc.integer({ min: -5, max: 50 }) }),
      fc.record({ kind: fc.constant("get" as const), key: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant("tick" as const), ms: fc.integer({ min: 0, max: 30 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 200 }), (max, ops) => {
        let now = 0;
        const cache = new LruCache<number, number>(max, () => now);
        // The model: keys in use order (oldest first) with value and expiry.
        let model: { key: number; value: number; expiresAt: number }[] = [];
        let n = 0;
        for (const o of ops) {
          if (o.kind === "tick") now += o.ms;
          else if (o.kind === "set") {
            model = model.filter((e) => e.key !== o.key);
            const value = n++;
            if (o.ttl > 0) model.push({ key: o.key, value, expiresAt: now + o.ttl });
            while (model.length > max) model.shift();
            cache.set(o.key, value, o.ttl);
          } else {
            const entry = model.find((e) => e.key === o.key);
            model = model.filter((e) => e.key !== o.key);
            const live = entry && entry.expiresAt > now ? entry : undefined;
            if (live) model.push(live);
            if (cache.get(o.key) !== live?.value) return false;
          }
          if (cache.size > max || cache.size !== model.length) return false;
        }
        return true;
      }),
    );
  });
});
