import { and, eq, isNull } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import type { Principal } from "../domain/principal";
import { apiKeys, customers } from "../db/schema";
import { rateLimitDefaults, StoredPlanSchema } from "../domain/plan";
import { ledgerSubshards } from "../domain/ledger-subshards";
import { poolShardCounts } from "../config/pools";
import { sha256Hex } from "../lib/ids";
import { LruCache } from "../lib/lru";
import { log } from "../lib/log";

export const DEV_ADMIN_KEY = "dev-admin-key";
/** A key found in D1 is trusted this long per isolate (revocation: see the RateLimiter's notices). */
export const KEY_CACHE_POSITIVE_MS = 30_000;
/** A token D1 does not know is refused without asking D1 again for this long. */
export const KEY_CACHE_NEGATIVE_MS = 5_000;
export const KEY_CACHE_MAX_ENTRIES = 10_000;
/**
 * Per-isolate cache of key lookups (by the token's SHA-256): a run submission should not cost a
 * D1 read every time. Bounded, least recently used first out, so bogus tokens cannot grow it.
 */
const keyCache = new LruCache<string, Principal | null>(KEY_CACHE_MAX_ENTRIES);

/** Compares secrets in time independent of where they differ. */
function constantTimeEqual(a: string, b: string): boolean {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  let diff = ea.length ^ eb.length;
  for (let i = 0; i < Math.max(ea.length, eb.length); i++) diff |= (ea[i % ea.length] ?? 0) ^ (eb[i % eb.length] ?? 0);
  return diff === 0;
}

export class AuthService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
  ) {}

  /** The deployed Worker refuses to serve with no admin key or the local development one. */
  misconfiguration(): string | null {
    const key = this.env.ADMIN_API_KEY;
    if (!key) return "ADMIN_API_KEY is not set: run `wrangler secret put ADMIN_API_KEY`";
    if (this.env.RUNPLANE_ENV === "production" && key === DEV_ADMIN_KEY) {
      return "ADMIN_API_KEY is the local development value: set a real one with `wrangler secret put ADMIN_API_KEY`";
    }
    const limits = rateLimitDefaults(this.env);
    if (typeof limits === "string") return limits;
    const subshards = ledgerSubshards(this.env);
    if (typeof subshards === "string") return subshards;
    const poolShards = poolShardCounts(this.env);
    if (typeof poolShards === "string") return poolShards;
    return null;
  }

  /** Whether `token` is the admin key (no I/O). */
  isAdmin(token: string): boolean {
    return Boolean(this.env.ADMIN_API_KEY) && constantTimeEqual(token, this.env.ADMIN_API_KEY);
  }

  async authenticate(token: string): Promise<Principal | null> {
    if (this.isAdmin(token)) return { kind: "admin" };
    if (!token.startsWith("rp_") || token.length > 200) return null;
    const hash = await sha256Hex(token);
    const cached = keyCache.get(hash);
    if (cached !== undefined) return cached;
    const row = await this.db
      .select({ id: apiKeys.id, customerId: apiKeys.customerId, plan: customers.plan })
      .from(apiKeys)
      .innerJoin(customers, eq(customers.id, apiKeys.customerId))
      .where(and(eq(apiKeys.keyHash, hash), isNull(apiKeys.revokedAt)))
      .get();
    const principal: Principal | null = row ? { kind: "customer", customerId: row.customerId, keyId: row.id, rateLimit: planRateLimit(row.customerId, row.plan) } : null;
    keyCache.set(hash, principal, principal ? KEY_CACHE_POSITIVE_MS : KEY_CACHE_NEGATIVE_MS);
    return principal;
  }

  static forgetKey(hash: string) {
    keyCache.delete(hash);
  }

  static async forgetToken(token: string) {
    keyCache.delete(await sha256Hex(token));
  }

  /** Tests: the cache's size and a way to empty it. */
  static keyCacheSize() {
    return keyCache.size;
  }
  static clearKeyCache() {
    keyCache.clear();
  }
}

/** The plan's own rate limit, if it has one (a plan that does not parse gets the default). */
function planRateLimit(customerId: string, planJson: string) {
  let value: unknown;
  try {
    value = JSON.parse(planJson);
  } catch {
    value = null;
  }
  const plan = StoredPlanSchema.safeParse(value);
  if (!plan.success) {
    log("auth.plan_unreadable", { customerId, error: plan.error.message }, "warn");
    return null;
  }
  return plan.data.rateLimit ?? null;
}
