/**
 * Whether a customer may start (or resume) a run now, asked of its ledger. Under a hard budget
 * the run's creation is held like a step, and so is an allowance for what the run does outside
 * its steps, so even a burst of new runs cannot pass the limit. A new run also holds its first
 * step's worst case, which that step's first attempt takes over: a burst is admitted only as far
 * as the budget can start what it admits, instead of admitting every run and failing each one at
 * its first step with its creation already paid for.
 */
import { ledgerStub } from "../../durable-objects/ledger/rpc";
import { creationHoldId, leaseMsOf, runHoldId, runStub, startingHoldId } from "../../durable-objects/run/rpc";
import { DomainError } from "../domain/errors";
import { RUN_ALLOWANCE_NANO, worstCaseAttempt, worstCaseCreation } from "../domain/worst-case";
import { boundModels, type AttemptBounds } from "../steps/attempt-bounds";
import { priceBookCovering } from "./pricing-service";

/** A creation hold lapses on its own after this long, if the run was never created. */
const CREATION_HOLD_MS = 10 * 60_000;
/** A run's allowance lapses on its own after this long (a run's last delivery releases it first). */
const RUN_HOLD_MS = 7 * 86_400_000;
/**
 * A starting hold lapses on its own after this long: a run still waiting for its first step then
 * (a long backlog in its pool) holds that step when it starts, as every later step does. Its last
 * delivery releases it sooner if the run ends first.
 */
const STARTING_HOLD_MS = 60 * 60_000;

export interface Admission {
  /** The customer has a hard budget: the run holds each step against it. */
  limited: boolean;
  /** The holds this admission placed, to release if no run is created after all. */
  holdIds: string[];
}

export async function admitRun(
  env: Env,
  customerId: string,
  runId: string,
  options: { creation: boolean; maxRunsInFlight?: number; firstStep?: AttemptBounds },
): Promise<Admission> {
  const now = Date.now();
  const holds = [{ holdId: runHoldId(runId), runId, nanoUsd: RUN_ALLOWANCE_NANO.toString(), expiresAt: now + RUN_HOLD_MS }];
  if (options.creation) {
    const book = await priceBookCovering(env, options.firstStep ? boundModels(options.firstStep) : [], now);
    holds.push({ holdId: creationHoldId(runId), runId, nanoUsd: worstCaseCreation(book, now).toString(), expiresAt: now + CREATION_HOLD_MS });
    // Unpriced models were refused before admission; if one is unpriced after all, its step's own hold refuses it.
    const first = options.firstStep ? worstCaseAttempt(book, now, { ...options.firstStep, leaseMs: leaseMsOf(env) }) : null;
    if (first?.ok) holds.push({ holdId: startingHoldId(runId), runId, nanoUsd: first.nanoUsd.toString(), expiresAt: now + STARTING_HOLD_MS });
  }
  const reply = await ledgerStub(env, customerId).admit({ runId, holds, ...(options.maxRunsInFlight ? { maxRunsInFlight: options.maxRunsInFlight } : {}) });
  if (!reply.allowed && reply.reason === "too_many_runs") {
    throw new DomainError("rate_limited", `customer "${customerId}" cannot start another run now: ${reply.refusal}; try again when some have finished`, [], { "retry-after": "5" });
  }
  if (!reply.allowed) {
    throw new DomainError("budget_exhausted", `customer "${customerId}" cannot start a run: ${reply.refusal ?? "its monthly budget is spent"}; raise the budget or wait for the month to end`);
  }
  return { limited: reply.limited, holdIds: reply.placed };
}

/**
 * No run was created after all (an idempotent replay, a failed create): the creation hold is let
 * go, and a replayed run that has already ended is not counted as in flight.
 */
export async function undoAdmission(env: Env, customerId: string, runId: string, admission: Admission, options: { runEnded: boolean }): Promise<void> {
  if (admission.holdIds.length === 0 && !options.runEnded) return;
  await ledgerStub(env, customerId).release({ holdIds: admission.holdIds, ...(options.runEnded ? { endedRunId: runId } : {}) });
}

/**
 * A failed run may resume only while its customer may start runs (402 otherwise); under a
 * budget set since the run began, the run is told its steps are now held against it.
 */
export async function resumeAdmitted(env: Env, customerId: string, runId: string, limits: { maxRunsInFlight?: number } = {}): Promise<void> {
  const admission = await admitRun(env, customerId, runId, { creation: false, ...limits });
  if (admission.limited) await runStub(env, runId).limitBudget();
}
