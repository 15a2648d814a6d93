/**
 * The run index's writes for one events batch: every run row of the batch in one upsert, every
 * attempt row in one more (src/db/json-rows.ts), with the guards the per-row statements had.
 */
import { jsonChunks, selectFromJson } from "../db/json-rows";
import type { AttemptRow, RunIndexRow } from "./messages";

const RUN_COLUMNS = [
  "id", "customer_id", "project_id", "run_type", "pool", "priority", "status", "created_at", "started_at", "finished_at",
  "duration_ms", "failure_type", "failed_step", "idempotency_key", "version", "updated_at", "due_at",
] as const;

const ATTEMPT_COLUMNS = [
  "run_id", "step_index", "attempt", "step", "step_type", "customer_id", "project_id", "run_type", "pool", "status",
  "failure_type", "failure_message", "started_at", "finished_at", "duration_ms",
] as const;

// `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
const RUNS_UPSERT = `INSERT INTO runs (${RUN_COLUMNS.join(", ")})
  SELECT ${selectFromJson(RUN_COLUMNS)} FROM json_each(?1) WHERE true
  ON CONFLICT(id) DO UPDATE SET status = excluded.status, started_at = excluded.started_at,
    finished_at = excluded.finished_at, duration_ms = excluded.duration_ms, failure_type = excluded.failure_type,
    failed_step = excluded.failed_step, version = excluded.version, updated_at = excluded.updated_at,
    due_at = CASE WHEN excluded.status = 'failed' AND EXISTS (SELECT 1 FROM dlq_entries d WHERE d.run_id = excluded.id AND d.dead_at >= excluded.finished_at - 60000)
                  THEN NULL ELSE excluded.due_at END
  WHERE excluded.version > runs.version`;

const ATTEMPTS_UPSERT = `INSERT INTO step_attempts (${ATTEMPT_COLUMNS.join(", ")})
  SELECT ${selectFromJson(ATTEMPT_COLUMNS)} FROM json_each(?1) WHERE true
  ON CONFLICT(run_id, step_index, attempt) DO UPDATE SET status = excluded.status, failure_type = excluded.failure_type,
    failure_message = excluded.failure_message, finished_at = excluded.finished_at, duration_ms = excluded.duration_ms
  WHERE step_attempts.status = 'running'`;

export interface IndexedRun {
  run: RunIndexRow;
  attempts: AttemptRow[];
}

function runRow(run: RunIndexRow, now: number): unknown[] {
  return [
    run.id, run.customerId, run.projectId, run.runType, run.pool, run.priority, run.status, run.createdAt, run.startedAt,
    run.finishedAt, run.startedAt !== null && run.finishedAt !== null ? run.finishedAt - run.startedAt : null,
    run.failureType, run.failedStep, run.idempotencyKey, run.version, now, run.dueAt ?? null,
  ];
}

function attemptRow(run: RunIndexRow, a: AttemptRow): unknown[] {
  return [
    run.id, a.stepIndex, a.attempt, a.step, a.stepType, run.customerId, run.projectId, run.runType, run.pool, a.status,
    a.failureType, a.failureMessage, a.startedAt, a.finishedAt, a.finishedAt === null ? null : a.finishedAt - a.startedAt,
  ];
}

/** The statements that bring the index up to date with `runs` (one version per run, the newest). */
export function indexStatements(db: D1Database, runs: Iterable<IndexedRun>, now: number): D1PreparedStatement[] {
  const runRows: unknown[][] = [];
  const attemptRows: unknown[][] = [];
  for (const { run, attempts } of runs) {
    runRows.push(runRow(run, now));
    for (const a of attempts) attemptRows.push(attemptRow(run, a));
  }
  return [
    ...jsonChunks(runRows).map((chunk) => db.prepare(RUNS_UPSERT).bind(chunk)),
    ...jsonChunks(attemptRows).map((chunk) => db.prepare(ATTEMPTS_UPSERT).bind(chunk)),
  ];
}
