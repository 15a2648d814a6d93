/**
 * The capacity model: what one step costs each component (operations per step, measured by
 * `npm run bench`), what each component can take (published limits), and so, at a given rate of
 * steps per second, how loaded the hottest shard of each component is and how many shards it
 * needs. Pure arithmetic, so the README's capacity figures and the simulation test come from
 * the same numbers.
 */

/** How a component's work is split: per run, per customer, per pool, or one for everything. */
export type ShardedBy = "run" | "customer" | "pool" | "global";

export interface Component {
  name: string;
  /** What its ceiling counts: requests/s, messages/s, queries/s. */
  unit: string;
  /** Operations of that unit one step costs it (at the workload's steps per run). */
  perStep: number;
  /** Where `perStep` comes from. */
  measured: string;
  /** One shard's ceiling in `unit`, and where it is published. */
  ceiling: number;
  source: string;
  shardedBy: ShardedBy;
  /** Shards configured today (1: none). */
  shards: number;
  /** What Runplane does, or has built, for when the hottest shard nears its ceiling. */
  remedy?: string;
}

export interface Workload {
  stepsPerSecond: number;
  stepsPerRun: number;
  /** The busiest customer's share of all steps (Zipf: 1 / H(n) for the top one of n). */
  hottestCustomerShare: number;
  /** The busiest pool's share of all steps. */
  hottestPoolShare: number;
}

export interface ComponentLoad {
  name: string;
  unit: string;
  /** Load on its hottest shard, in `unit` per second. */
  hottestShard: number;
  ceiling: number;
  /** hottestShard ÷ ceiling: above 1 the component is past its limit. */
  utilization: number;
  /** Shards the hottest key's share needs to stay at or below `target` utilization. */
  shardsNeeded: number;
}

/** The n-th harmonic number: a Zipf(s = 1) mix over n keys gives the top key 1 / H(n) of the traffic. */
export function harmonic(n: number): number {
  let h = 0;
  for (let k = 1; k <= n; k++) h += 1 / k;
  return h;
}

/** Load per second on the hottest shard of `c` under `w`. */
export function hottestShardLoad(c: Component, w: Workload): number {
  const total = w.stepsPerSecond * c.perStep;
  switch (c.shardedBy) {
    // A run's object sees its own steps only: at most the steps of one run per second it runs them.
    case "run":
      return c.perStep * Math.min(w.stepsPerSecond, perRunStepRate(w));
    case "customer":
      return (total * w.hottestCustomerShare) / Math.max(1, c.shards);
    case "pool":
      return (total * w.hottestPoolShare) / Math.max(1, c.shards);
    case "global":
      return total / Math.max(1, c.shards);
  }
}

/** One run's steps run one after another: about 50 per second at the step costs measured here (p50 run of 5 steps ≈ 100 ms unloaded). */
const perRunStepRate = (_w: Workload) => 50;

export function componentLoad(c: Component, w: Workload, target = 0.7): ComponentLoad {
  const hottestShard = hottestShardLoad(c, w);
  const unsharded = c.shardedBy === "run" ? hottestShard : hottestShard * Math.max(1, c.shards);
  return {
    name: c.name,
    unit: c.unit,
    hottestShard,
    ceiling: c.ceiling,
    utilization: hottestShard / c.ceiling,
    shardsNeeded: c.shardedBy === "run" ? 1 : Math.max(1, Math.ceil(unsharded / (c.ceiling * target))),
  };
}

/** The rate in steps/s at which `c` reaches its ceiling with its configured shards. */
export function ceilingRate(c: Component, w: Omit<Workload, "stepsPerSecond">): number {
  const perStepOnHottest = hottestShardLoad(c, { ...w, stepsPerSecond: 1 });
  if (c.shardedBy === "run") return Infinity;
  return c.ceiling / perStepOnHottest;
}

/** The component that reaches its ceiling first, and at what rate. */
export function firstBottleneck(components: readonly Component[], w: Omit<Workload, "stepsPerSecond">): { name: string; stepsPerSecond: number } {
  let first = { name: "none", stepsPerSecond: Infinity };
  for (const c of components) {
    const rate = ceilingRate(c, w);
    if (rate < first.stepsPerSecond) first = { name: c.name, stepsPerSecond: rate };
  }
  return first;
}

/** Hours until one D1 database of `databaseBytes` fills, keeping `bytesPerRun` for every run. */
export function hoursToFill(stepsPerSecond: number, stepsPerRun: number, bytesPerRun: number, databaseBytes: number): number {
  return databaseBytes / ((stepsPerSecond / stepsPerRun) * bytesPerRun) / 3600;
}

/** The sustained steps/s one D1 database holds when every run's rows are kept for `retentionDays`. */
export function sustainedRateForRetention(retentionDays: number, stepsPerRun: number, bytesPerRun: number, databaseBytes: number): number {
  return (databaseBytes / (retentionDays * 86_400 * bytesPerRun)) * stepsPerRun;
}
