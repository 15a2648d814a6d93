import { and, eq, isNull } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import type { Principal } from "../api/context";
import { apiKeys } from "../db/schema";
import { sha256Hex } from "../lib/ids";

export const DEV_ADMIN_KEY = "dev-admin-key";
const CACHE_TTL_MS = 30_000;
/** Per-isolate cache of key lookups: a run submission should not cost a D1 read every time. */
const keyCache = new Map<string, { principal: Principal | null; until: number }>();

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
    return null;
  }

  async authenticate(token: string): Promise<Principal | null> {
    if (this.env.ADMIN_API_KEY && constantTimeEqual(token, this.env.ADMIN_API_KEY)) return { kind: "admin" };
    if (!token.startsWith("rp_") || token.length > 200) return null;
    const hash = await sha256Hex(token);
    const cached = keyCache.get(hash);
    if (cached && cached.until > Date.now()) return cached.principal;
    const row = await this.db
      .select({ id: apiKeys.id, customerId: apiKeys.customerId })
      .from(apiKeys)
      .where(and(eq(apiKeys.keyHash, hash), isNull(apiKeys.revokedAt)))
      .get();
    const principal: Principal | null = row ? { kind: "customer", customerId: row.customerId, keyId: row.id } : null;
    keyCache.set(hash, { principal, until: Date.now() + CACHE_TTL_MS });
    return principal;
  }

  static forgetKey(hash: string) {
    keyCache.delete(hash);
  }
}
