/**
 * Security of the API's front door: the key cache (bounded, short-lived misses), revocation
 * across isolates, the per-customer rate limit, and what readiness tells the public.
 */
import { env } from "cloudflare:workers";
import { drizzle } from "drizzle-orm/d1";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CustomerLedger } from "../../durable-objects/ledger/customer-ledger";
import { RateLimiter } from "../../durable-objects/rate-limiter/rate-limiter";
import { rateLimiterStub } from "../../durable-objects/rate-limiter/rpc";
import { clearReadinessCache, READY_CACHE_MS } from "../../src/api/routes/health";
import { sha256Hex } from "../../src/lib/ids";
import { AuthService, KEY_CACHE_MAX_ENTRIES, KEY_CACHE_NEGATIVE_MS, KEY_CACHE_POSITIVE_MS } from "../../src/services/auth-service";
import { RateLimitService } from "../../src/services/rate-limit-service";
import { ADMIN, api, createRun, newCustomer, synthetic } from "../helpers";

const realNow = Date.now;
/** Moves this isolate's clock (and so the key cache's, the limiter's and readiness's) `ms` ahead. */
function clockAhead(ms: number) {
  vi.spyOn(Date, "now").mockImplementation(() => realNow.call(Date) + ms);
}

afterEach(() => {
  vi.restoreAllMocks();
  RateLimitService.reset();
});

/** `n` calls, `width` at a time (this runtime answers a few dozen concurrent requests best). */
async function inBatches<T>(n: number, width: number, fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += width) out.push(...(await Promise.all(Array.from({ length: Math.min(width, n - i) }, fn))));
  return out;
}

const bogusToken = () => `rp_bogus_${crypto.randomUUID()}`;

const customerWithPlan = (plan: Record<string, unknown>) => newCustomer("sec", plan);

/** Adds a key row straight to D1 for `token` (as if made elsewhere). */
async function insertKey(customerId: string, token: string) {
  const id = `key_${crypto.randomUUID().slice(0, 12)}`;
  await env.DB.prepare("INSERT INTO api_keys (id, customer_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
    .bind(id, customerId, await sha256Hex(token), token.slice(0, 10), Date.now())
    .run();
  return id;
}

describe("API key cache", () => {
  it("remembers a miss for 5 s only: a bogus token costs one D1 read per 5 s, and a key made meanwhile works after that", async () => {
    const customer = await newCustomer("cache");
    const token = bogusToken();
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: token })).status).toBe(401);
    // The token now names a key in D1, but this isolate remembers the miss: no D1 read, still 401.
    await insertKey(customer.id, token);
    const refused = await api("GET", `/v1/customers/${customer.id}`, { key: token });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("unauthorized");
    // Past the negative entry's life D1 is asked again (a miss is not kept forever).
    clockAhead(KEY_CACHE_NEGATIVE_MS + 1);
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: token })).status).toBe(200);
  });

  it("a key revoked by the API in another isolate is refused at once here, though this isolate's cache still holds it", async () => {
    const customer = await newCustomer("revoke");
    const second = await api("POST", `/v1/customers/${customer.id}/keys`);
    const { apiKey, key } = second.body;
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: apiKey })).status).toBe(200); // cached now
    const cachedEntries = AuthService.keyCacheSize();
    // What DELETE /v1/customers/:id/keys/:keyId does in another isolate: D1, then the notice to
    // the customer's limiter. This isolate's cache is not touched.
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2").bind(Date.now(), key.id).run();
    await rateLimiterStub(env, customer.id).revokeKey({ keyId: key.id });
    expect(AuthService.keyCacheSize()).toBe(cachedEntries);
    const refused = await api("GET", `/v1/customers/${customer.id}`, { key: apiKey });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("unauthorized");
    expect((await api("POST", "/v1/runs", { key: apiKey, body: { projectId: "p", steps: [synthetic("a")] } })).status).toBe(401);
    // The customer's other key is not affected.
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: customer.key })).status).toBe(200);
    // And DELETE through the API leaves the notice with the limiter too.
    const third = (await api("POST", `/v1/customers/${customer.id}/keys`)).body;
    expect((await api("DELETE", `/v1/customers/${customer.id}/keys/${third.key.id}`)).status).toBe(204);
    expect(await rateLimiterStub(env, customer.id).take({ keyId: third.key.id, limit: { requestsPerSecond: 1, burst: 1 } })).toEqual({ outcome: "revoked" });
  });

  it("without the notice (the limiter unreachable) a revoked key works from a cache for at most 30 s", async () => {
    const customer = await newCustomer("revoke");
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: customer.key })).status).toBe(200);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ?1 WHERE customer_id = ?2").bind(Date.now(), customer.id).run();
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: customer.key })).status).toBe(200); // the stated bound
    clockAhead(KEY_CACHE_POSITIVE_MS + 1);
    expect((await api("GET", `/v1/customers/${customer.id}`, { key: customer.key })).status).toBe(401);
  });
});

