/**
 * A pool's scaling policy and the desired concurrency it asks for: a pure function of the
 * policy, the pool's signals (queue depth, work in flight, utilization) and its scaling history,
 * in the manner of Kubernetes' HPA and KEDA:
 *
 *   byDepth       = ceil((depth + inFlight) / targetDepth)       the backlog signal
 *   byUtilization = ceil(current × utilization / target)          only outside the target band
 *   recommended   = clamp(max(byDepth, byUtilization), min, max), never below what is in flight
 *
 * then gated: a pool at 0 leaves it only when its backlog passes `activationThreshold`; a scale-up
 * needs the depth above `scaleUpThreshold` (or utilization above the band), a change beyond
 * `tolerance`, and `cooldownUpMs` since the last scale-up; a scale-down needs the depth at or
 * below `scaleDownThreshold`, `cooldownDownMs` since the last change, and goes only as low as the
 * highest recommendation of the last `stabilizationWindowMs` (scale-down stabilization).
 *
 * A worker here is one concurrent step chain (one admitted queue message): the unit admission
 * counts. No I/O, no clock: `now` comes in with the signals.
 */
import { z } from "zod";
import { SCHEDULING_MODES } from "./fair-queue";

/** The most concurrent chains one pool shard may be given (far above Cloudflare's 250 invocations × batch). */
export const MAX_POOL_CONCURRENCY = 10_000;
const HOUR_MS = 3_600_000;

export { SCHEDULING_MODES, type SchedulingMode } from "./fair-queue";

const Ms = (what: string) => z.number({ error: `${what} must be a number of milliseconds` }).int(`${what} must be whole milliseconds`).min(0).max(24 * HOUR_MS);

/** Every knob of a pool's policy (README "Pools and scaling" says what each is for and its default). */
export const ScalingPolicyFields = z
  .object({
    /** Queue depth (dispatches waiting for admission) above which the pool may scale up. */
    scaleUpThreshold: z.number().int().min(0).max(1_000_000),
    /** Queue depth at or below which the pool may scale down (0: only when nothing waits). */
    scaleDownThreshold: z.number().int().min(0).max(1_000_000),
    /** Work (waiting + running chains) one worker is meant to carry: desired = ceil(backlog / targetDepth). */
    targetDepth: z.number().positive().max(10_000),
    cooldownUpMs: Ms("cooldownUpMs"),
    cooldownDownMs: Ms("cooldownDownMs"),
    /** 0 = scale to zero when idle. */
    minConcurrency: z.number().int().min(0).max(MAX_POOL_CONCURRENCY),
    maxConcurrency: z.number().int().min(1).max(MAX_POOL_CONCURRENCY),
    /** A pool at 0 wakes only once its backlog is above this (KEDA's activation threshold). */
    activationThreshold: z.number().int().min(0).max(1_000_000),
    /** A recommended change of at most this fraction of the current concurrency is ignored (HPA: 0.1). */
    tolerance: z.number().min(0).max(1),
    /** A scale-down goes only as low as the highest recommendation within this window. */
    stabilizationWindowMs: Ms("stabilizationWindowMs"),
    /** The utilization band (busy ÷ capacity) the pool keeps its workers in; outside it, utilization is a second signal. */
    utilizationLow: z.number().min(0).max(1),
    utilizationHigh: z.number().gt(0).max(1),
    /** Dispatches waiting longer than this are promoted one priority lane (low → normal → high). */
    agingMs: z.number().int().min(1).max(24 * HOUR_MS),
    /** fair: lanes, then start-time fair queuing between customers by plan weight; fifo: lanes, then arrival order. */
    scheduling: z.enum(SCHEDULING_MODES),
  })
  .strict();

/** The knobs PUT /v1/pools/:name/policy requires (API.md); the others keep the pool's defaults when left out. */
export const REQUIRED_POLICY_FIELDS = ["scaleUpThreshold", "scaleDownThreshold", "targetDepth", "cooldownUpMs", "cooldownDownMs", "minConcurrency", "maxConcurrency"] as const;

