/**
 * Worker pools: each has its own job queue, dead-letter queue and consumer (see wrangler.toml and,
 * for `heavy`, wrangler.heavy.toml), its controller shards (durable-objects/pool/) and its default
 * scaling policy. README "Pools and scaling" says how to add one.
 */
import { z } from "zod";
import type { ScalingPolicy } from "../domain/scaling-policy";
import { parseJsonVar } from "../lib/json-var";

export interface PoolConfig {
  name: string;
  description: string;
  jobQueue: string;
  deadLetterQueue: string;
  /**
   * The consumer's max_concurrency in wrangler.toml (repeat it here): the ceiling before any
   * decision is pushed, and what utilization is measured against while the controller is idle.
   */
  maxConcurrency: number;
  jobs: (env: Env) => Queue<unknown>;
  deadLetters: (env: Env) => Queue<unknown>;
  /** The Worker whose queue() consumes the job queue on Cloudflare (its consumer settings are pushed there). */
  consumerWorker: string;
  /** The consumer's max_batch_size: how many admitted chains one consumer invocation carries at once. */
  messagesPerInvocation: number;

  /**
   * Controller shards (`pool:<name>:<shard>`), each owning its share of the policy's min and max
   * concurrency; a run always maps to the same one (durable-objects/pool/rpc.ts controllerShardOf).
   * One shard takes ~2,500 steps/s (README "Capacity"): raise it past that.
   */
  shards: number;
  /** The policy a pool starts with, until PUT /v1/pools/:name/policy replaces it. */
  defaultPolicy: ScalingPolicy;
}

/** The seed's data-plane utilization band: 70–90% busy. */
const UTILIZATION = { utilizationLow: 0.7, utilizationHigh: 0.9 } as const;

export const POOLS: Record<string, PoolConfig> = {
  standard: {
    name: "standard",
    description: "I/O-bound steps (HTTP calls, LLM calls, short synthetic work): many concurrent chains per consumer invocation",
    jobQueue: "runplane-jobs-standard",
    deadLetterQueue: "runplane-dlq-standard",
    maxConcurrency: 10,
    jobs: (env) => env.JOBS_STANDARD,
    deadLetters: (env) => env.DLQ_STANDARD,
    consumerWorker: "runplane",
    messagesPerInvocation: 100,
    shards: 1,
    defaultPolicy: {
      // A worker per chain: I/O-bound chains wait on the network, not on each other.
      targetDepth: 1,
      scaleUpThreshold: 0,
      scaleDownThreshold: 0,
      // Up at once, as HPA's default scale-up (no stabilization): a slot costs nothing to add, and
      // a 1 s cooldown cost the bench's p95 a second. Flapping is held by the down side.
      cooldownUpMs: 0,
      cooldownDownMs: 30_000,
      stabilizationWindowMs: 30_000,
      minConcurrency: 0,
      maxConcurrency: 100,
      activationThreshold: 0,
      tolerance: 0.1,
      ...UTILIZATION,
      agingMs: 30_000,
      scheduling: "fair",
    },
  },
  heavy: {
    name: "heavy",
    description: "Long CPU-bound steps: its own consumer Worker with a 5-minute CPU limit, one chain per invocation",
    jobQueue: "runplane-jobs-heavy",
    deadLetterQueue: "runplane-dlq-heavy",
    jobs: (env) => env.JOBS_HEAVY,
    deadLetters: (env) => env.DLQ_HEAVY,
    maxConcurrency: 10,
    consumerWorker: "runplane-heavy",
    messagesPerInvocation: 1,
    shards: 1,
    defaultPolicy: {
      // CPU-bound: a worker is an expensive instance; two chains per worker before adding one.
      targetDepth: 2,
      scaleUpThreshold: 1,
      scaleDownThreshold: 0,
      cooldownUpMs: 5_000,
      cooldownDownMs: 60_000,
      stabilizationWindowMs: 60_000,
      minConcurrency: 0,
      maxConcurrency: 10,
      activationThreshold: 0,
      tolerance: 0.1,
      ...UTILIZATION,
      agingMs: 60_000,
      scheduling: "fair",
    },
  },
};

export const DEFAULT_POOL = "standard";
export const EVENTS_QUEUE = "runplane-events";
export const EVENTS_DEAD_LETTER_QUEUE = "runplane-events-dlq";

export const poolNames = () => Object.keys(POOLS);
export const getPool = (name: string): PoolConfig | undefined => (Object.hasOwn(POOLS, name) ? POOLS[name] : undefined);
export const poolForJobQueue = (queue: string) => Object.values(POOLS).find((p) => p.jobQueue === queue);
export const poolForDeadLetterQueue = (queue: string) => Object.values(POOLS).find((p) => p.deadLetterQueue === queue);

/** More controller shards than this would mostly add fan-out to every GET and PUT of the pool. */
export const MAX_POOL_SHARDS = 64;

/** POOL_SHARDS: pool name → its number of controller shards, overriding the pool's `shards`. */
export const PoolShardsSchema = z.record(z.string(), z.number().int().min(1).max(MAX_POOL_SHARDS)).superRefine((counts, ctx) => {
  for (const name of Object.keys(counts)) {
    if (!getPool(name)) ctx.addIssue({ code: "custom", path: [name], message: `names no pool (pools: ${poolNames().join(", ")})` });
  }
});

/** The deployment's controller shard counts from POOL_SHARDS (absent or empty: each pool's own); an unusable value is an error sentence. */
export function poolShardCounts(env: { POOL_SHARDS?: string }): Record<string, number> | string {
  return parseJsonVar("POOL_SHARDS", env.POOL_SHARDS, PoolShardsSchema, {}, `an object mapping pool names to integers from 1 to ${MAX_POOL_SHARDS}, such as {"standard": 6}`);
}

/** How many controller shards `pool` has in this deployment (a misconfigured POOL_SHARDS is reported elsewhere; here the pool's own count holds). */
export function shardsOf(env: { POOL_SHARDS?: string }, pool: PoolConfig): number {
  const counts = poolShardCounts(env);
  return typeof counts === "string" ? pool.shards : (counts[pool.name] ?? pool.shards);
}
