/**
 * A pool at internet scale, simulated with the code that decides it: synthetic arrivals from
 * many customers in a skewed (Zipf) mix are assigned to controller shards and ledger objects by
 * the real shard functions, and admitted by the real FairQueue, each shard holding its share of
 * the pool's concurrency. What comes out is the load on every shard (to hold against its
 * ceiling) and what each customer and priority got (to hold against fair sharing and the lanes).
 *
 * Pure and deterministic: a seeded generator, simulated time in ticks, no bindings.
 */
import { FairQueue, type QueuedDispatch } from "../domain/fair-queue";
import type { Priority } from "../domain/run-status";
import { controllerShardOf } from "../../durable-objects/pool/rpc";
import { subLedgerName, subLedgerOf } from "../domain/ledger-subshards";

export interface SimulationConfig {
  stepsPerSecond: number;
  customers: number;
  /** Zipf exponent of the customers' mix: customer k (1-based) sends ∝ 1 / k^s. */
  zipfExponent: number;
  /** Arrivals stop after this long; the simulation then runs until the backlog drains. */
  arrivalMs: number;
  /** Simulated time one admitted step holds its slot. */
  stepMs: number;
  /** The pool's desired concurrency, split evenly over its controller shards. */
  concurrency: number;
  controllerShards: number;
  /** Cost sub-ledgers per customer, from configuration (1: the customer's own ledger only). */
  ledgerShardsOf: (customerId: string) => number;
  /** Requests per step on the customer's primary ledger (admission, holds), the capacity model's figure. */
  ledgerAdmissionsPerStep: number;
  /** Requests per step on the ledger that counts the run's costs (cost deliveries): the primary, or the run's sub-ledger. */
  ledgerDeliveriesPerStep: number;
  /** Controller requests per step: an enqueue when dispatched and a done when the chain ends. */
  controllerRequestsPerStep: number;
  priorityMix: Record<Priority, number>;
  weightOf: (customerId: string) => number;
  agingMs: number;
  tickMs: number;
  seed: number;
}

export interface ShardLoad {
  name: string;
  /** Peak requests per second, over one-second windows. */
  peakPerSecond: number;
}

export interface CustomerOutcome {
  customerId: string;
  weight: number;
  arrived: number;
  /** Admitted while arrivals lasted: what the contention shared out. */
  admittedDuringArrivals: number;
}

export interface SimulationResult {
  controllerShards: ShardLoad[];
  /** Every ledger object that took requests (primary ledgers and sub-ledgers). */
  ledgers: ShardLoad[];
  customers: CustomerOutcome[];
  waitsMs: Record<Priority, number[]>;
  /** Simulated time when the last step was admitted. */
  drainedAtMs: number;
  admitted: number;
}

/** mulberry32: a small seeded generator, the same sequence on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The cumulative Zipf weights over n keys, for sampling by binary search. */
export function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 1; k <= n; k++) cdf[k - 1] = total += 1 / k ** s;
  for (let i = 0; i < n; i++) cdf[i]! /= total;
  return cdf;
}

