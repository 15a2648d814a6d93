import { z } from "zod";
import type { RollupRow } from "../domain/cost-records";
import { RunIdentitySchema } from "../domain/run-identity";
import { FAILURE_TYPES, RUN_STATUSES } from "../domain/run-status";

/**
 * A step dispatch: "run step `stepIndex` of run `runId`, generation `dispatch`". `shard`: the pool
 * controller shard that admitted it, which the consumer tells when the chain is done (absent: sent
 * without admission, e.g. when the controller could not be reached).
 */
export const JobMessageSchema = z
  .object({
    v: z.literal(1),
    runId: z.string().min(1).max(100),
    stepIndex: z.number().int().min(0),
    dispatch: z.number().int().min(1),
    pool: z.string().min(1),
    shard: z.number().int().min(0).max(1023).optional(),
  })
  .strict();
export type JobMessage = z.infer<typeof JobMessageSchema>;

const AttemptRowSchema = z.object({
  stepIndex: z.number().int(),
  step: z.string(),
  stepType: z.string(),
  attempt: z.number().int(),
  status: z.string(),
  failureType: z.string().nullable(),
  failureMessage: z.string().nullable(),
  startedAt: z.number(),
  finishedAt: z.number().nullable(),
});
export type AttemptRow = z.infer<typeof AttemptRowSchema>;

export const RunIndexRowSchema = RunIdentitySchema.extend({
  status: z.enum(RUN_STATUSES),
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  finishedAt: z.number().nullable(),
  failureType: z.enum(FAILURE_TYPES).nullable(),
  failedStep: z.string().nullable(),
  idempotencyKey: z.string().nullable(),
  /** Monotonic per run: an older update never overwrites a newer one. */
  version: z.number().int(),
  /** When the run should have moved on by its own timers: the reconciler's indexed deadline (null: nothing due). */
  dueAt: z.number().nullable().optional(),
});
export type RunIndexRow = z.infer<typeof RunIndexRowSchema>;

/** A non-negative integer as decimal text, within SQLite's 64-bit integers (bigints travel as text). */
export const IntegerText = z
  .string()
  .regex(/^(0|[1-9]\d{0,18})$/, "must be a non-negative integer as decimal text")
  .refine((text) => BigInt(text) <= 2n ** 63n - 1n, "must be below 2^63");

export const RollupLineSchema = z.object({
  meter: z.string().max(64),
  model: z.string().max(200).nullable(),
  quantity: IntegerText,
  nanoUsd: IntegerText,
  estimated: z.boolean(),
});

/** One row of a run's cost rollup (src/domain/cost-records.ts RollupRow) on the wire. */
export const RollupRowSchema = z.object({
  hour: z.number().int().min(0),
  model: z.string().max(200),
  part: z.number().int().min(0).max(10_000),
  inputTokens: IntegerText,
  cachedInputTokens: IntegerText,
  outputTokens: IntegerText,
  reasoningTokens: IntegerText,
  aiNanoUsd: IntegerText,
  infraNanoUsd: IntegerText,
  nanoUsd: IntegerText,
  attempts: z.number().int().min(0),
  lines: z.array(RollupLineSchema).max(500),
  priceVersions: z.array(z.string().max(100)).max(100),
});

/** A run's whole cost as D1 keeps it: every rollup row, as of the run's record `version`. */
export const RunRollupSchema = z.object({
  runId: z.string().min(1).max(100),
  customerId: z.string().min(1),
  projectId: z.string().min(1),
  runType: z.string().nullable(),
  pool: z.string().min(1),
  version: z.number().int().min(0),
  rows: z.array(RollupRowSchema).max(5_000),
});
export type RunRollup = z.infer<typeof RunRollupSchema>;

export function rollupToWire(row: RollupRow): z.infer<typeof RollupRowSchema> {
  return {
    hour: row.hour,
    model: row.model,
    part: row.part,
    inputTokens: row.inputTokens.toString(),
    cachedInputTokens: row.cachedInputTokens.toString(),
    outputTokens: row.outputTokens.toString(),
    reasoningTokens: row.reasoningTokens.toString(),
    aiNanoUsd: row.aiNanoUsd.toString(),
    infraNanoUsd: row.infraNanoUsd.toString(),
    nanoUsd: row.nanoUsd.toString(),
    attempts: row.attempts,
    lines: row.lines.map((l) => ({ meter: l.meter, model: l.model, quantity: l.quantity.toString(), nanoUsd: l.nanoUsd.toString(), estimated: l.estimated })),
    priceVersions: row.priceVersions,
  };
}

export const AlertRaiseSchema = z.object({
  id: z.string(),
  kind: z.string(),
  severity: z.string(),
  customerId: z.string().nullable(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()),
  createdAt: z.number(),
});

// ---- Operational metrics (docs/analytics.md): low-rate samples, never one per step ----

