/**
 * Pools as operators see them (GET/PUT /v1/pools…): each pool's controller shards asked for their
 * state and added up, the policy replaced on every shard, and the time series read from D1's
 * samples. Admin only (the routes check it).
 */
import { and, asc, eq, gte, lt, sql } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { poolShards } from "../../durable-objects/pool/rpc";
import type { PoolShardStatus, ScalingDecisionRecord } from "../../durable-objects/pool/rpc";
import { getPool, POOLS, shardsOf, type PoolConfig } from "../config/pools";
import { poolConcurrencySamples, poolScalingDecisions } from "../db/schema";
import { DomainError, validationFailed } from "../domain/errors";
import { ScalingPolicySchema, shardPolicy, type ScalingPolicy } from "../domain/scaling-policy";
import { errorMessage, log } from "../lib/log";

/** The most points a series answers with; a longer range gets wider buckets. */
export const MAX_SERIES_POINTS = 1_000;
/** The longest range one series request covers. */
export const MAX_SERIES_RANGE_MS = 31 * 86_400_000;
const DEFAULT_SERIES_RANGE_MS = 3_600_000;

export type PolicyInput = Pick<ScalingPolicy, "scaleUpThreshold" | "scaleDownThreshold" | "targetDepth" | "cooldownUpMs" | "cooldownDownMs" | "minConcurrency" | "maxConcurrency"> &
  Partial<ScalingPolicy>;

const iso = (ms: number) => new Date(ms).toISOString();

function presentDecision(d: ScalingDecisionRecord) {
  return { id: d.id, shard: d.shard, at: iso(d.at), from: d.from, to: d.to, reason: d.reason, depth: d.depth, inFlight: d.inFlight, utilization: d.utilization, processingRate: d.processingRate };
}

