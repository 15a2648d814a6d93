/**
 * The run object's rows: how a step's state maps to its SQLite row and back, and the run row's
 * mutable header. The schema itself and its versions are in schema.ts.
 */
import { newStepState, type MachineEvent, type RunDefinition, type RunState, type StepState } from "../../src/domain/run-machine";
import { insertRows, type SqlRow } from "../sql";
import { AttemptMeterSchema, type AttemptMeter } from "./meters";
import type { RunEvent } from "./rpc";
import { migrateSchema } from "./schema";

type Sql = <T extends SqlRow = SqlRow>(strings: TemplateStringsArray, ...values: SqlStorageValue[]) => T[];

export interface StoredRun {
  state: RunState;
  /** The open attempts' meters, mirrored in their step rows. */
  meters: Map<string, AttemptMeter>;
  /** Sequence of the last persisted event. */
  lastSeq: number;
}

/** The run as stored, upgraded to the current schema; null for an object no run was created in (reading writes nothing). */
export function loadRun(storage: DurableObjectStorage, sql: Sql): StoredRun | null {
  if (sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run'`.length === 0) return null;
  const row = sql<{ definition: string; status: string; started_at: number | null; finished_at: number | null; failure: string | null }>`
    SELECT definition, status, started_at, finished_at, failure FROM run LIMIT 1`[0];
  if (!row) return null;
  migrateSchema(storage);
  const def = JSON.parse(row.definition) as RunDefinition;
  // A step with no row has never left `pending`.
  const steps = def.steps.map((_, index) => newStepState(index));
  const meters = new Map<string, AttemptMeter>();
  for (const stored of sql`SELECT * FROM steps`) {
    const step = stepFromRow(stored);
    steps[step.index] = step;
    const meter = stored.meter ? AttemptMeterSchema.safeParse(JSON.parse(String(stored.meter))) : null;
    if (meter?.success && meter.data.lease === step.leaseId) meters.set(meter.data.lease, meter.data);
  }
  const state: RunState = {
    def,
    status: row.status as RunState["status"],
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    failure: row.failure ? JSON.parse(row.failure) : null,
    steps,
  };
  return { state, meters, lastSeq: sql<{ seq: number | null }>`SELECT MAX(seq) AS seq FROM events`[0]?.seq ?? 0 };
}

/** The run row, written once at creation; its header columns are rewritten by writeHeader. */
export function insertRun(sql: Sql, state: RunState): void {
  sql`INSERT INTO run (id, definition, status, started_at, finished_at, failure) VALUES (${state.def.id}, ${JSON.stringify(state.def)}, ${state.status}, NULL, NULL, NULL)`;
}

export function writeHeader(sql: Sql, state: RunState): void {
  sql`UPDATE run SET status = ${state.status}, started_at = ${state.startedAt}, finished_at = ${state.finishedAt},
    failure = ${state.failure ? JSON.stringify(state.failure) : null}`;
}

export function writeDefinition(sql: Sql, state: RunState): void {
  sql`UPDATE run SET definition = ${JSON.stringify(state.def)}`;
}

/** Appends events after `lastSeq`; returns the new last sequence. */
export function appendEvents(storage: DurableObjectStorage, lastSeq: number, at: number, events: readonly MachineEvent[]): number {
  let seq = lastSeq;
  insertRows(
    storage,
    "INSERT INTO events (seq, at, type, step, attempt, data)",
    events.map((e) => [++seq, at, e.type, e.step ?? null, e.attempt ?? null, e.data ? JSON.stringify(e.data) : null]),
  );
  return seq;
}

export function readEvents(sql: Sql, afterSeq: number, limit: number): RunEvent[] {
  return sql<{ seq: number; at: number; type: string; step: string | null; attempt: number | null; data: string | null }>`
    SELECT seq, at, type, step, attempt, data FROM events WHERE seq > ${afterSeq} ORDER BY seq LIMIT ${limit}`.map((row) => ({
    ...row,
    data: row.data ? JSON.parse(row.data) : null,
  }));
}

/** Writes the touched steps' rows (one row each: an upsert), with their open attempts' meters. */
export function writeSteps(storage: DurableObjectStorage, state: RunState, touched: ReadonlySet<number>, meters: ReadonlyMap<string, AttemptMeter>): void {
  if (touched.size === 0) return;
  insertRows(storage, STEP_UPSERT, [...touched].map((index) => stepRow(state.steps[index]!, meters)), STEP_UPSERT_CONFLICT);
}

/** The run row's mutable fields, as one comparable string. */
export function headerOf(state: RunState): string {
  return JSON.stringify([state.status, state.startedAt, state.finishedAt, state.failure]);
}

const STEP_COLUMNS = [
  "idx", "status", "attempts", "attempt_base", "dispatch", "lease_id", "deadline", "not_before", "wake_at",
  "output", "error", "started_at", "finished_at", "history", "meter", "resends", "platform_failures",
] as const;
const STEP_UPSERT = `INSERT INTO steps (${STEP_COLUMNS.join(", ")})`;
// An update, not a replace: one row written per step, as the meters count it.
const STEP_UPSERT_CONFLICT = `ON CONFLICT (idx) DO UPDATE SET ${STEP_COLUMNS.slice(1).map((c) => `${c} = excluded.${c}`).join(", ")}`;

function stepRow(s: StepState, meters: ReadonlyMap<string, AttemptMeter>): SqlStorageValue[] {
  const meter = s.leaseId ? meters.get(s.leaseId) : undefined;
  return [
    s.index, s.status, s.attempts, s.attemptBase, s.dispatch, s.leaseId, s.deadline, s.notBefore, s.wakeAt,
    s.output === null ? null : JSON.stringify(s.output), s.error ? JSON.stringify(s.error) : null,
    s.startedAt, s.finishedAt, JSON.stringify(s.history), meter ? JSON.stringify(meter) : null, s.resends, s.platformFailures,
  ];
}

function stepFromRow(row: Record<string, SqlStorageValue>): StepState {
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
