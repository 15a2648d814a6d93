import type { RunEvent, RunSnapshot } from "../../durable-objects/run-coordinator-rpc";
import { nanoJson, nanoToUsdString } from "../domain/money";
import type { CostSummary } from "../domain/cost-events";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A run as the API shows it: ISO timestamps, derived duration, cost. */
export function presentCost(cost: CostSummary) {
  return {
    totalNanoUsd: nanoJson(cost.totalNanoUsd),
    aiNanoUsd: nanoJson(cost.aiNanoUsd),
    infraNanoUsd: nanoJson(cost.infraNanoUsd),
    totalUsd: nanoToUsdString(cost.totalNanoUsd),
  };
}

const NO_COST: CostSummary = { totalNanoUsd: 0n, aiNanoUsd: 0n, infraNanoUsd: 0n };

/** `cost` is the sum of the run's recorded cost events (recorded as each step reports). */
export function presentRun(run: RunSnapshot, cost: CostSummary = NO_COST) {
  return {
    id: run.id,
    customerId: run.customerId,
    projectId: run.projectId,
    runType: run.runType,
    pool: run.pool,
    priority: run.priority,
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
    cost: presentCost(cost),
  };
}
export type RunView = ReturnType<typeof presentRun>;

export function presentEvent(event: RunEvent) {
  return { seq: event.seq, at: iso(event.at)!, type: event.type, step: event.step, attempt: event.attempt, data: event.data };
}
