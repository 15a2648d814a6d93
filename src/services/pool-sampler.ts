/**
 * The minute cron's pool samples. The pool's own figures come from its controller shards'
 * latest samples in D1 (`pool_concurrency_samples`, written every POOL_SAMPLE_MS while a shard
 * is active) when one is at most two minutes old (`source: "controller"`): depth is the
 * admission backlog, in flight the admitted chains, desired concurrency the controller's, and
 * utilization its measured busy ÷ capacity. A pool whose controllers are idle has written none
 * (an idle controller runs no timer); then the figures are the D1 run index's approximations
 * (`source: "cron"`): depth = its queued + running runs, in flight = its running runs,
 * utilization = in flight ÷ the pool's configured max_concurrency, desired concurrency null.
 * Queued/running/waiting and open DLQ entries always come from the index. Every query reads an
 * index (runs by status, DLQ entries by state, samples by pool and time).
 */
import { POOLS } from "../config/pools";
import type { PoolSample } from "../data-plane/messages";
import { minuteOf } from "../metrics/buckets";
import { countD1 } from "../lib/usage";

export async function samplePools(env: Env, now = Date.now()): Promise<PoolSample[]> {
  const configured = Object.keys(POOLS);
  const [runs, dlq, ...latest] = await env.DB.batch<{ pool: string; status?: string; n: number } & Partial<ControllerSampleRow>>([
    env.DB.prepare("SELECT pool, status, COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running', 'waiting') GROUP BY pool, status"),
    env.DB.prepare("SELECT pool, COUNT(*) AS n FROM dlq_entries WHERE state = 'open' GROUP BY pool"),
    ...configured.map((pool) =>
      env.DB.prepare("SELECT shard, at, depth, in_flight, desired, utilization FROM pool_concurrency_samples WHERE pool = ?1 AND at >= ?2 ORDER BY at DESC").bind(pool, now - CONTROLLER_SAMPLE_FRESH_MS),
    ),
  ]);
  countD1([runs!, dlq!, ...latest]);
  const controllerFigures = new Map(configured.map((pool, i) => [pool, latestPerShard(latest[i]!.results as unknown as ControllerSampleRow[])]));
  const pools = new Set([...Object.keys(POOLS), ...runs!.results.map((r) => r.pool), ...dlq!.results.map((r) => r.pool)]);
  return [...pools].sort().map((pool) => {
    const count = (status: string) => runs!.results.find((r) => r.pool === pool && r.status === status)?.n ?? 0;
    const queued = count("queued");
    const running = count("running");
    const common = { minute: minuteOf(now), pool, queued, running, waiting: count("waiting"), processed: null, dlqOpen: dlq!.results.find((r) => r.pool === pool)?.n ?? 0, sampledAt: now };
    // The consumer's max_concurrency as configured: the ceiling either way (the desired concurrency is its own field).
    const concurrency = Object.hasOwn(POOLS, pool) ? POOLS[pool]!.maxConcurrency : 0;
    const controller = controllerFigures.get(pool);
    if (controller) return { ...common, source: "controller" as const, concurrency, ...controller };
    return {
      ...common,
      source: "cron" as const,
      depth: queued + running,
      inFlight: running,
      concurrency,
      desiredConcurrency: null,
      utilization: concurrency > 0 ? Math.min(1, running / concurrency) : 0,
    };
  });
}

/** A controller sample older than this is not the pool's state (an active shard writes one every POOL_SAMPLE_MS, 10 s). */
const CONTROLLER_SAMPLE_FRESH_MS = 120_000;

interface ControllerSampleRow {
  shard: number;
  at: number;
  depth: number;
  in_flight: number;
  desired: number;
  utilization: number | null;
}

/** The pool's figures from each shard's newest sample (rows newest first), summed; null without any. */
function latestPerShard(rows: readonly ControllerSampleRow[]): Pick<PoolSample, "depth" | "inFlight" | "desiredConcurrency" | "utilization"> | null {
  const newest = new Map<number, ControllerSampleRow>();
  for (const r of rows) if (!newest.has(r.shard)) newest.set(r.shard, r);
  if (newest.size === 0) return null;
  const shards = [...newest.values()];
  const sum = (f: (r: ControllerSampleRow) => number) => shards.reduce((t, r) => t + f(r), 0);
  const desired = sum((r) => r.desired);
  // Utilization weighted by each shard's capacity (its desired concurrency).
  const utilization = desired > 0 ? sum((r) => (r.utilization ?? 0) * r.desired) / desired : 0;
  return { depth: sum((r) => r.depth), inFlight: sum((r) => r.in_flight), desiredConcurrency: desired, utilization: Math.min(1, Math.max(0, utilization)) };
}
