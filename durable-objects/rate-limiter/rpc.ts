/** The rate limiter's RPC contract: zod schemas for what callers send, types for what they get. */
import { z } from "zod";
import { RateLimitSchema } from "../../src/domain/plan";

export const TakeInputSchema = z.object({
  /** The API key making the request: refused at once when it was revoked (see `revokeKey`). */
  keyId: z.string().min(1).max(100),
  limit: RateLimitSchema,
});

export const RevokeInputSchema = z.object({ keyId: z.string().min(1).max(100) });

export type TakeReply =
  | { outcome: "allowed"; remaining: number }
  | { outcome: "limited"; retryAfterMs: number }
  /** The key was revoked in the last REVOCATION_NOTICE_MS: refuse it whatever an isolate's key cache says. */
  | { outcome: "revoked" };

export interface RateLimiterApi {
  take(input: z.input<typeof TakeInputSchema>): Promise<TakeReply>;
  revokeKey(input: z.input<typeof RevokeInputSchema>): Promise<void>;
}

/** One rate limiter per customer: every key of a customer shares its bucket. */
export function rateLimiterStub(env: Env, customerId: string): RateLimiterApi {
  return env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(customerId)) as unknown as RateLimiterApi;
}
