/**
 * The per-customer request rate limit: a token bucket per customer in its RateLimiter Durable
 * Object (durable-objects/rate-limiter/), asked once per request of a customer key. The admin
 * key is never limited.
 *
 * Per isolate, a refusal is remembered until the time the object gave: until then the bucket
 * cannot hold a token (a refusal takes none and the refill is fixed), so later requests of
 * that customer are refused here without asking the object. That keeps a flood from costing
 * one object request per refused request.
 */
import { rateLimiterStub } from "../../durable-objects/rate-limiter/rpc";
import type { CustomerPrincipal } from "../domain/principal";
import { rateLimitDefaults } from "../domain/plan";
import type { RateLimitConfig } from "../domain/token-bucket";
import { LruCache } from "../lib/lru";
import { errorMessage, log } from "../lib/log";

export type Admission =
  | { outcome: "allowed" }
  | { outcome: "limited"; retryAfterMs: number; limit: RateLimitConfig; source: "plan" | "default" }
  | { outcome: "revoked" };

/** customerId → until when (ms) its bucket is known to be empty. */
const refusedUntil = new LruCache<string, number>(10_000);

export class RateLimitService {
  constructor(private readonly env: Env) {}

  /** The limit a customer's requests run under: its plan's, else the deployment's (null: none). */
  limitFor(planLimit: RateLimitConfig | null | undefined): { limit: RateLimitConfig; source: "plan" | "default" } | null {
    if (planLimit) return { limit: planLimit, source: "plan" };
    const defaults = rateLimitDefaults(this.env);
    // A bad default is reported as `misconfigured` before any route runs (AuthService.misconfiguration).
    if (typeof defaults === "string" || defaults.config === null) return null;
    return { limit: defaults.config, source: "default" };
  }

  async admit(principal: CustomerPrincipal): Promise<Admission> {
    const applied = this.limitFor(principal.rateLimit);
    const now = Date.now();
    const until = refusedUntil.get(principal.customerId);
    if (applied && until !== undefined && until > now) return { outcome: "limited", retryAfterMs: until - now, ...applied };
    // Without any limit the object is still asked (with a bucket nothing empties), for revocations.
    const limit = applied?.limit ?? { requestsPerSecond: 1_000_000, burst: 1_000_000 };
    try {
      const reply = await rateLimiterStub(this.env, principal.customerId).take({ keyId: principal.keyId, limit });
      if (reply.outcome === "limited" && applied) {
        refusedUntil.set(principal.customerId, now + reply.retryAfterMs, reply.retryAfterMs);
        return { outcome: "limited", retryAfterMs: reply.retryAfterMs, ...applied };
      }
      return reply.outcome === "revoked" ? { outcome: "revoked" } : { outcome: "allowed" };
    } catch (err) {
      const message = errorMessage(err);
      // An overloaded object means this customer sends more than it can count: that is a flood.
      if (applied && /overloaded/i.test(message)) return { outcome: "limited", retryAfterMs: 1000, ...applied };
      // Otherwise the limit fails open: a broken limiter must not turn into an outage.
      log("rate_limit.unavailable", { customerId: principal.customerId, error: message }, "warn");
      return { outcome: "allowed" };
    }
  }

  /** Tells the customer's limiter that a key is revoked, so every isolate refuses it at once. */
  async keyRevoked(customerId: string, keyId: string): Promise<boolean> {
    try {
      await rateLimiterStub(this.env, customerId).revokeKey({ keyId });
      return true;
    } catch (err) {
      log("rate_limit.revocation_notice_failed", { customerId, keyId, error: errorMessage(err) }, "warn");
      return false;
    }
  }

  /** Tests: forget the per-isolate refusals. */
  static reset() {
    refusedUntil.clear();
  }
}
