/**
 * A customer's plan as stored in D1 (`customers.plan`, JSON): what it pays, and the limits it
 * runs under. Parsed with this schema wherever it is read back.
 */
import { z } from "zod";
import { DEFAULT_MAX_RUNS_IN_FLIGHT } from "./ledger";
import type { RateLimitConfig } from "./token-bucket";

export { DEFAULT_MAX_RUNS_IN_FLIGHT };
export const MAX_REQUESTS_PER_SECOND = 100_000;
export const MAX_BURST = 1_000_000;
export const MAX_RUNS_IN_FLIGHT = 1_000_000;

export const RateLimitSchema = z
  .object({
    requestsPerSecond: z.number().positive().max(MAX_REQUESTS_PER_SECOND),
    burst: z.number().int().min(1).max(MAX_BURST),
  })
  .strict();

export const MaxRunsInFlightSchema = z.number().int().min(1).max(MAX_RUNS_IN_FLIGHT);

/** A customer's share of a busy pool, relative to other customers' (fair sharing); default 1. */
export const DEFAULT_PLAN_WEIGHT = 1;
export const MAX_PLAN_WEIGHT = 1_000;
export const PlanWeightSchema = z.number().min(0.01).max(MAX_PLAN_WEIGHT);

const NanoText = z.string().regex(/^\d+$/);

export const StoredPlanSchema = z.object({
  monthlyFeeNanoUsd: NanoText.default("0"),
  pricePerRunNanoUsd: NanoText.default("0"),
  /** Absent: the deployment's default (RATE_LIMIT_RPS, RATE_LIMIT_BURST). */
  rateLimit: RateLimitSchema.optional(),
  maxRunsInFlight: MaxRunsInFlightSchema.default(DEFAULT_MAX_RUNS_IN_FLIGHT),
  weight: PlanWeightSchema.default(DEFAULT_PLAN_WEIGHT),
});
export type StoredPlan = z.infer<typeof StoredPlanSchema>;

/** A stored plan; a row written before a field existed gets that field's default. */
export function parseStoredPlan(json: string): StoredPlan {
  return StoredPlanSchema.parse(JSON.parse(json));
}

export interface RateLimitDefaults {
  /** null: customers without a plan override are not rate limited (RATE_LIMIT_RPS = "0"). */
  config: RateLimitConfig | null;
}

/**
 * The deployment's default rate limit from RATE_LIMIT_RPS / RATE_LIMIT_BURST (absent: 100 and
 * 200). An unusable value is an error string, reported like any other misconfiguration.
 */
export function rateLimitDefaults(env: { RATE_LIMIT_RPS?: string; RATE_LIMIT_BURST?: string }): RateLimitDefaults | string {
  const rpsText = String(env.RATE_LIMIT_RPS ?? "").trim() || "100";
  const burstText = String(env.RATE_LIMIT_BURST ?? "").trim() || "200";
  const rps = Number(rpsText);
  const burst = Number(burstText);
  if (!Number.isFinite(rps) || rps < 0 || rps > MAX_REQUESTS_PER_SECOND) {
    return `RATE_LIMIT_RPS is "${rpsText}"; it must be a number from 0 (no default limit) to ${MAX_REQUESTS_PER_SECOND}`;
  }
  if (!Number.isSafeInteger(burst) || burst < 1 || burst > MAX_BURST) return `RATE_LIMIT_BURST is "${burstText}"; it must be an integer from 1 to ${MAX_BURST}`;
  return { config: rps === 0 ? null : { requestsPerSecond: rps, burst } };
}
