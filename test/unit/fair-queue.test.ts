import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FairQueue, effectiveLane, type QueuedDispatch } from "../../src/domain/fair-queue";
import type { Priority } from "../../src/domain/run-status";

let seq = 0;
const d = (customerId: string, enqueuedAt: number, priority: Priority = "normal", weight = 1): QueuedDispatch => ({ key: `k${++seq}`, customerId, priority, enqueuedAt, weight });

/** Takes `n` (or all) and completes each at once with `busyMs`; returns the customers in admission order. */
function drain(q: FairQueue, now: number, agingMs: number, n = Infinity, busyMs = 100, mode: "fair" | "fifo" = "fair"): string[] {
  const order: string[] = [];
  while (order.length < n) {
    const t = q.take(now, agingMs, mode);
    if (!t) break;
    order.push(t.entry.customerId);
    q.complete(t.entry.customerId, t.charge, busyMs);
  }
  return order;
}

describe("priority lanes", () => {
  it("admit high before normal before low", () => {
    const q = new FairQueue();
    q.add({ ...d("a", 0, "low"), key: "low" });
    q.add({ ...d("a", 1, "normal"), key: "normal" });
    q.add({ ...d("a", 2, "high"), key: "high" });
    expect([q.take(10, 60_000)!.entry.key, q.take(10, 60_000)!.entry.key, q.take(10, 60_000)!.entry.key]).toEqual(["high", "normal", "low"]);
  });

  it("age: a dispatch is promoted one lane per agingMs waited", () => {
    expect(effectiveLane({ priority: "low", enqueuedAt: 0 }, 999, 1000)).toBe(2);
    expect(effectiveLane({ priority: "low", enqueuedAt: 0 }, 1000, 1000)).toBe(1);
    expect(effectiveLane({ priority: "low", enqueuedAt: 0 }, 2000, 1000)).toBe(0);
    expect(effectiveLane({ priority: "high", enqueuedAt: 0 }, 99_999, 1000)).toBe(0);
  });

  it("starvation bound: under a never-ending stream of high work, a low dispatch is admitted once it has waited 2 × agingMs", () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 5_000 }), fc.integer({ min: 1, max: 50 }), fc.boolean(), (agingMs, tick, sameCustomer) => {
        const q = new FairQueue();
        const low = { ...d(sameCustomer ? "flood" : "quiet", 0, "low"), key: "the-low-one" };
        q.add(low);
        // One slot; every tick a high dispatch arrives and one is admitted.
        for (let now = 0; now < 10 * agingMs; now += tick) {
          q.add(d("flood", now, "high"));
          const t = q.take(now, agingMs)!;
          q.complete(t.entry.customerId, t.charge, 50);
          if (t.entry.key === "the-low-one") return now <= 2 * agingMs + tick;
        }
        return false;
      }),
    );
  });
});

describe("fair sharing", () => {
  it("shares by weight: two always-busy customers with weights 1 and 3 are admitted 1 : 3", () => {
    const q = new FairQueue();
    for (let i = 0; i < 400; i++) {
      q.add(d("light", i, "normal", 1));
      q.add(d("heavy", i, "normal", 3));
    }
    const order = drain(q, 1_000, 1e9, 200);
    expect(order.filter((c) => c === "heavy").length).toBeGreaterThanOrEqual(148);
    expect(order.filter((c) => c === "heavy").length).toBeLessThanOrEqual(152);
  });

  it("weighted shares converge for any weights and any number of backlogged customers (SFQ's bound)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 2, maxLength: 6 }), fc.integer({ min: 20, max: 200 }), (weights, n) => {
        const q = new FairQueue();
        weights.forEach((w, c) => {
          for (let i = 0; i < n + 10; i++) q.add(d(`c${c}`, i, "normal", w));
        });
        const order = drain(q, 1e6, 1e12, n, 100);
        // SFQ: any two backlogged flows' normalised service differs by at most one unit each.
        const served = weights.map((_, c) => order.filter((x) => x === `c${c}`).length);
        for (let i = 0; i < weights.length; i++) {
          for (let j = 0; j < weights.length; j++) {
            if (Math.abs(served[i]! / weights[i]! - served[j]! / weights[j]!) > 1 / weights[i]! + 1 / weights[j]! + 1e-9) return false;
          }
        }
        return true;
      }),
    );
  });

  it("charges by measured busy time: a customer whose chains run 4× longer gets a quarter as many admissions", () => {
    const q = new FairQueue();
    for (let i = 0; i < 300; i++) {
      q.add(d("long", i));
      q.add(d("short", i));
    }
    const order: string[] = [];
    for (let i = 0; i < 200; i++) {
      const t = q.take(1_000, 1e9)!;
      order.push(t.entry.customerId);
      q.complete(t.entry.customerId, t.charge, t.entry.customerId === "long" ? 400 : 100);
    }
    const long = order.filter((c) => c === "long").length;
    // 1 : 4 in admissions is equal shares of busy time; the running average needs a few chains to learn.
    expect(long).toBeGreaterThan(30);
    expect(long).toBeLessThan(50);
  });

  it("is work-conserving: a customer alone gets every admission", () => {
    const q = new FairQueue();
    for (let i = 0; i < 50; i++) q.add(d("alone", i));
    expect(drain(q, 100, 1e9)).toEqual(Array(50).fill("alone"));
  });

  it("an idle customer earns no credit: back after a flood, it gets its share from then on, not a burst", () => {
    const q = new FairQueue();
    for (let i = 0; i < 500; i++) q.add(d("a", i));
    drain(q, 1_000, 1e9, 100);
    for (let i = 0; i < 50; i++) q.add(d("b", 1_000 + i));
    const next = drain(q, 2_000, 1e9, 20);
    // B goes first (its share is back at once), then they alternate: no 100-admission catch-up.
    expect(next[0]).toBe("b");
    expect(next.filter((c) => c === "b").length).toBeGreaterThanOrEqual(9);
    expect(next.filter((c) => c === "b").length).toBeLessThanOrEqual(11);
  });

  it("fifo mode: lanes, then arrival order", () => {
    const q = new FairQueue();
    for (let i = 0; i < 5; i++) q.add(d("a", i));
    q.add(d("b", 10));
    expect(drain(q, 100, 1e9, Infinity, 100, "fifo")).toEqual(["a", "a", "a", "a", "a", "b"]);
  });

  it("a re-sent key changes nothing; an admission that could not be sent is put back with its charge refunded", () => {
    const q = new FairQueue();
    const e = d("a", 5);
    expect(q.add(e)).toBe(true);
    expect(q.add({ ...e, enqueuedAt: 99 })).toBe(false);
    q.add(d("b", 6));
    const t = q.take(10, 1e9)!;
    expect(t.entry.key).toBe(e.key);
    q.untake(t.entry, t.charge);
    expect(q.size).toBe(2);
    expect(q.take(10, 1e9)!.entry.key).toBe(e.key);
  });
});
