/**
 * Whether a customer may start (or resume) a run now, asked of its ledger. Under a hard budget
 * the run's creation is held like a step, so even a burst of new runs cannot pass the limit.
 */
import { ledgerStub } from "../../durable-objects/ledger/rpc";
import { creationHoldId, runStub } from "../../durable-objects/run/rpc";
import { ApiError } from "../api/errors";
import { worstCaseCreation } from "../domain/worst-case";
import { cachedPriceBook } from "./pricing-service";

/** A creation hold lapses on its own after this long, if the run was never created. */
const CREATION_HOLD_MS = 10 * 60_000;

export interface Admission {
  /** The customer has a hard budget: the run holds each step against it. */
  limited: boolean;
  /** The creation hold placed, to release if no run is created after all. */
  holdId: string | null;
}

export async function admitRun(env: Env, customerId: string, runId: string, options: { creation: boolean }): Promise<Admission> {
  const now = Date.now();
  const holdId = creationHoldId(runId);
  const creationHold = options.creation
    ? { holdId, runId, nanoUsd: worstCaseCreation(await cachedPriceBook(env, now, { allowStale: true }), now).toString(), expiresAt: now + CREATION_HOLD_MS }
    : undefined;
  const reply = await ledgerStub(env, customerId).admit({ runId, creationHold });
  if (!reply.allowed) {
    throw new ApiError("budget_exhausted", `customer "${customerId}" cannot start a run: ${reply.refusal ?? "its monthly budget is spent"}; raise the budget or wait for the month to end`);
  }
  return { limited: reply.limited, holdId: reply.limited && creationHold ? holdId : null };
}

/** Lets a creation hold go when no run was created (an idempotent replay, a refused request). */
export async function releaseCreationHold(env: Env, customerId: string, admission: Admission): Promise<void> {
  if (admission.holdId) await ledgerStub(env, customerId).release({ holdId: admission.holdId });
}

/**
 * A failed run may resume only while its customer may start runs (402 otherwise); under a
 * budget set since the run began, the run is told its steps are now held against it.
 */
export async function resumeAdmitted(env: Env, customerId: string, runId: string): Promise<void> {
  const admission = await admitRun(env, customerId, runId, { creation: false });
  if (admission.limited) await runStub(env, runId).limitBudget();
}
