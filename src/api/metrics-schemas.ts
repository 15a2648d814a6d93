/**
 * What the /v1/metrics/* routes share: the query (`from`, `to`, `bucket`, `groupBy`,
 * `customerId`), the response envelope, and the figures' schemas. Each route file picks its
 * groupings and figures.
 */
import { z } from "@hono/zod-openapi";
import { FAILURE_TYPES } from "../domain/run-status";
import { METRIC_BUCKETS } from "../metrics/buckets";
import { ClientName } from "./openapi";

export const ExactInt = z.union([z.number().int(), z.string()]).openapi({ description: "Exact integer: a JSON number while ≤ 2^53, else a decimal string" });
const Ratio = z.number().nullable().openapi({ description: "0…1; null when its denominator is 0" });
const Num = z.number().nullable();

export function metricsQuery<G extends readonly [string, ...string[]]>(groups: G) {
  return z.object({
    from: z.iso.datetime({ offset: true }).optional().openapi({ description: "Default: 7 days before `to`; widened to the hour (rollups are hourly)" }),
    to: z.iso.datetime({ offset: true }).optional().openapi({ description: "Exclusive; default now, widened to the end of its hour" }),
    bucket: z.enum(METRIC_BUCKETS).optional().openapi({ description: "UTC buckets (weeks start on Monday); default day" }),
    groupBy: z.enum(groups).optional(),
    customerId: ClientName("customerId").optional().openapi({ description: "Admin: one customer only; a customer key may name only itself" }),
  });
}

export function metricsEnvelope<F extends z.ZodObject, G extends readonly [string, ...string[]]>(name: string, figures: F, groups: G, extra: z.ZodRawShape = {}) {
  return z
    .object({
      from: z.string(),
      to: z.string(),
      bucket: z.enum(METRIC_BUCKETS),
      groupBy: z.string().nullable().openapi({ description: `One of ${groups.join(", ")}; null without groupBy` }),
      series: z.array(
        figures.extend({
          bucket: z.string().openapi({ description: "Start of the bucket, ISO-8601 UTC" }),
          key: z.string().optional().openapi({ description: "The group (with groupBy): '(inline)' for runs without a run type, '(infra)' for infrastructure" }),
          customerId: z.string().optional().openapi({ description: "With groupBy=project: the project's customer" }),
        }),
      ),
      totals: figures,
      ...extra,
    })
    .openapi(name);
}

export const Percentiles = z
  .object({ method: z.string(), exactBelowMs: z.number(), relativeError: z.number() })
  .openapi({ description: "How percentiles are computed: a log-linear sketch, exact below 128 ms, else within relativeError of the exact nearest-rank value" });

const byFailureType = <T extends z.ZodType>(t: T) => z.object(Object.fromEntries(FAILURE_TYPES.map((f) => [f, t])) as Record<(typeof FAILURE_TYPES)[number], T>);

export const RunFigures = z.object({
  runs: z.number().int().openapi({ description: "Runs created in the bucket: the volume" }),
  finished: z.number().int(),
  unfinished: z.number().int(),
  succeeded: z.number().int(),
  failed: z.number().int(),
  cancelled: z.number().int(),
  successRate: Ratio,
  failureRate: Ratio,
  cancelledRate: Ratio,
  failuresByType: byFailureType(z.number().int()),
  failureRateByType: byFailureType(Ratio),
  durationMs: z.object({ runs: z.number().int(), avg: Num, p50: Num, p95: Num, max: Num }),
});

export const CostFigures = z.object({
  runs: z.number().int().openapi({ description: "Runs whose first cost is in the bucket (by model: that first used the model there)" }),
  customers: z.number().int(),
  totalNanoUsd: ExactInt,
  totalUsd: z.string(),
  aiNanoUsd: ExactInt,
  aiUsd: z.string(),
  infraNanoUsd: ExactInt,
  infraUsd: z.string(),
  costPerRunNanoUsd: ExactInt.nullable(),
  costPerRunUsd: z.string().nullable(),
  costPerCustomerNanoUsd: ExactInt.nullable(),
  costPerCustomerUsd: z.string().nullable(),
  inputTokens: ExactInt,
  cachedTokens: ExactInt,
  outputTokens: ExactInt,
  reasoningTokens: ExactInt,
  changeNanoUsd: ExactInt.nullable().optional().openapi({ description: "Series rows: total − the same key's total in the bucket before (0 when it had none); null in the range's first bucket" }),
  changePercent: z.number().nullable().optional(),
});

const MinMax = z.object({ avg: Num, max: Num });

export const QueueFigures = z.object({
  depth: MinMax.nullable().openapi({ description: "Admin only: backlog sampled each minute" }),
  inFlight: MinMax.nullable(),
  desiredConcurrency: z.object({ avg: Num }).nullable(),
  samples: z.number().int().nullable(),
  processed: z.number().int().openapi({ description: "Finished step attempts (jobs)" }),
  processingRatePerSecond: Num,
  attempts: z.number().int(),
  retries: z.number().int(),
  retryRate: Ratio,
  deadLettered: z.number().int().openapi({ description: "DLQ entries recorded in the bucket" }),
  dlqSize: MinMax.nullable().openapi({ description: "Admin only: open DLQ entries, sampled each minute" }),
});

export const WorkerFigures = z.object({
  attempts: z.number().int(),
  processed: z.number().int(),
  busyMs: z.number(),
  capacityMs: z.number().nullable(),
  utilization: Ratio,
  sampledUtilization: Ratio,
  failedAttempts: z.number().int(),
  attemptFailureRate: Ratio,
  workerErrors: z.number().int(),
  workerErrorRate: Ratio,
});

export const ApiFigures = z.object({
  requests: z.number().int(),
  clientErrors: z.number().int(),
  serverErrors: z.number().int(),
  errorRate: Ratio,
  latencyMs: z.object({ avg: Num, p50: Num, p95: Num, p99: Num, max: Num }),
});

export const ReliabilityFigures = z.object({
  uptime: z.object({
    probes: z.number().int(),
    okProbes: z.number().int(),
    expectedProbes: z.number().int(),
    missedProbes: z.number().int(),
    uptime: Ratio,
  }),
  runFailureRate: Ratio,
  workerErrorRate: Ratio,
  retryRate: Ratio,
  apiErrorRate: Ratio,
  deadLettered: z.number().int(),
});
