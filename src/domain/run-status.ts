export const RUN_STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const STEP_STATUSES = [
  "pending",
  "queued",
  "running",
  "waiting",
  "succeeded",
  "failed",
  "skipped",
  "cancelled",
] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

export const PRIORITIES = ["high", "normal", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];

export const FAILURE_TYPES = [
  "transient",
  "timeout",
  "worker_error",
  "permanent",
  "budget_exceeded",
  "cancelled",
] as const;
export type FailureType = (typeof FAILURE_TYPES)[number];

/** Why an attempt failed, as a step type reports it and the run machine records it. */
export interface StepFailure {
  type: FailureType;
  message: string;
  /** The platform lost the attempt (its worker stopped reporting): retried on the platform's budget. */
  platform?: boolean;
  /** A dependency asked us to wait this long before trying again (HTTP Retry-After). */
  retryAfterMs?: number;
}

const TERMINAL_RUN: ReadonlySet<RunStatus> = new Set(["succeeded", "failed", "cancelled"]);
const FINISHED_STEP: ReadonlySet<StepStatus> = new Set(["succeeded", "failed", "skipped", "cancelled"]);
const ACTIVE_STEP: ReadonlySet<StepStatus> = new Set(["queued", "running", "waiting"]);

export const isTerminalRun = (status: RunStatus) => TERMINAL_RUN.has(status);
export const isFinishedStep = (status: StepStatus) => FINISHED_STEP.has(status);
export const isActiveStep = (status: StepStatus) => ACTIVE_STEP.has(status);

/** Failure types worth another attempt: the same work may succeed later. */
export const isRetryableFailure = (type: FailureType) =>
  type === "transient" || type === "timeout" || type === "worker_error";

/** Failures the customer or its budget chose: the run ends, but nothing goes to the dead-letter queue. */
const NOT_DEAD_LETTERED: ReadonlySet<FailureType> = new Set(["cancelled", "budget_exceeded"]);

/** A failed run whose failing step has (or should have) a dead-letter entry. */
export const isDeadLettered = (run: { status: RunStatus; failure: { type: FailureType } | null }) =>
  run.status === "failed" && run.failure !== null && !NOT_DEAD_LETTERED.has(run.failure.type);
