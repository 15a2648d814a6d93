/**
 * One Durable Object per customer: the token bucket of its API requests (src/domain/token-bucket.ts),
 * and the notices of its recently revoked keys.
 *
 * Cheap on purpose, since every request of a customer key asks it once: the bucket lives in
 * memory only, and a request writes no storage. So an eviction (an idle object, a restart)
 * resets the bucket to full: at worst one more burst. Only a revocation writes storage (rare),
 * so the notices survive evictions.
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { fullBucket, take, type BucketState } from "../../src/domain/token-bucket";
import { countUsage } from "../../src/lib/usage";
import { RevokeInputSchema, TakeInputSchema, type RateLimiterApi, type TakeReply } from "./rpc";

/**
 * How long a revocation notice is kept: longer than any isolate keeps a key in its cache
 * (KEY_CACHE_POSITIVE_MS, 30 s), so past it every isolate asks D1, which knows the key is revoked.
 */
export const REVOCATION_NOTICE_MS = 120_000;
const REVOKED_KEY = "revoked";

export class RateLimiter extends DurableObject implements RateLimiterApi {
  private bucket: BucketState | null = null;
  /** keyId → when it was revoked. */
  private revoked = new Map<string, number>();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const stored = await ctx.storage.get<Record<string, number>>(REVOKED_KEY);
      for (const [keyId, at] of Object.entries(stored ?? {})) this.revoked.set(keyId, at);
    });
  }

  async take(input: z.input<typeof TakeInputSchema>): Promise<TakeReply> {
    countUsage("do_requests");
    const { keyId, limit } = TakeInputSchema.parse(input);
    const now = Date.now();
    if (this.revoked.size > 0) {
      const at = this.revoked.get(keyId);
      if (at !== undefined && now - at < REVOCATION_NOTICE_MS) return { outcome: "revoked" };
    }
    const result = take(this.bucket ?? fullBucket(limit, now), limit, now);
    this.bucket = result.state;
    return result.allowed ? { outcome: "allowed", remaining: result.remaining } : { outcome: "limited", retryAfterMs: result.retryAfterMs };
  }

  async revokeKey(input: z.input<typeof RevokeInputSchema>): Promise<void> {
    countUsage("do_requests");
    const { keyId } = RevokeInputSchema.parse(input);
    const now = Date.now();
    for (const [id, at] of this.revoked) if (now - at >= REVOCATION_NOTICE_MS) this.revoked.delete(id);
    this.revoked.set(keyId, now);
    await this.ctx.storage.put(REVOKED_KEY, Object.fromEntries(this.revoked));
  }
}
