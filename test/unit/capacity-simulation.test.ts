/**
 * Issue 14's simulation: 1,000 customers in a Zipf mix at 10,000 and 100,000 steps/s, assigned
 * to controller shards and ledger objects by the real shard functions and admitted by the real
 * FairQueue, with shard counts as an operator would configure them from the capacity model.
 * It shows no shard past its ceiling, fair shares and priority holding across shards, and how
 * the figures move from 10k to 100k (printed as a table).
 */
import { describe, expect, it } from "vitest";
import { COMPONENTS, customerLedgerWithSubLedgers, LEDGER_ADMISSIONS_PER_STEP, LEDGER_DELIVERIES_PER_STEP } from "../../src/capacity/components";
import { allocationDistance, simulatePool, waterFill, type SimulationConfig, type SimulationResult } from "../../src/capacity/simulation";
import { jumpShard } from "../../src/domain/sharding";

const DO_CEILING = 1_000;
/** Operators size shards to stay at or below this share of a ceiling. */
const TARGET = 0.7;
const CUSTOMERS = 1_000;
const ZIPF = 1.0;
const component = (name: string) => COMPONENTS.find((c) => c.name.startsWith(name))!;
const CONTROLLER_PER_STEP = component("pool controller").perStep;
/** Every tenth customer pays for weight 2, and the second-largest for weight 4. */
const weightOf = (id: string) => (id === "cus_0002" ? 4 : Number(id.slice(4)) % 10 === 0 ? 2 : 1);

/** The configuration an operator derives from the model for a rate: controller shards, and LEDGER_SUBSHARDS for customers whose ledger would pass the target. */
function configFor(stepsPerSecond: number): Pick<SimulationConfig, "controllerShards" | "ledgerShardsOf"> & { subLedgers: Record<string, number> } {
  let h = 0;
  for (let k = 1; k <= CUSTOMERS; k++) h += 1 / k ** ZIPF;
  const subLedgers: Record<string, number> = {};
  for (let k = 1; k <= CUSTOMERS; k++) {
    const steps = stepsPerSecond / k ** ZIPF / h;
    if (steps * (LEDGER_ADMISSIONS_PER_STEP + LEDGER_DELIVERIES_PER_STEP) <= DO_CEILING * TARGET) break;
    // At least 2: one sub-ledger would only be the primary again.
    subLedgers[`cus_${String(k).padStart(4, "0")}`] = Math.max(2, Math.ceil((steps * LEDGER_DELIVERIES_PER_STEP) / (DO_CEILING * TARGET)));
  }
  return {
    controllerShards: Math.ceil((stepsPerSecond * CONTROLLER_PER_STEP) / (DO_CEILING * TARGET)),
    ledgerShardsOf: (id) => subLedgers[id] ?? 1,
    subLedgers,
  };
}

function run(stepsPerSecond: number, arrivalMs: number, overrides: Partial<SimulationConfig> = {}): SimulationResult & { config: SimulationConfig } {
  const stepMs = 100;
  const config: SimulationConfig = {
    stepsPerSecond,
    customers: CUSTOMERS,
    zipfExponent: ZIPF,
    arrivalMs,
    stepMs,
    // 10% short of the demand: contention all along, so the shares are the scheduler's doing.
    concurrency: Math.round(0.9 * ((stepsPerSecond * stepMs) / 1000)),
    ledgerAdmissionsPerStep: LEDGER_ADMISSIONS_PER_STEP,
    ledgerDeliveriesPerStep: LEDGER_DELIVERIES_PER_STEP,
    controllerRequestsPerStep: CONTROLLER_PER_STEP,
    priorityMix: { high: 0.05, normal: 0.8, low: 0.15 },
    weightOf,
    agingMs: 30_000,
    tickMs: 5,
    seed: 14,
    ...configFor(stepsPerSecond),
    ...overrides,
  };
  return { ...simulatePool(config), config };
}

function fairness(result: SimulationResult): number {
  const admitted = result.customers.reduce((t, c) => t + c.admittedDuringArrivals, 0);
  const ideal = waterFill(result.customers.map((c) => ({ id: c.customerId, demand: c.arrived, weight: c.weight })), admitted);
  return allocationDistance(new Map(result.customers.map((c) => [c.customerId, c.admittedDuringArrivals])), ideal);
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
};
const mean = (xs: number[]) => xs.reduce((t, x) => t + x, 0) / Math.max(1, xs.length);

const figures: Record<string, unknown>[] = [];
const customerIdsByRank = Array.from({ length: CUSTOMERS }, (_, i) => `cus_${String(i + 1).padStart(4, "0")}`);

