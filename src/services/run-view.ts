import type { RunEvent, RunSnapshot } from "../../durable-objects/run-coordinator-rpc";
import { nanoToUsdString } from "../domain/money";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A run as the API shows it: ISO timestamps, derived duration, cost. */
export function presentRun(run: RunSnapshot) {
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
    // Cost metering arrives with the costs work; until then a run has cost nothing recorded.
    cost: { totalNanoUsd: 0, aiNanoUsd: 0, infraNanoUsd: 0, totalUsd: nanoToUsdString(0n) },
  };
}
export type RunView = ReturnType<typeof presentRun>;

export function presentEvent(event: RunEvent) {
  return { seq: event.seq, at: iso(event.at)!, type: event.type, step: event.step, attempt: event.attempt, data: event.data };
}
