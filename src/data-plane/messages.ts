import { z } from "zod";

/** A step dispatch: "run step `stepIndex` of run `runId`, generation `dispatch`". */
export const JobMessageSchema = z
  .object({
    v: z.literal(1),
    runId: z.string().min(1).max(100),
    stepIndex: z.number().int().min(0),
    dispatch: z.number().int().min(1),
    pool: z.string().min(1),
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

export const RunIndexRowSchema = z.object({
  id: z.string(),
  customerId: z.string(),
  projectId: z.string(),
  runType: z.string().nullable(),
  pool: z.string(),
  priority: z.string(),
  status: z.string(),
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  finishedAt: z.number().nullable(),
  failureType: z.string().nullable(),
  failedStep: z.string().nullable(),
  idempotencyKey: z.string().nullable(),
  /** Monotonic per run: an older update never overwrites a newer one. */
  version: z.number().int(),
});
export type RunIndexRow = z.infer<typeof RunIndexRowSchema>;

/** Run index updates and attempt records, written to D1 in batches off the step path. */
/** A priced cost event as it travels: bigints as decimal strings. */
export const CostEventRowSchema = z.object({
  id: z.string(),
  customerId: z.string(),
  projectId: z.string(),
  runId: z.string(),
  runType: z.string().nullable(),
  pool: z.string(),
  step: z.string().nullable(),
  attempt: z.number().int().nullable(),
  meter: z.string(),
  model: z.string().nullable(),
  quantity: z.string(),
  perMillion: z.string(),
  nanoUsd: z.string(),
  priceVersion: z.string(),
  estimated: z.boolean(),
  at: z.number(),
});

export const AlertRaiseSchema = z.object({
  id: z.string(),
  kind: z.string(),
  severity: z.string(),
  customerId: z.string().nullable(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()),
  createdAt: z.number(),
});

export const EventMessageSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("run.index"), run: RunIndexRowSchema, attempts: z.array(AttemptRowSchema) }),
  /** Cost events a customer ledger has recorded, for D1's cost_events. */
  z.object({ kind: z.literal("cost.events"), events: z.array(CostEventRowSchema) }),
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
    history: AttemptHistorySchema,
    deadAt: z.number(),
  })
  .strict();
export type DeadLetterMessage = z.infer<typeof DeadLetterMessageSchema>;

/** A dead-lettered dispatch names its run, step and generation: one entry per failure. */
export const deadLetterKey = (runId: string, stepIndex: number, dispatch: number) => `${runId}:${stepIndex}:${dispatch}`;
