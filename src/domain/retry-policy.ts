import { z } from "zod";

export const RetryPolicySchema = z
  .object({
    maxAttempts: z.number().int().min(1).max(100).describe("Every attempt counts, the first included."),
    initialDelayMs: z.number().int().min(0).max(43_200_000),
    maxDelayMs: z.number().int().min(0).max(43_200_000),
    backoffFactor: z.number().min(1).max(10),
  })
  .refine((p) => p.maxDelayMs >= p.initialDelayMs, {
    message: "maxDelayMs must be at least initialDelayMs",
    path: ["maxDelayMs"],
  });
export type RetryPolicy = z.infer<typeof RetryPolicySchema>;

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  backoffFactor: 2,
};

/**
 * Delay before the attempt that follows `failedAttempt` (1-based, counted within the
 * current attempt budget). Exponential with "equal jitter": half the capped delay is fixed,
 * half is random, so retries spread out without ever collapsing to zero.
 * A server's Retry-After wins when it asks for longer: backpressure beats our schedule.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  failedAttempt: number,
  random: () => number,
  retryAfterMs?: number,
): number {
  const exponential = policy.initialDelayMs * policy.backoffFactor ** Math.max(0, failedAttempt - 1);
  const capped = Math.min(policy.maxDelayMs, exponential);
  const jittered = Math.round(capped / 2 + (random() * capped) / 2);
  return Math.max(jittered, retryAfterMs ?? 0);
}