export const ScalingPolicySchema = ScalingPolicyFields.superRefine((p, ctx) => {
  if (p.maxConcurrency < p.minConcurrency) ctx.addIssue({ code: "custom", path: ["maxConcurrency"], message: "maxConcurrency must be at least minConcurrency" });
  if (p.scaleDownThreshold > p.scaleUpThreshold) ctx.addIssue({ code: "custom", path: ["scaleDownThreshold"], message: "scaleDownThreshold must be at most scaleUpThreshold" });
  if (p.utilizationHigh < p.utilizationLow) ctx.addIssue({ code: "custom", path: ["utilizationHigh"], message: "utilizationHigh must be at least utilizationLow" });
});
export type ScalingPolicy = z.infer<typeof ScalingPolicySchema>;

/** What the pool looks like now. */
export interface ScalingSignals {
  /** Dispatches waiting for admission (the queue depth). */
  depth: number;
  /** Chains admitted and not yet reported done. */
  inFlight: number;
  /** Busy ÷ capacity over the recent window, 0…1; null when there was no capacity to measure. */
  utilization: number | null;
  now: number;
}

/** One recommendation kept for scale-down stabilization. */
export interface Recommendation {
  at: number;
  desired: number;
}

export interface ScalingHistory {
  /** The desired concurrency in force. */
  current: number;
  lastScaleUpAt: number | null;
  lastScaleDownAt: number | null;
  /** Recommendations within the stabilization window, as a decreasing deque (the front is the window's maximum). */
  recommendations: Recommendation[];
}

export interface ScalingDecision {
  desired: number;
  /** Why the desired concurrency is what it is (or why it did not move). */
  reason: string;
  changed: boolean;
  history: ScalingHistory;
  /** When the same signals could give another answer (a cooldown or the window ends); null: not before the signals change. */
  recheckAt: number | null;
}

export const initialHistory = (current = 0): ScalingHistory => ({ current, lastScaleUpAt: null, lastScaleDownAt: null, recommendations: [] });

/** Adds a recommendation to the window's deque (drops older ones it dominates) and drops those past the window. */
export function pushRecommendation(deque: readonly Recommendation[], rec: Recommendation, windowMs: number): Recommendation[] {
  const out = deque.filter((r) => r.at > rec.at - windowMs);
  while (out.length > 0 && out[out.length - 1]!.desired <= rec.desired) out.pop();
  out.push(rec);
  return out;
}

/** The utilization signal: HPA's ceil(current × utilization / target), target the band's middle; inside the band it holds. */
export function byUtilization(policy: ScalingPolicy, current: number, utilization: number | null): number | null {
  if (utilization === null || current === 0) return null;
  if (utilization >= policy.utilizationLow && utilization <= policy.utilizationHigh) return current;
  const target = (policy.utilizationLow + policy.utilizationHigh) / 2;
  return target === 0 ? current : Math.ceil((current * utilization) / target - 1e-9);
}

const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, n));

