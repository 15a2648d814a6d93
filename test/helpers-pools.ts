/** Helpers for the pool tests: policies, many runs at once, finish times from the D1 run index. */
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { POOLS } from "../src/config/pools";
import type { ScalingPolicy } from "../src/domain/scaling-policy";
import { api, newCustomer } from "./helpers";

/** A plan that never meets the request rate limit: these tests submit hundreds of runs at once. */
export const FLOOD_PLAN = { rateLimit: { requestsPerSecond: 100_000, burst: 1_000_000 }, maxRunsInFlight: 100_000 };

export const floodCustomer = (prefix: string, plan: Record<string, unknown> = {}) => newCustomer(prefix, { ...FLOOD_PLAN, ...plan });

/** Replaces the pool's policy (its defaults, then `over`); returns the pool as the API answers. */
export async function setPolicy(pool: string, over: Partial<ScalingPolicy>) {
  const res = await api("PUT", `/v1/pools/${pool}/policy`, { body: { ...POOLS[pool]!.defaultPolicy, ...over } });
  if (res.status !== 200) throw new Error(`PUT policy: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.pool;
}

export async function getPoolView(pool: string) {
  const res = await api("GET", `/v1/pools/${pool}`);
  if (res.status !== 200) throw new Error(`GET pool: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.pool;
}

/** Waits until the pool has nothing waiting or running and is back at `desired` (default 0). */
export async function poolSettled(pool: string, desired = 0, timeout = 20_000) {
  return vi.waitUntil(
    async () => {
      const p = await getPoolView(pool);
      return p.depth === 0 && p.inFlight === 0 && p.desiredConcurrency === desired ? p : false;
    },
    { timeout, interval: 100 },
  );
}

/** Submits `count` runs, `parallel` at a time; returns their ids in submission order. */
export async function submitMany(key: string, count: number, body: (i: number) => Record<string, unknown>, parallel = 16): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const res = await api("POST", "/v1/runs", { key, body: body(i) });
      if (res.status !== 202) throw new Error(`submit ${i}: ${res.status} ${JSON.stringify(res.body)}`);
      ids[i] = res.body.run.id;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return ids;
}

export interface Finished {
  id: string;
  customerId: string;
  projectId: string;
  priority: string;
  status: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number;
}

/** Waits until every run in `ids` is finished in the D1 run index, and returns them (finish times on the run objects' clock). */
export async function finishedRuns(ids: readonly string[], timeout = 60_000): Promise<Map<string, Finished>> {
  const want = new Set(ids);
  let rows: Finished[] = [];
  await vi.waitUntil(
    async () => {
      rows = [];
      const list = [...want];
      for (let i = 0; i < list.length; i += 90) {
        const chunk = list.slice(i, i + 90);
        const { results } = await env.DB.prepare(
          `SELECT id, customer_id AS customerId, project_id AS projectId, priority, status, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt
             FROM runs WHERE id IN (${chunk.map(() => "?").join(",")})`,
        )
          .bind(...chunk)
          .all<Finished>();
        rows.push(...results);
      }
      return rows.length === want.size && rows.every((r) => r.finishedAt !== null && ["succeeded", "failed", "cancelled"].includes(r.status));
    },
    { timeout, interval: 250 },
  );
  return new Map(rows.map((r) => [r.id, r]));
}

export const oneStep = (durationMs: number, extra: Record<string, unknown> = {}) => ({
  projectId: "p",
  steps: [{ name: "work", type: "synthetic", config: { durationMs } }],
  ...extra,
});
