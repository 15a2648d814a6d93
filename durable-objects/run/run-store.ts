/**
 * The run object's rows: how a step's state maps to its SQLite row and back, and the run row's
 * mutable header. The schema itself and its versions are in schema.ts.
 */
import type { RunState, StepState } from "../../src/domain/run-machine";
import type { AttemptMeter } from "./meters";

/** The run row's mutable fields, as one comparable string. */
export function headerOf(state: RunState): string {
  return JSON.stringify([state.status, state.startedAt, state.finishedAt, state.failure]);
}

const STEP_COLUMNS = [
  "idx", "status", "attempts", "attempt_base", "dispatch", "lease_id", "deadline", "not_before", "wake_at",
  "output", "error", "started_at", "finished_at", "history", "meter", "resends", "platform_failures",
] as const;
export const STEP_UPSERT = `INSERT INTO steps (${STEP_COLUMNS.join(", ")})`;
// An update, not a replace: one row written per step, as the meters count it.
export const STEP_UPSERT_CONFLICT = `ON CONFLICT (idx) DO UPDATE SET ${STEP_COLUMNS.slice(1).map((c) => `${c} = excluded.${c}`).join(", ")}`;

export function stepRow(s: StepState, meters: ReadonlyMap<string, AttemptMeter>): SqlStorageValue[] {
  const meter = s.leaseId ? meters.get(s.leaseId) : undefined;
  return [
    s.index, s.status, s.attempts, s.attemptBase, s.dispatch, s.leaseId, s.deadline, s.notBefore, s.wakeAt,
    s.output === null ? null : JSON.stringify(s.output), s.error ? JSON.stringify(s.error) : null,
    s.startedAt, s.finishedAt, JSON.stringify(s.history), meter ? JSON.stringify(meter) : null, s.resends, s.platformFailures,
  ];
}

export function stepFromRow(row: Record<string, SqlStorageValue>): StepState {
  const num = (v: SqlStorageValue | undefined) => (v === null || v === undefined ? null : Number(v));
  return {
    index: Number(row.idx),
    status: row.status as StepState["status"],
    attempts: Number(row.attempts),
    attemptBase: Number(row.attempt_base),
    dispatch: Number(row.dispatch),
    resends: Number(row.resends ?? 0),
    platformFailures: Number(row.platform_failures ?? 0),
    leaseId: typeof row.lease_id === "string" ? row.lease_id : null,
    deadline: num(row.deadline),
    notBefore: num(row.not_before),
    wakeAt: num(row.wake_at),
    output: row.output === null ? null : JSON.parse(String(row.output)),
    error: row.error === null ? null : JSON.parse(String(row.error)),
    startedAt: num(row.started_at),
    finishedAt: num(row.finished_at),
    history: JSON.parse(String(row.history)),
  };
}