export function decideConcurrency(policy: ScalingPolicy, signals: ScalingSignals, history: ScalingHistory): ScalingDecision {
  const { depth, inFlight, now } = signals;
  const current = history.current;
  const backlog = depth + inFlight;
  const hold = (reason: string, recheckAt: number | null, h: ScalingHistory = history): ScalingDecision => ({ desired: current, reason, changed: false, history: h, recheckAt });
  const to = (desired: number, reason: string, h: ScalingHistory): ScalingDecision => {
    const changed = desired !== current;
    const stamped = !changed ? h : desired > current ? { ...h, lastScaleUpAt: now } : { ...h, lastScaleDownAt: now };
    return { desired, reason, changed, history: { ...stamped, current: desired }, recheckAt: null };
  };

  // Bounds first: a policy change may leave the current value outside them. Work already running
  // is never cut off: the pool comes down to the new maximum as it finishes.
  if (current > policy.maxConcurrency) return to(Math.max(policy.maxConcurrency, Math.min(current, inFlight)), `above maxConcurrency ${policy.maxConcurrency}`, history);
  if (current < policy.minConcurrency) return to(policy.minConcurrency, `below minConcurrency ${policy.minConcurrency}`, history);

  // Scale from zero: only past the activation threshold, and then at once (nothing is running to cool down from).
  if (current === 0) {
    if (backlog <= policy.activationThreshold) return hold(backlog === 0 ? "idle" : `backlog ${backlog} not above activation threshold ${policy.activationThreshold}`, null);
    const desired = clamp(Math.max(1, Math.ceil(backlog / policy.targetDepth)), 1, policy.maxConcurrency);
    const recs = pushRecommendation(history.recommendations, { at: now, desired }, policy.stabilizationWindowMs);
    return to(desired, `activation: backlog ${backlog} above ${policy.activationThreshold}, at ${policy.targetDepth} per worker`, { ...history, recommendations: recs });
  }

  const depthWants = Math.ceil(backlog / policy.targetDepth - 1e-9);
  // Utilization speaks only while there is work: a pool with nothing to do needs no worker, whatever its history.
  const utilWants = backlog > 0 ? byUtilization(policy, current, signals.utilization) : null;
  const raw = Math.max(depthWants, utilWants ?? 0);
  const recommended = clamp(Math.max(raw, inFlight), policy.minConcurrency, policy.maxConcurrency);
  const signal = utilWants !== null && utilWants > depthWants ? `utilization ${pct(signals.utilization)} outside ${pct(policy.utilizationLow)}–${pct(policy.utilizationHigh)}` : `backlog ${backlog} (${depth} waiting, ${inFlight} running) at ${policy.targetDepth} per worker`;
  const recommendations = pushRecommendation(history.recommendations, { at: now, desired: recommended }, policy.stabilizationWindowMs);
  const h: ScalingHistory = { ...history, recommendations };

  if (recommended > current) {
    const utilHigh = signals.utilization !== null && signals.utilization > policy.utilizationHigh;
    if (depth <= policy.scaleUpThreshold && !utilHigh) return hold(`depth ${depth} not above scale-up threshold ${policy.scaleUpThreshold}`, null, h);
    if (recommended - current <= policy.tolerance * current) return hold(`${recommended} within tolerance ${policy.tolerance} of ${current}`, null, h);
    if (history.lastScaleUpAt !== null && now - history.lastScaleUpAt < policy.cooldownUpMs) {
      return hold(`scale-up to ${recommended} waits for the up-cooldown`, history.lastScaleUpAt + policy.cooldownUpMs, h);
    }
    return to(recommended, `scale up: ${signal}`, h);
  }

  if (recommended < current) {
    // Stabilization: the highest recommendation of the window; the recheck is when it leaves the window.
    const stabilized = Math.max(recommendations[0]!.desired, inFlight, policy.minConcurrency);
    const lastChange = Math.max(history.lastScaleUpAt ?? -Infinity, history.lastScaleDownAt ?? -Infinity);
    const windowEnds = recommendations[0]!.at + policy.stabilizationWindowMs;
    if (stabilized >= current) return hold(`scale-down held by the stabilization window (highest ${recommendations[0]!.desired})`, windowEnds, h);
    if (depth > policy.scaleDownThreshold) return hold(`depth ${depth} above scale-down threshold ${policy.scaleDownThreshold}`, null, h);
    if (Number.isFinite(lastChange) && now - lastChange < policy.cooldownDownMs) {
      return hold(`scale-down to ${stabilized} waits for the down-cooldown`, lastChange + policy.cooldownDownMs, h);
    }
    // Going to the floor (min, or zero) is always allowed; a small step down otherwise is noise.
    if (stabilized > policy.minConcurrency && current - stabilized <= policy.tolerance * current) return hold(`${stabilized} within tolerance ${policy.tolerance} of ${current}`, windowEnds, h);
    return to(stabilized, stabilized === 0 ? "scale to zero: nothing waiting or running" : `scale down: ${signal}`, h);
  }

  return hold("steady", null, h);
}

const pct = (x: number | null) => (x === null ? "n/a" : `${Math.round(x * 100)}%`);

/**
 * One controller shard's policy when a pool has `shards` of them: each owns its share of the
 * pool's bounds (rounded up, and at least one slot), so the shards together stay within the
 * pool's min and max; every other knob is the pool's.
 */
export function shardPolicy(policy: ScalingPolicy, shards: number): ScalingPolicy {
  if (shards <= 1) return policy;
  return { ...policy, minConcurrency: Math.ceil(policy.minConcurrency / shards), maxConcurrency: Math.max(1, Math.ceil(policy.maxConcurrency / shards)) };
}