describe("per-customer rate limit", () => {
  it("default limit: 150 reads of a run in a burst pass", async () => {
    const customer = await newCustomer("rl");
    const run = (await createRun(customer.key, { steps: [synthetic("a")] })).body.run;
    const burst = await Promise.all(Array.from({ length: 150 }, () => api("GET", `/v1/runs/${run.id}`, { key: customer.key })));
    expect(burst.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
  }, 60_000);

  it("default limit: a flood past the burst gets 429 naming the limit, with a Retry-After that, honoured, lets the next request through", async () => {
    const customer = await newCustomer("rl");
    const run = (await createRun(customer.key, { steps: [synthetic("a")] })).body.run;
    // However slow this machine is, the flood arrives faster than the bucket refills: the clock stands still.
    const frozen = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(frozen);
    const flood = await inBatches(260, 26, () => api("GET", `/v1/runs/${run.id}`, { key: customer.key }));
    // The run's creation took one token (and the time since refilled at most that one): 199 or 200 remain.
    const passed = flood.filter((r) => r.status === 200).length;
    expect(passed).toBeGreaterThanOrEqual(199);
    expect(passed).toBeLessThanOrEqual(200);
    const limited = flood.filter((r) => r.status === 429);
    expect(limited).toHaveLength(260 - passed);
    for (const res of limited) {
      expect(res.body.error.code).toBe("rate_limited");
      expect(res.headers.get("retry-after")).toBe("1");
    }
    const first = limited[0]!;
    expect(first.body.error.message).toMatch(/100 requests\/s sustained, burst 200, the default/);
    expect(first.body.error.message).toContain(customer.id);
    expect(first.body.error.details).toEqual([{ field: "rateLimit", message: "100 requests/s sustained, burst 200; retry after 1 s" }]);
    expect(typeof first.body.error.requestId).toBe("string");
    // Honouring Retry-After (1 s: 100 tokens at 100/s) lets the next requests through.
    vi.spyOn(Date, "now").mockReturnValue(frozen + Number(first.headers.get("retry-after")) * 1000);
    expect((await api("GET", `/v1/runs/${run.id}`, { key: customer.key })).status).toBe(200);
  }, 60_000);

  it("a client polling its run at 20 requests/s is never throttled", async () => {
    const customer = await newCustomer("rl");
    const run = (await createRun(customer.key, { steps: [synthetic("a")] })).body.run;
    for (let i = 0; i < 40; i++) {
      expect((await api("GET", `/v1/runs/${run.id}`, { key: customer.key })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 30_000);

  it("a plan's own limit applies and is named; other customers and the admin key are not held back by it", async () => {
    const slow = await customerWithPlan({ rateLimit: { requestsPerSecond: 1, burst: 3 } });
    const other = await newCustomer("rl");
    const view = await api("GET", `/v1/customers/${slow.id}`);
    expect(view.body.customer.plan.rateLimit).toEqual({ requestsPerSecond: 1, burst: 3, source: "plan" });
    expect((await api("GET", `/v1/customers/${other.id}`)).body.customer.plan.rateLimit).toEqual({ requestsPerSecond: 100, burst: 200, source: "default" });

    const second = (await api("POST", `/v1/customers/${slow.id}/keys`)).body.apiKey as string;
    // The clock stands still while the bucket is emptied, so a slow machine refills nothing meanwhile.
    const clock = vi.spyOn(Date, "now").mockReturnValue(Date.now());
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await api("GET", "/v1/runs?limit=1", { key: slow.key })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await api("GET", "/v1/runs?limit=1", { key: slow.key });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1");
    expect(limited.body.error.message).toMatch(/1 requests\/s sustained, burst 3, its plan's/);
    // Every key of the customer shares the bucket (the key was made before the bucket emptied).
    expect((await api("GET", "/v1/runs?limit=1", { key: second })).status).toBe(429);
    // Not another customer, and not the admin, even about the limited customer.
    expect((await api("GET", "/v1/runs?limit=1", { key: other.key })).status).toBe(200);
    clock.mockRestore();
    // Honoured in real time, Retry-After lets the next request through.
    await new Promise((r) => setTimeout(r, 1000 * Number(limited.headers.get("retry-after"))));
    expect((await api("GET", "/v1/runs?limit=1", { key: slow.key })).status).toBe(200);

    // The admin key has no bucket: it never asks a limiter, so with the clock standing still,
    // ten times the limited customer's burst about that customer is never a 429.
    vi.spyOn(Date, "now").mockReturnValue(Date.now());
    const take = vi.spyOn(RateLimiter.prototype, "take");
    const admin = await inBatches(30, 10, () => api("GET", `/v1/runs?limit=1&customerId=${slow.id}`, { key: ADMIN }));
    expect(admin.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
    expect(take).not.toHaveBeenCalled();
  }, 60_000);

  it("a refusal is remembered per isolate until the time it named: a flood of refused requests costs no limiter requests", async () => {
    const take = vi.spyOn(RateLimiter.prototype, "take");
    const slow = await customerWithPlan({ rateLimit: { requestsPerSecond: 0.5, burst: 1 } });
    const frozen = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(frozen);
    expect((await api("GET", "/v1/runs?limit=1", { key: slow.key })).status).toBe(200);
    expect((await api("GET", "/v1/runs?limit=1", { key: slow.key })).status).toBe(429);
    const asked = take.mock.calls.length;
    const flood = await Promise.all(Array.from({ length: 20 }, () => api("GET", "/v1/runs?limit=1", { key: slow.key })));
    expect(flood.every((r) => r.status === 429 && r.headers.get("retry-after") === "2")).toBe(true);
    expect(take.mock.calls.length).toBe(asked);
    // Once the named time has come, the limiter is asked again and lets it through.
    vi.spyOn(Date, "now").mockReturnValue(frozen + 2_000);
    expect((await api("GET", "/v1/runs?limit=1", { key: slow.key })).status).toBe(200);
    expect(take.mock.calls.length).toBe(asked + 1);
  });

  it("a limiter that fails lets requests through (logged); one that says it is overloaded answers 429", async () => {
    const customer = await newCustomer("rl");
    vi.spyOn(RateLimiter.prototype, "take").mockRejectedValue(new Error("limiter storage is on fire"));
    expect((await api("GET", "/v1/runs?limit=1", { key: customer.key })).status).toBe(200);
    vi.spyOn(RateLimiter.prototype, "take").mockRejectedValue(new Error("Durable Object is overloaded. Too many requests queued."));
    const res = await api("GET", "/v1/runs?limit=1", { key: customer.key });
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe("rate_limited");
    expect(res.headers.get("retry-after")).toBe("1");
  });
});

describe("readiness exposure", () => {
  it("the public and customer keys get {status} only, even when failing; the admin key gets each check with its error", async () => {
    const customer = await newCustomer("ready");
    vi.spyOn(CustomerLedger.prototype, "summary").mockRejectedValue(new Error("ledger at internal-host-17 is unreachable"));
    clearReadinessCache();
    for (const key of [null, customer.key, "rp_made_up", "not-even-a-key"]) {
      const res = await api("GET", "/health/ready", { key });
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ status: "failing" });
    }
    const admin = await api("GET", "/health/ready", { key: ADMIN });
    expect(admin.status).toBe(503);
    expect(admin.body.status).toBe("failing");
    expect(admin.body.checks.durableObjects).toEqual({ ok: false, error: "ledger at internal-host-17 is unreachable" });
    expect(admin.body.checks.d1).toEqual({ ok: true });
    vi.restoreAllMocks();
    clearReadinessCache();
    expect((await api("GET", "/health/ready", { key: null })).body).toEqual({ status: "ok" });
  });

  it("a flood of probes runs the checks once per isolate per READY_CACHE_MS; /health does no I/O at all", async () => {
    clearReadinessCache();
    const summary = vi.spyOn(CustomerLedger.prototype, "summary");
    const prepare = vi.spyOn(env.DB, "prepare");
    // Queue consumers may write to D1 meanwhile: count readiness's own query only.
    const readinessQueries = () => prepare.mock.calls.filter(([sql]) => sql === "SELECT 1").length;
    const probes = await Promise.all(Array.from({ length: 25 }, () => api("GET", "/health/ready", { key: null })));
    expect(probes.every((r) => r.status === 200)).toBe(true);
    expect(summary).toHaveBeenCalledTimes(1);
    expect(readinessQueries()).toBe(1);
    clockAhead(READY_CACHE_MS);
    expect((await api("GET", "/health/ready", { key: null })).status).toBe(200);
    expect(summary).toHaveBeenCalledTimes(2);

    const live = await Promise.all(Array.from({ length: 10 }, () => api("GET", "/health", { key: null })));
    expect(live.every((r) => r.status === 200 && r.body.status === "ok")).toBe(true);
    expect(summary).toHaveBeenCalledTimes(2);
    expect(readinessQueries()).toBe(2);
  });
});
