/**
 * The minute cron's pool samples, until issue 11's pool controller emits its own (same message,
 * `source: "controller"`, with the exact in-flight count, processing rate and desired
 * concurrency it tracks). From the D1 run index, which follows runs lazily (a run shows
 * `running` there only while a long step heartbeats), so these are approximations:
 *  - depth (backlog): the pool's unfinished runs that are not on a timer (queued + running);
 *  - in flight: its runs the index shows running;
 *  - utilization: in flight ÷ the pool's max_concurrency (src/config/pools.ts);
 *  - desired concurrency and processed: null (the job processing rate comes from step attempts);
 *  - open DLQ entries.
 * Both queries read an index (runs by status, DLQ entries by state): only unfinished runs and
 * open entries are read.
 */
import { POOLS } from "../config/pools";
import type { PoolSample } from "../data-plane/messages";
import { minuteOf } from "../metrics/buckets";
import { countD1 } from "../lib/usage";

export async function samplePools(env: Env, now = Date.now()): Promise<PoolSample[]> {
  const [runs, dlq] = await env.DB.batch<{ pool: string; status?: string; n: number }>([
    env.DB.prepare("SELECT pool, status, COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running', 'waiting') GROUP BY pool, status"),
    env.DB.prepare("SELECT pool, COUNT(*) AS n FROM dlq_entries WHERE state = 'open' GROUP BY pool"),
  ]);
  countD1([runs!, dlq!]);
  const pools = new Set([...Object.keys(POOLS), ...runs!.results.map((r) => r.pool), ...dlq!.results.map((r) => r.pool)]);
  return [...pools].sort().map((pool) => {
    const count = (status: string) => runs!.results.find((r) => r.pool === pool && r.status === status)?.n ?? 0;
    const queued = count("queued");
    const running = count("running");
    const concurrency = Object.hasOwn(POOLS, pool) ? POOLS[pool]!.maxConcurrency : 0;
    return {
      minute: minuteOf(now),
      pool,
      source: "cron" as const,
      depth: queued + running,
      queued,
      running,
      waiting: count("waiting"),
      inFlight: running,
      processed: null,
      concurrency,
      desiredConcurrency: null,
      utilization: concurrency > 0 ? Math.min(1, running / concurrency) : 0,
      dlqOpen: dlq!.results.find((r) => r.pool === pool)?.n ?? 0,
      sampledAt: now,
    };
  });
}
