/**
 * The metric formulas, from summed rollup counts to the figures the API reports. Pure: every
 * count is summed exactly from the rollups first (sums are additive over hours and keys), and
 * the ratios are taken last, so a bucket's figure is never an average of averages. A ratio
 * whose denominator is zero is null ("no data"), never 0. Money stays bigint nano-USD.
 */
import { FAILURE_TYPES, type FailureType } from "../domain/run-status";
import { divideHalfEven, nanoJson, nanoToUsdString } from "../domain/money";
import { histogramCount, mergeHistograms, quantile, type Histogram } from "./sketch";

export const rate = (numerator: number, denominator: number): number | null => (denominator > 0 ? numerator / denominator : null);
export const mean = (sum: number, count: number): number | null => (count > 0 ? sum / count : null);

export type FailureCounts = Record<FailureType, number>;
export const noFailures = (): FailureCounts => Object.fromEntries(FAILURE_TYPES.map((t) => [t, 0])) as FailureCounts;

/** Adds every numeric field of `from` into `into` (histograms merge, `…Max` fields take the larger, bigints add). */
export function addCounts<T extends Record<string, unknown>>(into: T, from: T): T {
  for (const [k, v] of Object.entries(from)) {
    const cur = (into as Record<string, unknown>)[k];
    if (typeof v === "number") (into as Record<string, unknown>)[k] = k.endsWith("Max") ? Math.max(Number(cur ?? 0), v) : Number(cur ?? 0) + v;
    else if (typeof v === "bigint") (into as Record<string, unknown>)[k] = (typeof cur === "bigint" ? cur : 0n) + v;
    else if (v !== null && typeof v === "object") {
      if (k === "hist") (into as Record<string, unknown>)[k] = mergeHistograms({ ...((cur as Histogram) ?? {}) }, v as Histogram);
      else (into as Record<string, unknown>)[k] = addCounts({ ...((cur as Record<string, unknown>) ?? {}) }, v as Record<string, unknown>);
    } else if (v === null && cur === undefined) (into as Record<string, unknown>)[k] = null;
  }
  return into;
}

// ---- runs ----

export interface RunCounts {
  runs: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  unfinished: number;
  failures: FailureCounts;
  timed: number;
  durationSumMs: number;
  durationMax: number;
  hist: Histogram;
}

export const emptyRunCounts = (): RunCounts => ({ runs: 0, succeeded: 0, failed: 0, cancelled: 0, unfinished: 0, failures: noFailures(), timed: 0, durationSumMs: 0, durationMax: 0, hist: {} });

export function runFigures(c: RunCounts) {
  const finished = c.succeeded + c.failed + c.cancelled;
  return {
    /** runs created in the bucket: the run volume */
    runs: c.runs,
    finished: finished,
    unfinished: c.unfinished,
    succeeded: c.succeeded,
    failed: c.failed,
    cancelled: c.cancelled,
    /** of the finished runs */
    successRate: rate(c.succeeded, finished),
    failureRate: rate(c.failed, finished),
    cancelledRate: rate(c.cancelled, finished),
    /** failed and cancelled runs by failure type, and each as a share of the finished runs */
    failuresByType: { ...c.failures },
    failureRateByType: Object.fromEntries(FAILURE_TYPES.map((t) => [t, rate(c.failures[t], finished)])) as Record<FailureType, number | null>,
    durationMs: {
      /** finished runs that started */
      runs: c.timed,
      avg: mean(c.durationSumMs, c.timed),
      p50: quantile(c.hist, 0.5),
      p95: quantile(c.hist, 0.95),
      max: c.timed > 0 ? c.durationMax : null,
    },
  };
}

// ---- step attempts (jobs) ----

export interface AttemptCounts {
  attempts: number;
  firstAttempts: number;
  retriedSteps: number;
  retries: number;
  running: number;
  succeeded: number;
  failed: number;
  failures: FailureCounts;
  busyMs: number;
}

export const emptyAttemptCounts = (): AttemptCounts => ({ attempts: 0, firstAttempts: 0, retriedSteps: 0, retries: 0, running: 0, succeeded: 0, failed: 0, failures: noFailures(), busyMs: 0 });

/** Jobs (step attempts): processing, retries, worker errors; `coveredMs` is the time the bucket spans, `capacityMs` the workers' (concurrency × time). */
export function attemptFigures(c: AttemptCounts, coveredMs: number, capacityMs: number | null) {
  const finished = c.attempts - c.running;
  return {
    attempts: c.attempts,
    /** finished attempts: the jobs processed */
    processed: finished,
    processingRatePerSecond: coveredMs > 0 ? finished / (coveredMs / 1000) : null,
    stepsStarted: c.firstAttempts,
    stepsRetried: c.retriedSteps,
    retries: c.retries,
    /** steps that needed a retry ÷ steps started */
    retryRate: rate(c.retriedSteps, c.firstAttempts),
    failedAttempts: c.failed,
    workerErrors: c.failures.worker_error,
    /** attempts that failed as worker_error ÷ finished attempts */
    workerErrorRate: rate(c.failures.worker_error, finished),
    attemptFailureRate: rate(c.failed, finished),
    busyMs: c.busyMs,
    capacityMs,
    /** busy worker time ÷ capacity (the pools' max_concurrency × the time covered) */
    utilization: capacityMs !== null ? rate(c.busyMs, capacityMs) : null,
  };
}

