import { describe, expect, it } from "vitest";
import { POOLS, poolShardCounts, shardsOf } from "../../src/config/pools";
import { shardPolicy } from "../../src/domain/scaling-policy";

describe("POOL_SHARDS", () => {
  it("overrides a pool's own shard count; empty leaves every pool as configured", () => {
    expect(poolShardCounts({ POOL_SHARDS: "" })).toEqual({});
    expect(shardsOf({ POOL_SHARDS: "" }, POOLS.standard!)).toBe(POOLS.standard!.shards);
    expect(shardsOf({ POOL_SHARDS: '{"standard": 6}' }, POOLS.standard!)).toBe(6);
    expect(shardsOf({ POOL_SHARDS: '{"standard": 6}' }, POOLS.heavy!)).toBe(POOLS.heavy!.shards);
  });

  it("names what is wrong with an unusable value", () => {
    expect(poolShardCounts({ POOL_SHARDS: "standard=6" })).toMatch(/^POOL_SHARDS is not JSON/);
    expect(poolShardCounts({ POOL_SHARDS: '{"gpu": 2}' })).toMatch(/"gpu".*names no pool \(pools: standard, heavy\)/);
    expect(poolShardCounts({ POOL_SHARDS: '{"standard": 0}' })).toMatch(/"standard".*1 to 64/);
    expect(poolShardCounts({ POOL_SHARDS: '{"standard": 65}' })).toMatch(/"standard"/);
    expect(poolShardCounts({ POOL_SHARDS: "[6]" })).toMatch(/^POOL_SHARDS/);
  });
});

describe("a shard's policy", () => {
  const policy = POOLS.standard!.defaultPolicy;
  it("is the pool's with one shard", () => {
    expect(shardPolicy(policy, 1)).toBe(policy);
  });
  it("owns its share of the bounds, so the shards together stay within the pool's (rounded up, at least one slot)", () => {
    const p = { ...policy, minConcurrency: 3, maxConcurrency: 100 };
    expect(shardPolicy(p, 6)).toEqual({ ...p, minConcurrency: 1, maxConcurrency: 17 });
    expect(shardPolicy({ ...p, minConcurrency: 0, maxConcurrency: 2 }, 6)).toMatchObject({ minConcurrency: 0, maxConcurrency: 1 });
  });
});
