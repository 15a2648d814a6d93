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
export const EventMessageSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("run.index"), run: RunIndexRowSchema, attempts: z.array(AttemptRowSchema) }),
]);
export type EventMessage = z.infer<typeof EventMessageSchema>;