// ---- costs ----

export interface CostCounts {
  runs: number;
  customers: number;
  inputTokens: bigint;
  cachedTokens: bigint;
  outputTokens: bigint;
  reasoningTokens: bigint;
  aiNanoUsd: bigint;
  infraNanoUsd: bigint;
  nanoUsd: bigint;
}

export const emptyCostCounts = (): CostCounts => ({ runs: 0, customers: 0, inputTokens: 0n, cachedTokens: 0n, outputTokens: 0n, reasoningTokens: 0n, aiNanoUsd: 0n, infraNanoUsd: 0n, nanoUsd: 0n });

export function costFigures(c: CostCounts) {
  const perRun = c.runs > 0 ? divideHalfEven(c.nanoUsd, BigInt(c.runs)) : null;
  const perCustomer = c.customers > 0 ? divideHalfEven(c.nanoUsd, BigInt(c.customers)) : null;
  return {
    /** runs whose first cost falls in the bucket (with groupBy=model: that used the model, counted where they first did) */
    runs: c.runs,
    customers: c.customers,
    totalNanoUsd: nanoJson(c.nanoUsd),
    totalUsd: nanoToUsdString(c.nanoUsd),
    aiNanoUsd: nanoJson(c.aiNanoUsd),
    aiUsd: nanoToUsdString(c.aiNanoUsd),
    infraNanoUsd: nanoJson(c.infraNanoUsd),
    infraUsd: nanoToUsdString(c.infraNanoUsd),
    /** total ÷ runs, rounded half to even */
    costPerRunNanoUsd: perRun === null ? null : nanoJson(perRun),
    costPerRunUsd: perRun === null ? null : nanoToUsdString(perRun),
    /** total ÷ customers with cost, rounded half to even */
    costPerCustomerNanoUsd: perCustomer === null ? null : nanoJson(perCustomer),
    costPerCustomerUsd: perCustomer === null ? null : nanoToUsdString(perCustomer),
    inputTokens: nanoJson(c.inputTokens),
    cachedTokens: nanoJson(c.cachedTokens),
    /** generated tokens, reasoning included */
    outputTokens: nanoJson(c.outputTokens + c.reasoningTokens),
    reasoningTokens: nanoJson(c.reasoningTokens),
  };
}

/** Percent change from `before` to `after` (one decimal), null when there was nothing before. */
export function percentChange(before: bigint, after: bigint): number | null {
  if (before === 0n) return null;
  // ×1000 then one decimal: exact integer arithmetic down to 0.1 %.
  const permille = divideHalfEven((after - before) * 1000n, before < 0n ? -before : before);
  return Number(permille) / 10;
}

// ---- queues ----

export interface PoolCounts {
  samples: number;
  depthSum: number;
  depthMax: number;
  inFlightSum: number;
  inFlightMax: number;
  utilizationSum: number;
  desiredSum: number;
  desiredSamples: number;
  dlqOpenSum: number;
  dlqOpenMax: number;
}

export const emptyPoolCounts = (): PoolCounts => ({ samples: 0, depthSum: 0, depthMax: 0, inFlightSum: 0, inFlightMax: 0, utilizationSum: 0, desiredSum: 0, desiredSamples: 0, dlqOpenSum: 0, dlqOpenMax: 0 });

export function poolFigures(c: PoolCounts) {
  const none = c.samples === 0;
  return {
    /** minute samples of the pool's state */
    samples: c.samples,
    depth: { avg: mean(c.depthSum, c.samples), max: none ? null : c.depthMax },
    inFlight: { avg: mean(c.inFlightSum, c.samples), max: none ? null : c.inFlightMax },
    sampledUtilization: mean(c.utilizationSum, c.samples),
    desiredConcurrency: { avg: mean(c.desiredSum, c.desiredSamples) },
    dlqSize: { avg: mean(c.dlqOpenSum, c.samples), max: none ? null : c.dlqOpenMax },
  };
}

// ---- API ----

export interface ApiCounts {
  requests: number;
  responses4xx: number;
  responses5xx: number;
  sumMs: number;
  latencyMax: number;
  hist: Histogram;
}

export const emptyApiCounts = (): ApiCounts => ({ requests: 0, responses4xx: 0, responses5xx: 0, sumMs: 0, latencyMax: 0, hist: {} });

export function apiFigures(c: ApiCounts) {
  return {
    requests: c.requests,
    clientErrors: c.responses4xx,
    serverErrors: c.responses5xx,
    /** 5xx ÷ requests */
    errorRate: rate(c.responses5xx, c.requests),
    latencyMs: {
      avg: mean(c.sumMs, c.requests),
      p50: quantile(c.hist, 0.5),
      p95: quantile(c.hist, 0.95),
      p99: quantile(c.hist, 0.99),
      max: c.requests > 0 ? c.latencyMax : null,
    },
  };
}

// ---- uptime ----

/** `expected` is the minutes the bucket covers since probing began: each should have a probe. */
export function uptimeFigures(probes: number, ok: number, expected: number) {
  return {
    probes,
    okProbes: ok,
    expectedProbes: expected,
    missedProbes: Math.max(0, expected - probes),
    /** probes that found the control plane ready ÷ minutes covered (a minute without a probe counts as down) */
    uptime: expected > 0 ? Math.min(1, ok / expected) : null,
  };
}

export { histogramCount };
