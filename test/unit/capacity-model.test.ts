import { describe, expect, it } from "vitest";
import { COMPONENTS } from "../../src/capacity/components";
import { componentLoad, firstBottleneck, harmonic } from "../../src/capacity/model";

const zipfTop = 1 / harmonic(1000);
const workload = (stepsPerSecond: number) => ({ stepsPerSecond, stepsPerRun: 5, hottestCustomerShare: zipfTop, hottestPoolShare: 1 });
const byName = (name: string) => COMPONENTS.find((c) => c.name.startsWith(name))!;

describe("capacity model", () => {
  it("gives the busiest of 1,000 Zipf customers 1 / H(1000) ≈ 13.4% of the steps", () => {
    expect(zipfTop).toBeCloseTo(0.1336, 4);
  });

  it("puts the hottest customer's ledger at 0.4 × 13.4% of the step rate", () => {
    const at10k = componentLoad(byName("customer ledger"), workload(10_000));
    expect(at10k.hottestShard).toBeCloseTo(534.4, 1);
    expect(at10k.utilization).toBeCloseTo(0.534, 3);
    expect(at10k.shardsNeeded).toBe(1);
    const at100k = componentLoad(byName("customer ledger"), workload(100_000));
    // 5,343 requests/s against 1,000 per object at a 70% target: 8 sub-shards.
    expect(at100k.shardsNeeded).toBe(8);
  });

  it("keeps a run's own object far below its ceiling at any rate: runs scale out", () => {
    expect(componentLoad(byName("run objects"), workload(100_000)).utilization).toBeLessThan(0.1);
  });

  it("names the pool controller, at one shard, as the first ceiling of today's configuration (1,000 ÷ 0.4 steps/s), and D1's writes (1,000 ÷ 0.22) once it is sharded", () => {
    const controller = byName("pool controller");
    const first = firstBottleneck(COMPONENTS, workload(0));
    expect(first.name).toBe("pool controller");
    expect(first.stepsPerSecond).toBeCloseTo(1_000 / controller.perStep, 0);
    const sharded = COMPONENTS.map((c) => (c === controller ? { ...c, shards: 8 } : c));
    const next = firstBottleneck(sharded, workload(0));
    expect(next.name).toBe("D1 writes");
    expect(next.stepsPerSecond).toBeCloseTo(4545, 0);
  });
});