describe.each([
  { stepsPerSecond: 10_000, arrivalMs: 3_000 },
  { stepsPerSecond: 100_000, arrivalMs: 1_000 },
])("at $stepsPerSecond steps/s from 1,000 customers (Zipf 1.0)", ({ stepsPerSecond, arrivalMs }) => {
  const result = run(stepsPerSecond, arrivalMs);
  const arrived = result.customers.reduce((t, c) => t + c.arrived, 0);

  it("no controller shard and no cost sub-ledger passes its ceiling, and everything is admitted in the end", () => {
    expect(result.admitted).toBe(arrived);
    expect(result.controllerShards).toHaveLength(result.config.controllerShards);
    expect(result.controllerShards[0]!.peakPerSecond).toBeLessThanOrEqual(DO_CEILING);
    const subLedgers = result.ledgers.filter((l) => l.name.includes("#"));
    if (stepsPerSecond >= 100_000) expect(subLedgers.length).toBeGreaterThan(0);
    for (const l of subLedgers) expect(l.peakPerSecond).toBeLessThanOrEqual(DO_CEILING);
  });

  it("the primary ledgers pass the ceiling only where the model says admission binds (its 0.2 requests per step stay on the primary)", () => {
    const over = result.ledgers.filter((l) => l.peakPerSecond > DO_CEILING).map((l) => l.name);
    const primary = customerLedgerWithSubLedgers(8)[0]!;
    // The model's customers over the ceiling: those whose admissions alone exceed it (Zipf 1: rank k sends 1/(k·H) of the steps).
    let h = 0;
    for (let k = 1; k <= CUSTOMERS; k++) h += 1 / k ** ZIPF;
    const predicted = customerIdsByRank.filter((_, i) => (stepsPerSecond * primary.perStep) / ((i + 1) ** ZIPF * h) > DO_CEILING);
    expect(over.sort()).toEqual(predicted.sort());
    if (stepsPerSecond <= 10_000) expect(over).toEqual([]);
    figures.push({ stepsPerSecond, primaryLedgersOverCeiling: over, hottestPrimaryPerS: Math.round(result.ledgers.find((l) => !l.name.includes("#"))!.peakPerSecond) });
  });

  it("without the shards the same traffic would pass the ceilings (the shards are what holds)", () => {
    const unsharded = run(stepsPerSecond, Math.min(arrivalMs, 1_000), { controllerShards: 1, ledgerShardsOf: () => 1 });
    expect(unsharded.controllerShards[0]!.peakPerSecond).toBeGreaterThan(DO_CEILING);
    if (stepsPerSecond >= 100_000) expect(unsharded.ledgers[0]!.peakPerSecond).toBeGreaterThan(result.ledgers.filter((l) => l.name.includes("#"))[0]!.peakPerSecond * 2);
  });

  it("capacity is shared by weight across shards as one fair queue would share it", () => {
    // One lane, so the shares are fair sharing's alone (lanes come before it: see the next test).
    const oneLane = { priorityMix: { high: 0, normal: 1, low: 0 } };
    const fairRun = run(stepsPerSecond, arrivalMs, oneLane);
    const sharded = fairness(fairRun);
    const single = fairness(run(stepsPerSecond, arrivalMs, { ...oneLane, controllerShards: 1 }));
    // Total variation from weighted max-min fair shares: a few percent, near a single queue's.
    expect(sharded).toBeLessThan(0.05);
    expect(sharded - single).toBeLessThan(0.03);
    // The heaviest customer is held to its fair share; the small ones get all they ask for.
    const top = fairRun.customers[0]!;
    expect(top.admittedDuringArrivals).toBeLessThan(0.5 * top.arrived);
    const small = fairRun.customers.slice(500);
    expect(small.reduce((t, c) => t + c.admittedDuringArrivals, 0) / small.reduce((t, c) => t + c.arrived, 0)).toBeGreaterThan(0.97);
    figures.push({ stepsPerSecond, fairDistanceSharded: +sharded.toFixed(4), fairDistanceOneQueue: +single.toFixed(4) });
  });

  it("priority holds on every shard: high work waits only for the next free slot, low waits longest and still drains", () => {
    const { high, normal, low } = result.waitsMs;
    // No preemption: a high dispatch waits for the next slot its shard frees, within one step's time.
    expect(Math.max(...high)).toBeLessThanOrEqual(result.config.stepMs + result.config.tickMs);
    expect(mean(high)).toBeLessThan(mean(normal));
    expect(mean(normal)).toBeLessThan(mean(low));
    // The low lane took the shortfall (10% of the demand) and was admitted in full once arrivals stopped.
    const arrivedLow = Math.round(arrived * 0.15);
    expect(Math.abs(low.length - arrivedLow)).toBeLessThan(0.05 * arrivedLow);
    figures.push({
      stepsPerSecond,
      controllerShards: result.config.controllerShards,
      hottestControllerPerS: Math.round(result.controllerShards[0]!.peakPerSecond),
      coldestControllerPerS: Math.round(result.controllerShards.at(-1)!.peakPerSecond),
      subLedgers: Object.values(configFor(stepsPerSecond).subLedgers).reduce((t, n) => t + n, 0),
      hottestSubLedgerPerS: Math.round(result.ledgers.find((l) => l.name.includes("#"))?.peakPerSecond ?? 0),
      waitMsMean: { high: Math.round(mean(high)), normal: Math.round(mean(normal)), low: Math.round(mean(low)) },
      waitMsP99: { high: percentile(high, 0.99), normal: percentile(normal, 0.99), low: percentile(low, 0.99) },
      drainedAtMs: result.drainedAtMs,
    });
    console.log(JSON.stringify(figures));
  });
});

describe("the shard functions", () => {
  it("spread one customer's runs evenly over the controller shards (a hot customer is not one hot shard)", () => {
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 80_000; i++) counts[jumpShard(`run_${i.toString(36)}`, 8)] += 1;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });
});
