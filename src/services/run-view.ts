import type { RunCostView, RunEvent, RunSnapshot } from "../../durable-objects/run/rpc";
import { identityOf } from "../domain/run-identity";
import { nanoJson, nanoToUsdString } from "../domain/money";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A run's cost as the API shows it: exact nano-USD (JSON integers while exact) and a display string. */
export function presentCost(cost: RunCostView) {
  const total = BigInt(cost.totalNanoUsd);
  return {
    totalNanoUsd: nanoJson(total),
    aiNanoUsd: nanoJson(BigInt(cost.aiNanoUsd)),
    infraNanoUsd: nanoJson(BigInt(cost.infraNanoUsd)),
    totalUsd: nanoToUsdString(total),
    /** Every cost record is priced and counted in the customer's ledger (and on its way to D1's reports). */
    settled: cost.settled,
  };
}

/** A run as the API shows it: ISO timestamps, derived duration, and its cost (the sum of its priced cost records). */
export function presentRun(run: RunSnapshot) {
  return {
    ...identityOf(run),
    status: run.status,
    input: run.input,
    metadata: run.metadata,
    createdAt: iso(run.createdAt)!,
    startedAt: iso(run.startedAt),
    finishedAt: iso(run.finishedAt),
    durationMs: run.startedAt !== null && run.finishedAt !== null ? run.finishedAt - run.startedAt : null,
    steps: run.steps.map((s) => ({
      name: s.name,
      type: s.type,
      status: s.status,
      attempts: s.attempts,
      ...(s.output !== null && s.output !== undefined ? { output: s.output } : {}),
      ...(s.error ? { error: s.error } : {}),
      startedAt: iso(s.startedAt),
      finishedAt: iso(s.finishedAt),
    })),
    ...(run.failure ? { failure: run.failure } : {}),
    cost: presentCost(run.cost),
  };
}
export type RunView = ReturnType<typeof presentRun>;

export function presentEvent(event: RunEvent) {
  return { seq: event.seq, at: iso(event.at)!, type: event.type, step: event.step, attempt: event.attempt, data: event.data };
}
