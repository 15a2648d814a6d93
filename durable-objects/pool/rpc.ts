/** The pool controller's RPC contract: zod schemas for what callers send, types for what they get. */
import { z } from "zod";
import { getPool, shardsOf } from "../../src/config/pools";
import { jumpShard } from "../../src/domain/sharding";
import { PRIORITIES } from "../../src/domain/run-status";
import { ScalingPolicySchema, type ScalingPolicy } from "../../src/domain/scaling-policy";

/**
 * A slot whose chain neither reports nor renews (every third of it) is given back after this long
 * (POOL_SLOT_LEASE_MS), and its dispatch is sent again: a lost message is redelivered this soon.
 */
export const DEFAULT_SLOT_LEASE_MS = 30_000;

/** The most dispatches one enqueue may carry (a run dispatches one step at a time; a batch is for re-sends). */
export const MAX_ENQUEUE = 100;

const Where = { pool: z.string().min(1).max(64), shard: z.number().int().min(0).max(1023) };

export const QueuedDispatchSchema = z.object({
  runId: z.string().min(1).max(100),
  stepIndex: z.number().int().min(0),
  dispatch: z.number().int().min(1),
  customerId: z.string().min(1).max(100),
  weight: z.number().positive().max(1000).default(1),
  priority: z.enum(PRIORITIES),
  enqueuedAt: z.number().int().min(0),
});
export type QueuedDispatchInput = z.input<typeof QueuedDispatchSchema>;

export const EnqueueInputSchema = z.object({ ...Where, dispatches: z.array(QueuedDispatchSchema).min(1).max(MAX_ENQUEUE) });
export const SlotInputSchema = z.object({ ...Where, key: z.string().min(1).max(200) });
/** The most slots one done report may give back (a consumer invocation's chains, per shard). */
export const MAX_DONE = 100;

export const DoneSlotSchema = z.object({
  key: z.string().min(1).max(200),
  /** How long the chain held its slot, by the consumer's clock. */
  busyMs: z.number().min(0).max(86_400_000),
  /** Steps the chain ran. */
  steps: z.number().int().min(0).max(10_000),
});
export type DoneSlot = z.infer<typeof DoneSlotSchema>;
export const DoneInputSchema = z.object({ ...Where, slots: z.array(DoneSlotSchema).min(1).max(MAX_DONE) });
export const SetPolicyInputSchema = z.object({ ...Where, policy: ScalingPolicySchema });
export const WhereSchema = z.object(Where);

export interface ScalingDecisionRecord {
  id: string;
  pool: string;
  shard: number;
  at: number;
  from: number;
  to: number;
  reason: string;
  depth: number;
  inFlight: number;
  utilization: number | null;
  processingRate: number;
}

export interface PoolShardStatus {
  pool: string;
  shard: number;
  depth: number;
  /** Waiting by lane (each dispatch's own priority, before aging). */
  depthByPriority: { high: number; normal: number; low: number };
  inFlight: number;
  desiredConcurrency: number;
  utilization: number | null;
  /** Steps done per second over the meter's window. */
  processingRate: number;
  /** Customers with work waiting. */
  waitingCustomers: number;
  /** Age of the oldest waiting dispatch, ms (0: none). */
  oldestWaitingMs: number;
  policy: ScalingPolicy;
  recentDecisions: ScalingDecisionRecord[];
  /** The object's alarm (null: none: an idle pool keeps no timer). */
  alarmAt: number | null;
  /** max_concurrency last pushed to Cloudflare's consumer (null: never, or no API token). */
  pushedMaxConcurrency: number | null;
}

export interface EnqueueReply {
  /** Dispatches new to the pool (a re-send of a waiting one is not). */
  accepted: number;
  /** Re-sends of dispatches already admitted: their message was sent again. */
  resent: number;
  released: number;
}

export interface DoneReply {
  ok: true;
  /** Per slot, in order: it was held (false: already given back, e.g. its lease ended, or superseded). */
  known: boolean[];
}

export interface PoolControllerApi {
  enqueue(input: z.input<typeof EnqueueInputSchema>): Promise<EnqueueReply>;
  done(input: z.input<typeof DoneInputSchema>): Promise<DoneReply>;
  renew(input: z.input<typeof SlotInputSchema>): Promise<{ ok: true; known: boolean }>;
  status(input: z.input<typeof WhereSchema>): Promise<PoolShardStatus>;
  setPolicy(input: z.input<typeof SetPolicyInputSchema>): Promise<PoolShardStatus>;
}

/** A dispatch's slot key: the same for every re-send of one dispatch generation. */
export const slotKey = (runId: string, stepIndex: number, dispatch: number) => `${runId}:${stepIndex}:${dispatch}`;

/**
 * A run's controller shard: by the run, with jump consistent hashing. Every dispatch of a run
 * meets the same shard (its earlier slot is found there), a hot customer's runs spread over all
 * shards instead of making one of them hot, and raising a pool's shard count moves only
 * 1/(N+1) of the runs. Each shard shares its capacity fairly among the customers it sees; the
 * simulation (test/unit/capacity-simulation.test.ts) shows those shares stay within 2% of what one
 * queue would give.
 */
export const controllerShardOf = (runId: string, shards: number): number => jumpShard(runId, shards);

export const controllerName = (pool: string, shard: number) => `pool:${pool}:${shard}`;

/** The stub of one shard of a pool's controller. */
export function poolControllerStub(env: Env, pool: string, shard: number): PoolControllerApi {
  return env.POOL_CONTROLLER.get(env.POOL_CONTROLLER.idFromName(controllerName(pool, shard))) as unknown as PoolControllerApi;
}

/** Every shard of a pool, as [shard, stub]. */
export function poolShards(env: Env, pool: string): [number, PoolControllerApi][] {
  const config = getPool(pool);
  const shards = config ? shardsOf(env, config) : 1;
  return Array.from({ length: shards }, (_, shard) => [shard, poolControllerStub(env, pool, shard)]);
}
