/**
 * The standard pool with two controller shards, end to end: vitest.sharded.config.ts runs this
 * file in its own workerd with POOL_SHARDS = {"standard": 2}. Each run is admitted by the shard
 * `jumpShard(runId, 2)` names; each shard holds half the pool's bounds and keeps its in-flight
 * within its own desired; the API sums the shards; both record their decisions and go back to
 * zero with no timer.
 */
import { env } from "cloudflare:workers";
import { expect, it, vi } from "vitest";
import { controllerShardOf, poolControllerStub, type PoolShardStatus } from "../../durable-objects/pool/rpc";
import { POOLS } from "../../src/config/pools";
import { synthetic } from "../helpers";
import { finishedRuns, floodCustomer, getPoolView, submitMany } from "../helpers-pools";

const SHARDS = [0, 1] as const;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("two controller shards share a burst: each admits its runs within its own half of the bounds, and both go back to zero with no timer", async () => {
  const stubs = SHARDS.map((shard) => poolControllerStub(env, "standard", shard));
  const status = (): Promise<PoolShardStatus[]> => Promise.all(SHARDS.map((shard) => stubs[shard]!.status({ pool: "standard", shard })));
  const { maxConcurrency } = POOLS.standard!.defaultPolicy;
  for (const s of await status()) expect(s.policy.maxConcurrency).toBe(maxConcurrency / 2);
  // The API answers for the pool: the shards' bounds summed back.
  expect((await getPoolView("standard")).policy.maxConcurrency).toBe(maxConcurrency);

  const customer = await floodCustomer("sharded");
  const peakInFlight = [0, 0];
  const overDesired: string[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const s of await status()) {
        peakInFlight[s.shard] = Math.max(peakInFlight[s.shard]!, s.inFlight);
        if (s.inFlight > s.desiredConcurrency) overDesired.push(`shard ${s.shard}: ${s.inFlight} in flight, desired ${s.desiredConcurrency}`);
      }
      await sleep(25);
    }
  })();
  const ids = await submitMany(customer.key, 80, (i) => ({ projectId: `p${i % 4}`, steps: [synthetic("work", { durationMs: 150 }), synthetic("after")] }));
  const finished = await finishedRuns(ids);
  watching = false;
  await watcher;

  expect([...finished.values()].map((r) => r.status)).toEqual(ids.map(() => "succeeded"));
  // The runs were spread over both shards, and each shard admitted its own.
  const perShard = SHARDS.map((shard) => ids.filter((id) => controllerShardOf(id, 2) === shard).length);
  console.info(JSON.stringify({ event: "test.pool_shards", runsPerShard: perShard, peakInFlight }));
  for (const shard of SHARDS) {
    expect(perShard[shard]).toBeGreaterThan(0);
    expect(peakInFlight[shard]).toBeGreaterThan(0);
  }
  expect(overDesired).toEqual([]);

  // Both shards scaled, and both recorded it in D1.
  await vi.waitUntil(async () => {
    const { results } = await env.DB.prepare("SELECT DISTINCT shard FROM pool_scaling_decisions WHERE pool = 'standard' ORDER BY shard").all<{ shard: number }>();
    return results.map((r) => r.shard).join(",") === "0,1";
  }, { timeout: 10_000 });

  // After the down-cooldown both are idle at zero, and neither keeps a timer.
  const idle = await vi.waitUntil(
    async () => {
      const all = await status();
      return all.every((s) => s.depth === 0 && s.inFlight === 0 && s.desiredConcurrency === 0 && s.alarmAt === null) ? all : false;
    },
    { timeout: 90_000, interval: 250 },
  );
  expect(idle).toHaveLength(2);
  expect(await getPoolView("standard")).toMatchObject({ depth: 0, inFlight: 0, desiredConcurrency: 0 });
}, 150_000);