/** A duration sketch: {bucket index: count} (src/metrics/sketch.ts). */
const HistogramSchema = z
  .record(z.string().regex(/^\d{1,5}$/), z.number().int().min(1))
  .refine((h) => Object.keys(h).length <= 4_000, "at most 4000 buckets");

export const ApiTimingEntrySchema = z.object({
  minute: z.number().int().min(0),
  route: z.string().min(1).max(200),
  method: z.string().min(1).max(16),
  statusClass: z.number().int().min(1).max(5),
  customerId: z.string().max(64),
  count: z.number().int().min(1),
  sumMs: z.number().int().min(0),
  maxMs: z.number().int().min(0),
  hist: HistogramSchema,
});

/** An isolate's API timings since its last flush (src/metrics/api-timings.ts). */
export const ApiTimingSampleSchema = z.object({
  kind: z.literal("metrics.api"),
  v: z.literal(1),
  /** isolate id and flush sequence: the same sample delivered twice is inserted once */
  sampleId: z.string().min(1).max(200),
  entries: z.array(ApiTimingEntrySchema).min(1).max(500),
});

/**
 * A pool's state at a minute, from its controllers' samples (`source: "controller"`) or, while they
 * are idle, from the run index (`source: "cron"`, no desired concurrency): src/services/pool-sampler.ts.
 */
export const PoolSampleSchema = z.object({
  minute: z.number().int().min(0),
  pool: z.string().min(1).max(64),
  source: z.enum(["cron", "controller"]),
  depth: z.number().int().min(0),
  queued: z.number().int().min(0),
  running: z.number().int().min(0),
  waiting: z.number().int().min(0),
  inFlight: z.number().int().min(0),
  /** jobs finished in the minute before; null when the source does not track it */
  processed: z.number().int().min(0).nullable(),
  concurrency: z.number().int().min(0),
  desiredConcurrency: z.number().int().min(0).nullable(),
  utilization: z.number().min(0).max(1),
  dlqOpen: z.number().int().min(0),
  sampledAt: z.number().int().min(0),
});
export type PoolSample = z.infer<typeof PoolSampleSchema>;

/** The minute cron's probe of the control plane. */
export const UptimeProbeSchema = z.object({
  minute: z.number().int().min(0),
  ok: z.boolean(),
  status: z.number().int().min(0).max(999),
  latencyMs: z.number().int().min(0),
  failed: z.array(z.string().max(64)).max(20),
  probedAt: z.number().int().min(0),
});
export type UptimeProbe = z.infer<typeof UptimeProbeSchema>;

export const EventMessageSchema = z.discriminatedUnion("kind", [
  ApiTimingSampleSchema,
  z.object({ kind: z.literal("metrics.pool"), v: z.literal(1), sample: PoolSampleSchema }),
  z.object({ kind: z.literal("metrics.probe"), v: z.literal(1), probe: UptimeProbeSchema }),
  z.object({ kind: z.literal("run.index"), run: RunIndexRowSchema, attempts: z.array(AttemptRowSchema) }),
  /** A run's cost, as its customer's ledger counted it, for D1's cost_rollups. */
  z.object({ kind: z.literal("cost.rollup"), rollup: RunRollupSchema }),
  /** An alert to record and deliver (budget thresholds). */
  z.object({ kind: z.literal("alert.raise"), alert: AlertRaiseSchema }),
]);
export type EventMessage = z.infer<typeof EventMessageSchema>;

const FailureSchema = z.object({ type: z.string(), message: z.string() });

export const AttemptHistorySchema = z.array(
  z.object({
    attempt: z.number().int(),
    startedAt: z.number(),
    finishedAt: z.number().nullable(),
    outcome: z.string(),
    failure: FailureSchema.optional(),
  }),
);

/** What the run object sends to its pool's dead-letter queue when a step's failure ends the run. */
export const DeadLetterMessageSchema = z
  .object({
    v: z.literal(1),
    kind: z.literal("step_failed"),
    runId: z.string().min(1),
    customerId: z.string(),
    runType: z.string().nullable(),
    pool: z.string(),
    stepIndex: z.number().int().min(0),
    dispatch: z.number().int().min(0),
    step: z.string(),
    failure: FailureSchema,
    attempts: z.number().int().min(0),
    /** The latest attempts; `attemptsOmitted` earlier ones are left out to keep the message small. */
    history: AttemptHistorySchema,
    attemptsOmitted: z.number().int().min(1).optional(),
    deadAt: z.number(),
  })
  .strict();
export type DeadLetterMessage = z.infer<typeof DeadLetterMessageSchema>;

/** A dead-lettered dispatch names its run, step and generation: one entry per failure. */
export const deadLetterKey = (runId: string, stepIndex: number, dispatch: number) => `${runId}:${stepIndex}:${dispatch}`;
