/** The run object's RPC contract: zod schemas for what callers send, types for what they get. */
import { z } from "zod";
import type { FailureType, RunStatus, StepStatus } from "../../src/domain/run-status";
import { FAILURE_TYPES, PRIORITIES } from "../../src/domain/run-status";
import { RetryPolicySchema } from "../../src/domain/retry-policy";
import type { RunIdentity } from "../../src/domain/run-identity";
import type { Rejection } from "../../src/domain/run-machine";
import type { JsonValue } from "../../src/domain/input-references";
import { TokenUsageListSchema } from "../../src/domain/token-usage";
import { truncateText } from "../../src/lib/text";
import { SecretScopeSchema, type SecretScope } from "../../src/domain/secrets";
import { SubLedgerIndexSchema } from "../../src/domain/ledger-subshards";

/** RPC return types must be serializable: JSON values, not `unknown`. */
export type JsonObject = { [key: string]: JsonValue };

const StepDefinitionSchema = z.object({
  name: z.string(),
  type: z.string(),
  config: z.record(z.string(), z.unknown()),
  retry: RetryPolicySchema.optional(),
  timeoutMs: z.number().int().positive().optional(),
});

export const RunDefinitionSchema = z.object({
  id: z.string().min(1),
  customerId: z.string().min(1),
  projectId: z.string().min(1),
  runType: z.string().nullable(),
  pool: z.string().min(1),
  priority: z.enum(PRIORITIES),
  input: z.unknown(),
  metadata: z.record(z.string(), z.unknown()),
  steps: z.array(StepDefinitionSchema).min(1),
  retry: RetryPolicySchema.optional(),
  timeoutMs: z.number().int().positive().optional(),
  idempotencyKey: z.string().nullable(),
  requestHash: z.string(),
  budgetLimited: z.boolean().optional(),
  /** The customer's plan weight: its share of a busy pool (fair sharing). */
  weight: z.number().positive().max(1000).optional(),
  /** The customer's cost sub-ledger this run's costs are counted by (absent: its primary ledger). */
  subLedger: SubLedgerIndexSchema.optional(),
  /** Whose secrets the steps may use, decided by the control plane from where the steps came from. */
  secretScope: SecretScopeSchema,
  createdAt: z.number(),
});

export const StartStepInputSchema = z.object({
  stepIndex: z.number().int().min(0),
  dispatch: z.number().int().min(1),
});

export const CompleteStepInputSchema = z.object({
  leaseId: z.string().min(1),
  output: z.unknown(),
  /** Tokens the attempt used, within the platform's bounds (the consumer refuses reports beyond them). */
  usage: TokenUsageListSchema.optional(),
  /** The caller can run the next step now, in the same invocation. */
  continueInline: z.boolean().default(false),
});

export const FailStepInputSchema = z.object({
  leaseId: z.string().min(1),
  failure: z.object({
    type: z.enum(FAILURE_TYPES),
    // A longer message is cut with a marker rather than refused: refusing would lose the error.
    message: z.string().max(1_000_000).transform((text) => truncateText(text, 4000)),
    retryAfterMs: z.number().int().min(0).optional(),
  }),
});

export const DeadLetterDispatchInputSchema = z.object({
  stepIndex: z.number().int().min(0),
  dispatch: z.number().int().min(1),
  reason: z.string().max(2000),
});

export type DeadLetterReply =
  | { ok: true; deadLetter: import("../../src/data-plane/messages").DeadLetterMessage }
  | { ok: false; reason: Rejection | "unknown_run" };

/** What a worker needs to run one attempt of a step. */
export interface StepAssignment {
  runId: string;
  pool: string;
  stepIndex: number;
  leaseId: string;
  attempt: number;
  startedAt: number;
  leaseMs: number;
  /** {{secrets.…}} references stay in `config` as written; the worker resolves them in this scope only. */
  step: { name: string; type: string; config: JsonValue; timeoutMs: number | null };
  secretScope: SecretScope;
}

export type StartStepResult = { ok: true; assignment: StepAssignment } | { ok: false; reason: Rejection | "unknown_run" | "invalid_config" | "budget_exceeded" };

export type ReportResult =
  | { ok: true; next: StepAssignment | null; runStatus: RunStatus }
  | { ok: false; reason: Rejection | "unknown_run" | "invalid_config" };