function sample(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The ledger object a run's costs go to: the customer's own, or the sub-ledger the run is pinned to (as RunsService pins it). */
export function costLedgerFor(customerId: string, runId: string, subLedgers: number): string {
  const index = subLedgerOf(runId, subLedgers);
  return index === null ? customerId : subLedgerName(customerId, index);
}

/** Counts requests per key in one-second windows and keeps each key's peak. */
class PeakMeter {
  private readonly current = new Map<string, number>();
  private readonly peaks = new Map<string, number>();
  private second = 0;

  add(key: string, at: number, n: number): void {
    const s = Math.floor(at / 1000);
    if (s !== this.second) this.roll(s);
    this.current.set(key, (this.current.get(key) ?? 0) + n);
  }

  private roll(next: number): void {
    for (const [k, v] of this.current) this.peaks.set(k, Math.max(this.peaks.get(k) ?? 0, v));
    this.current.clear();
    this.second = next;
  }

  /** Peaks per second; a partial window counts scaled to a whole second. */
  result(partialMs: number): ShardLoad[] {
    const scale = partialMs > 0 && partialMs < 1000 ? 1000 / partialMs : 1;
    for (const [k, v] of this.current) this.peaks.set(k, Math.max(this.peaks.get(k) ?? 0, v * scale));
    this.current.clear();
    return [...this.peaks].map(([name, peakPerSecond]) => ({ name, peakPerSecond })).sort((a, b) => b.peakPerSecond - a.peakPerSecond);
  }
}

interface Admitted {
  endsAt: number;
  customerId: string;
  charge: number;
}

export function simulatePool(config: SimulationConfig): SimulationResult {
  const random = seededRandom(config.seed);
  const cdf = zipfCdf(config.customers, config.zipfExponent);
  const customerIds = Array.from({ length: config.customers }, (_, i) => `cus_${String(i + 1).padStart(4, "0")}`);
  const shards = Array.from({ length: config.controllerShards }, () => ({ queue: new FairQueue<QueuedDispatch>(config.stepMs), running: [] as Admitted[] }));
  // Each shard owns its share of the desired concurrency (the remainder to the first shards).
  const capacityOf = (s: number) => Math.floor(config.concurrency / config.controllerShards) + (s < config.concurrency % config.controllerShards ? 1 : 0);
  const controllerLoad = new PeakMeter();
  const ledgerLoad = new PeakMeter();
  const outcomes = new Map(customerIds.map((id) => [id, { customerId: id, weight: config.weightOf(id), arrived: 0, admittedDuringArrivals: 0 }]));
  const waitsMs: Record<Priority, number[]> = { high: [], normal: [], low: [] };
  const lanes: Priority[] = ["high", "normal", "low"];
  const mixTotal = lanes.reduce((t, p) => t + config.priorityMix[p], 0);
  const perTick = (config.stepsPerSecond * config.tickMs) / 1000;
  let owed = 0;
  let seq = 0;
  let admitted = 0;
  let drainedAtMs = 0;
  let waiting = 0;

  for (let now = 0; now < config.arrivalMs || waiting > 0 || shards.some((s) => s.running.length > 0); now += config.tickMs) {
    // Chains that ended report done: their slot is free and their customer's charge corrected.
    for (const shard of shards) {
      if (shard.running.length === 0) continue;
      const still: Admitted[] = [];
      for (const r of shard.running) {
        if (r.endsAt <= now) shard.queue.complete(r.customerId, r.charge, config.stepMs);
        else still.push(r);
      }
      shard.running = still;
    }
    if (now < config.arrivalMs) {
      owed += perTick;
      for (; owed >= 1; owed -= 1) {
        const customerId = customerIds[sample(cdf, random())]!;
        let u = random() * mixTotal;
        const priority = lanes.find((p) => (u -= config.priorityMix[p]) < 0) ?? "normal";
        const runId = `run_${(seq++).toString(36)}`;
        const s = controllerShardOf(runId, config.controllerShards);
        shards[s]!.queue.add({ key: runId, customerId, priority, enqueuedAt: now, weight: config.weightOf(customerId) });
        waiting += 1;
        outcomes.get(customerId)!.arrived += 1;
        controllerLoad.add(`controller:${s}`, now, config.controllerRequestsPerStep);
        ledgerLoad.add(customerId, now, config.ledgerAdmissionsPerStep);
        ledgerLoad.add(costLedgerFor(customerId, runId, config.ledgerShardsOf(customerId)), now, config.ledgerDeliveriesPerStep);
      }
    }
    for (let s = 0; s < shards.length; s++) {
      const shard = shards[s]!;
      while (shard.running.length < capacityOf(s)) {
        const taken = shard.queue.take(now, config.agingMs);
        if (!taken) break;
        waiting -= 1;
        admitted += 1;
        drainedAtMs = now;
        shard.running.push({ endsAt: now + config.stepMs, customerId: taken.entry.customerId, charge: taken.charge });
        waitsMs[taken.entry.priority].push(now - taken.entry.enqueuedAt);
        if (now < config.arrivalMs) outcomes.get(taken.entry.customerId)!.admittedDuringArrivals += 1;
      }
    }
  }
  return {
    controllerShards: controllerLoad.result(config.arrivalMs % 1000),
    ledgers: ledgerLoad.result(config.arrivalMs % 1000),
    customers: [...outcomes.values()],
    waitsMs,
    drainedAtMs,
    admitted,
  };
}

/**
 * Weighted max-min fair shares (water-filling): `capacity` split among customers by weight, none
 * given more than it asked for, what one does not use going to the rest. The ideal the
 * simulation's admissions are measured against.
 */
export function waterFill(demands: readonly { id: string; demand: number; weight: number }[], capacity: number): Map<string, number> {
  const share = new Map<string, number>();
  let left = capacity;
  let open = [...demands].filter((d) => d.demand > 0);
  while (open.length > 0 && left > 1e-9) {
    const totalWeight = open.reduce((t, d) => t + d.weight, 0);
    const level = left / totalWeight;
    const satisfied = open.filter((d) => d.demand - (share.get(d.id) ?? 0) <= level * d.weight);
    if (satisfied.length === 0) {
      for (const d of open) share.set(d.id, (share.get(d.id) ?? 0) + level * d.weight);
      left = 0;
      break;
    }
    for (const d of satisfied) {
      left -= d.demand - (share.get(d.id) ?? 0);
      share.set(d.id, d.demand);
    }
    open = open.filter((d) => !satisfied.includes(d));
  }
  for (const d of demands) if (!share.has(d.id)) share.set(d.id, 0);
  return share;
}

/** Total variation distance between two allocations of the same total, 0 (equal) … 1. */
export function allocationDistance(actual: ReadonlyMap<string, number>, ideal: ReadonlyMap<string, number>): number {
  let diff = 0;
  let total = 0;
  for (const [id, want] of ideal) {
    diff += Math.abs((actual.get(id) ?? 0) - want);
    total += want;
  }
  return total === 0 ? 0 : diff / (2 * total);
}
