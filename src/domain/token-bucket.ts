/**
 * Token bucket arithmetic, pure: a bucket holds at most `burst` tokens and gains
 * `requestsPerSecond` tokens a second; a request takes one token or is refused with the time
 * until one will be there. A refusal takes nothing, so a refused client that waits the time it
 * was told is let through (nothing else can empty the bucket meanwhile but granted requests).
 */
export interface RateLimitConfig {
  /** Sustained rate: tokens added per second. */
  requestsPerSecond: number;
  /** Bucket size: how many requests may arrive at once after a quiet spell. */
  burst: number;
}

export interface BucketState {
  tokens: number;
  /** ms since the epoch of the last refill. */
  updatedAt: number;
}

export type TakeResult =
  | { allowed: true; state: BucketState; remaining: number }
  | { allowed: false; state: BucketState; retryAfterMs: number };

/** Floating-point slack: a client that waited exactly the time it was told must get its token. */
const EPSILON = 1e-9;

export function assertValidConfig(config: RateLimitConfig): void {
  if (!(Number.isFinite(config.requestsPerSecond) && config.requestsPerSecond > 0)) {
    throw new RangeError(`requestsPerSecond must be a positive number, not ${config.requestsPerSecond}`);
  }
  if (!(Number.isSafeInteger(config.burst) && config.burst >= 1)) throw new RangeError(`burst must be an integer ≥ 1, not ${config.burst}`);
}

export function fullBucket(config: RateLimitConfig, now: number): BucketState {
  return { tokens: config.burst, updatedAt: now };
}

/** The bucket at `now`: refilled for the time since its last refill, never above `burst`. A clock that went back adds nothing. */
export function refill(state: BucketState, config: RateLimitConfig, now: number): BucketState {
  const elapsed = Math.max(0, now - state.updatedAt);
  return { tokens: Math.min(config.burst, state.tokens + (elapsed * config.requestsPerSecond) / 1000), updatedAt: Math.max(now, state.updatedAt) };
}

export function take(state: BucketState, config: RateLimitConfig, now: number): TakeResult {
  const current = refill(state, config, now);
  if (current.tokens >= 1 - EPSILON) {
    const tokens = Math.max(0, current.tokens - 1);
    return { allowed: true, state: { ...current, tokens }, remaining: Math.floor(tokens + EPSILON) };
  }
  const retryAfterMs = Math.max(1, Math.ceil(((1 - current.tokens) * 1000) / config.requestsPerSecond));
  return { allowed: false, state: current, retryAfterMs };
}

/** `Retry-After` is whole seconds: round up, and at least 1, so honouring it always suffices. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}