export class PoolsService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
  ) {}

  private config(name: string): PoolConfig {
    const pool = getPool(name);
    if (!pool) throw new DomainError("not_found", `pool "${name}" not found; pools: ${Object.keys(POOLS).join(", ")}`);
    return pool;
  }

  /** Every shard's state; a controller that does not answer is a 503 (nothing was changed). */
  private async shards<T>(pool: PoolConfig, ask: (stub: ReturnType<typeof poolShards>[number][1], shard: number) => Promise<T>): Promise<T[]> {
    try {
      return await Promise.all(poolShards(this.env, pool.name).map(([shard, stub]) => ask(stub, shard)));
    } catch (err) {
      log("pools.controller_unavailable", { pool: pool.name, error: errorMessage(err) }, "warn");
      throw new DomainError("not_ready", `pool "${pool.name}"'s controller did not answer; retry`, [], { "retry-after": "1" });
    }
  }

  async list() {
    return { pools: await Promise.all(Object.values(POOLS).map((pool) => this.view(pool))) };
  }

  async get(name: string) {
    return this.view(this.config(name));
  }

  /** Replaces the pool's policy on every shard: the required knobs as given, the others as given or the pool's defaults. */
  async setPolicy(name: string, input: PolicyInput) {
    const pool = this.config(name);
    const parsed = ScalingPolicySchema.safeParse({ ...pool.defaultPolicy, ...input });
    if (!parsed.success) throw validationFailed(parsed.error);
    const policy = parsed.data;
    const perShard = shardPolicy(policy, shardsOf(this.env, pool));
    const statuses = await this.shards(pool, (stub, shard) => stub.setPolicy({ pool: pool.name, shard, policy: perShard }));
    log("pools.policy_set", { pool: pool.name, policy });
    return this.present(pool, statuses, policy);
  }

  /** Depth, in-flight and desired concurrency over [from, to), from the controllers' samples in D1, plus the decisions in the range. */
  async series(name: string, query: { from?: string; to?: string }) {
    const pool = this.config(name);
    const to = query.to ? Date.parse(query.to) : Date.now();
    const from = query.from ? Date.parse(query.from) : to - DEFAULT_SERIES_RANGE_MS;
    if (!(from < to)) throw new DomainError("validation_failed", "from must be before to", [{ field: "query.from", message: "must be before to" }]);
    if (to - from > MAX_SERIES_RANGE_MS) throw new DomainError("validation_failed", "the range is longer than 31 days", [{ field: "query.from", message: "at most 31 days before to" }]);
    const sampleMs = Number(this.env.POOL_SAMPLE_MS) || 10_000;
    const bucketMs = Math.max(sampleMs, Math.ceil((to - from) / MAX_SERIES_POINTS));
    const bucket = sql<number>`(${poolConcurrencySamples.at} / ${bucketMs}) * ${bucketMs}`;
    const where = and(eq(poolConcurrencySamples.pool, pool.name), gte(poolConcurrencySamples.at, from), lt(poolConcurrencySamples.at, to));
    const [rows, decisions] = await Promise.all([
      this.db
        .select({
          shard: poolConcurrencySamples.shard,
          bucket,
          depth: sql<number>`MAX(${poolConcurrencySamples.depth})`,
          inFlight: sql<number>`MAX(${poolConcurrencySamples.inFlight})`,
          desired: sql<number>`MAX(${poolConcurrencySamples.desired})`,
          utilization: sql<number | null>`AVG(${poolConcurrencySamples.utilization})`,
          processingRate: sql<number>`AVG(${poolConcurrencySamples.processingRate})`,
        })
        .from(poolConcurrencySamples)
        .where(where)
        .groupBy(poolConcurrencySamples.shard, bucket)
        .orderBy(asc(bucket))
        .limit(MAX_SERIES_POINTS * shardsOf(this.env, pool) + shardsOf(this.env, pool)),
      this.db
        .select()
        .from(poolScalingDecisions)
        .where(and(eq(poolScalingDecisions.pool, pool.name), gte(poolScalingDecisions.at, from), lt(poolScalingDecisions.at, to)))
        .orderBy(asc(poolScalingDecisions.at))
        .limit(MAX_SERIES_POINTS),
    ]);
    const points = new Map<number, { at: number; depth: number; inFlight: number; desired: number; utilization: number | null; processingRate: number; shards: number }>();
    for (const r of rows) {
      const p = points.get(r.bucket) ?? { at: r.bucket, depth: 0, inFlight: 0, desired: 0, utilization: null, processingRate: 0, shards: 0 };
      p.depth += r.depth;
      p.inFlight += r.inFlight;
      p.desired += r.desired;
      p.processingRate += r.processingRate;
      if (r.utilization !== null) p.utilization = ((p.utilization ?? 0) * p.shards + r.utilization) / (p.shards + 1);
      p.shards += 1;
      points.set(r.bucket, p);
    }
    return {
      pool: pool.name,
      from: iso(from),
      to: iso(to),
      bucketMs,
      points: [...points.values()].map((p) => ({ at: iso(p.at), depth: p.depth, inFlight: p.inFlight, desired: p.desired, utilization: p.utilization, processingRate: p.processingRate })),
      decisions: decisions.map((d) =>
        presentDecision({ id: d.id, pool: d.pool, shard: d.shard, at: d.at, from: d.fromConcurrency, to: d.toConcurrency, reason: d.reason, depth: d.depth, inFlight: d.inFlight, utilization: d.utilization, processingRate: d.processingRate }),
      ),
    };
  }

  private async view(pool: PoolConfig) {
    const statuses = await this.shards(pool, (stub, shard) => stub.status({ pool: pool.name, shard }));
    return this.present(pool, statuses, null);
  }

  private present(pool: PoolConfig, statuses: PoolShardStatus[], policy: ScalingPolicy | null) {
    const sum = (f: (s: PoolShardStatus) => number) => statuses.reduce((acc, s) => acc + f(s), 0);
    const measured = statuses.filter((s) => s.utilization !== null);
    const desired = sum((s) => s.desiredConcurrency);
    // Utilization of the pool: busy over capacity, each shard weighted by its capacity.
    const utilization =
      measured.length === 0 ? null : desired > 0 ? sum((s) => (s.utilization ?? 0) * s.desiredConcurrency) / desired : measured.reduce((a, s) => a + s.utilization!, 0) / measured.length;
    const shard0 = statuses[0]!;
    const alarms = statuses.map((s) => s.alarmAt).filter((t): t is number => t !== null);
    return {
      name: pool.name,
      description: pool.description,
      queue: pool.jobQueue,
      deadLetterQueue: pool.deadLetterQueue,
      shards: shardsOf(this.env, pool),
      depth: sum((s) => s.depth),
      depthByPriority: {
        high: sum((s) => s.depthByPriority.high),
        normal: sum((s) => s.depthByPriority.normal),
        low: sum((s) => s.depthByPriority.low),
      },
      inFlight: sum((s) => s.inFlight),
      desiredConcurrency: desired,
      utilization,
      processingRate: sum((s) => s.processingRate),
      waitingCustomers: sum((s) => s.waitingCustomers),
      oldestWaitingMs: Math.max(...statuses.map((s) => s.oldestWaitingMs)),
      policy: policy ?? (shardsOf(this.env, pool) > 1 ? { ...shard0.policy, minConcurrency: sum((s) => s.policy.minConcurrency), maxConcurrency: sum((s) => s.policy.maxConcurrency) } : shard0.policy),
      recentDecisions: statuses
        .flatMap((s) => s.recentDecisions)
        .sort((a, b) => b.at - a.at)
        .slice(0, 20)
        .map(presentDecision),
      consumer: {
        worker: pool.consumerWorker,
        messagesPerInvocation: pool.messagesPerInvocation,
        pushedMaxConcurrency: shard0.pushedMaxConcurrency,
      },
      nextTimerAt: alarms.length > 0 ? iso(Math.min(...alarms)) : null,
    };
  }
}