export interface StepSnapshot {
  name: string;
  type: string;
  status: StepStatus;
  attempts: number;
  output: JsonValue;
  error: { type: FailureType; message: string } | null;
  startedAt: number | null;
  finishedAt: number | null;
}

/** A run's cost so far: the sum of its priced cost records (exact; bigints as decimal strings). */
export interface RunCostView {
  totalNanoUsd: string;
  aiNanoUsd: string;
  infraNanoUsd: string;
  lines: { meter: string; model: string | null; quantity: string; nanoUsd: string; estimated: boolean }[];
  /** Every record is priced and counted in the customer's ledger (overhead still accruing in a live run is not a record yet). */
  settled: boolean;
  /** Records not yet counted in the ledger (priced or still waiting for a price). */
  pendingRecords: number;
}

export interface RunSnapshot extends RunIdentity {
  status: RunStatus;
  input: JsonValue;
  metadata: JsonObject;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  failure: { type: FailureType; message: string; step: string | null } | null;
  steps: StepSnapshot[];
  cost: RunCostView;
}

export type CreateRunResult =
  /** `dueAt`: the run's first deadline for the reconciler, for the index row the control plane writes (see RunIndexRow.dueAt). */
  | { ok: true; created: boolean; run: RunSnapshot; dueAt: number | null }
  | { ok: false; reason: "idempotency_key_reused"; run: RunSnapshot };

export type CommandReply = { ok: true; run: RunSnapshot } | { ok: false; reason: Rejection | "unknown_run"; run: RunSnapshot | null };

export interface RunEvent {
  seq: number;
  at: number;
  type: string;
  step: string | null;
  attempt: number | null;
  data: JsonObject | null;
}

/** The run object's RPC surface, as callers see it. */
export interface RunCoordinatorApi {
  create(input: z.input<typeof RunDefinitionSchema>): Promise<CreateRunResult>;
  get(): Promise<RunSnapshot | null>;
  events(afterSeq?: number, limit?: number): Promise<RunEvent[]>;
  startStep(input: z.input<typeof StartStepInputSchema>): Promise<StartStepResult>;
  heartbeat(leaseId: string): Promise<{ ok: boolean; reason?: string }>;
  completeStep(input: z.input<typeof CompleteStepInputSchema>): Promise<ReportResult>;
  failStep(input: z.input<typeof FailStepInputSchema>): Promise<ReportResult>;
  cancel(reason?: string): Promise<CommandReply>;
  resume(): Promise<CommandReply>;
  deadLetterDispatch(input: z.input<typeof DeadLetterDispatchInputSchema>): Promise<DeadLetterReply>;
  /** Repairs what a crash dropped; returns the run's status and its next deadline for the reconciler (null: nothing due). */
  reconcile(options?: { resendDeadLetter?: boolean }): Promise<{ status: RunStatus | null; dueAt: number | null }>;
  /** The customer now has a hard budget: every later step of this run is held against it. */
  limitBudget(): Promise<{ ok: true; status: RunStatus } | { ok: false; reason: "unknown_run" | "run_finished" }>;
  /** Sends the run's whole cost to its ledger again (reconciliation found D1 behind). */
  resendCosts(): Promise<{ ok: true } | { ok: false; reason: "unknown_run" | "not_delivered" }>;
}

/** How long a started attempt's lease lasts unless LEASE_MS says otherwise. */
export const DEFAULT_LEASE_MS = 30_000;
export const leaseMsOf = (env: Pick<Env, "LEASE_MS">) => Number(env.LEASE_MS) || DEFAULT_LEASE_MS;

/** The hold a run of a hard-budgeted customer places for its creation, settled by its creation record. */
export const creationHoldId = (runId: string) => `${runId}:create`;
/** The hold of a run's allowance for its life outside steps, released by its last delivery. */
export const runHoldId = (runId: string) => `${runId}:run`;
/**
 * The hold admission places for a run's first step (its worst case), taken over by the first
 * attempt to start: a burst of admitted runs cannot leave nothing for the steps it was admitted
 * for. Released with the run's last delivery if no attempt took it.
 */
export const startingHoldId = (runId: string) => `${runId}:start`;

/**
 * The stub of run `runId`'s object. Typed through RunCoordinatorApi: the generated RPC
 * types recurse too deeply over JSON values for the compiler.
 */
export function runStub(env: Env, runId: string): RunCoordinatorApi {
  return env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId)) as unknown as RunCoordinatorApi;
}
