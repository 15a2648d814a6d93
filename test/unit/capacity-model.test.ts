import { describe, expect, it } from "vitest";
import { COMPONENTS, customerLedgerWithSubLedgers } from "../../src/capacity/components";
import { ceilingRate, componentLoad, firstBottleneck, harmonic } from "../../src/capacity/model";

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

describe("the hottest customer's ledger with cost sub-ledgers (LEDGER_SUBSHARDS)", () => {
  const w = { stepsPerRun: 5, hottestCustomerShare: zipfTop, hottestPoolShare: 1 };
  const [primary, subLedgers] = customerLedgerWithSubLedgers(8);

  it("splits the ledger's 0.4 requests per step into admission on the primary and deliveries over the sub-ledgers", () => {
    expect(primary!.perStep + subLedgers!.perStep).toBeCloseTo(byName("customer ledger").perStep, 10);
    const at100k = { ...w, stepsPerSecond: 100_000 };
    expect(componentLoad(subLedgers!, at100k).hottestShard).toBeCloseTo(334, 0);
    expect(componentLoad(primary!, at100k).hottestShard).toBeCloseTo(2672, 0);
  });

  it("moves the ledger's ceiling from 18,700 to 37,400 steps/s, where the primary's admission binds", () => {
    expect(ceilingRate(byName("customer ledger"), w)).toBeCloseTo(18_712, -1);
    expect(ceilingRate(subLedgers!, w)).toBeCloseTo(8 * 37_425, -2);
    expect(firstBottleneck([primary!, subLedgers!], w)).toMatchObject({ name: "customer ledger, primary (admission, holds)" });
    expect(firstBottleneck([primary!, subLedgers!], w).stepsPerSecond).toBeCloseTo(37_425, -1);
  });
});
